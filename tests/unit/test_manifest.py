import dataclasses
import json

import pytest

from zfsglacier.errors import ChainError, IntegrityError
from zfsglacier.remote.manifest import (
    SELF_CHECK,
    ChainGap,
    Manifest,
    build_chain,
    chain_is_complete,
    content_sha256,
    data_object_name,
    manifest_name,
    snapshot_of_data_object,
    snapshot_of_manifest,
)


def make(snapshot: str, guid: str, txg: int, base: "Manifest | None" = None) -> Manifest:
    kind = "full" if base is None else "incremental"
    return Manifest(
        dataset="tank/data", snapshot=snapshot, guid=guid, createtxg=txg, kind=kind,
        base=base.snapshot if base else None, base_guid=base.guid if base else None,
        compressor="zstd", level=3, raw_bytes=1000, stored_bytes=100, sha256="a" * 64,
        object=data_object_name(snapshot, kind, ".zst"), created=f"2026-01-0{txg}T00:00:00+00:00",
        host="h", tool_version="0.1.0",
    )


FULL = make("s1", "101", 1)
INC2 = make("s2", "102", 2, FULL)
INC3 = make("s3", "103", 3, INC2)
INC4 = make("s4", "104", 4, INC3)


def test_json_round_trip() -> None:
    assert Manifest.from_json(INC2.to_json(), "x") == INC2
    doc = json.loads(INC2.to_json())
    assert doc["format"] == "zfsglacier-manifest" and doc["version"] == 2
    assert isinstance(doc["guid"], str)
    assert len(doc[SELF_CHECK]) == 64


def resealed(doc: dict[str, object]) -> bytes:
    """A manifest changed on purpose: its self-check recomputed, so the change itself is what is tested."""
    doc[SELF_CHECK] = content_sha256(doc)
    return json.dumps(doc).encode()


def test_a_version_1_manifest_without_a_self_check_is_still_read() -> None:
    doc = json.loads(INC2.to_json())
    doc["version"] = 1
    del doc[SELF_CHECK]
    assert Manifest.from_json(json.dumps(doc).encode(), "x") == INC2


def test_any_flipped_bit_is_a_damaged_manifest_never_a_changed_backup() -> None:
    original = INC2.to_json()
    for position in range(len(original)):
        for bit in (0x01, 0x10):
            data = bytearray(original)
            data[position] ^= bit
            with pytest.raises(IntegrityError, match=r"^manifest remote:b/s2\.manifest\.json: "):
                Manifest.from_json(bytes(data), "remote:b/s2.manifest.json")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.update(sha256="b" * 64), "manifest_sha256 does not match its content"),
        (lambda d: d.update(stored_bytes=101), "manifest_sha256 does not match its content"),
        (lambda d: d.update(extra="x"), "manifest_sha256 does not match its content"),
        (lambda d: d.pop(SELF_CHECK), "manifest_sha256 is missing"),
    ],
)
def test_a_version_2_manifest_that_parses_but_was_changed_is_damaged(change, expected: str) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(INC2.to_json())
    change(doc)
    with pytest.raises(IntegrityError, match=f"manifest m: damaged: its {expected}"):
        Manifest.from_json(json.dumps(doc).encode(), "m")


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.update(version=99), "format version 99"),
        (lambda d: d.update(format="other"), "not a zfsglacier manifest"),
        (lambda d: d.update(kind="diff"), "kind must be"),
        (lambda d: d.update(base=None), "needs base"),
        (lambda d: d.update(sha256="xyz"), "sha256"),
        (lambda d: d.update(raw_bytes="12"), "raw_bytes"),
        (lambda d: d.update(compressor="lz4"), "unknown compressor"),
        (lambda d: d.pop("guid"), "guid"),
    ],
)
def test_bad_manifests_are_rejected_with_the_object_named(mutate, expected: str) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(INC2.to_json())
    mutate(doc)
    with pytest.raises(IntegrityError, match=expected) as info:
        Manifest.from_json(resealed(doc), "remote:b/x.manifest.json")
    assert "remote:b/x.manifest.json" in str(info.value)


def test_garbage_is_rejected() -> None:
    with pytest.raises(IntegrityError, match="not valid JSON"):
        Manifest.from_json(b"\x00{", "m")


def test_names() -> None:
    assert data_object_name("s1", "full", ".zst") == "s1.full.zfs.zst"
    assert data_object_name("s 2", "incremental", ".gz") == "s 2.incr.zfs.gz"
    assert snapshot_of_data_object("s 2.incr.zfs.gz") == "s 2"
    assert snapshot_of_data_object("s1.manifest.json") is None
    assert snapshot_of_manifest(manifest_name("a.b")) == "a.b"
    assert snapshot_of_manifest("a.full.zfs.zst") is None


def test_chain_to_newest_and_to_a_middle_snapshot() -> None:
    manifests = [INC4, FULL, INC3, INC2]
    assert build_chain(manifests) == [FULL, INC2, INC3, INC4]
    assert build_chain(manifests, "s2") == [FULL, INC2]
    assert build_chain(manifests, "tank/data@s3") == [FULL, INC2, INC3]
    assert build_chain(manifests, "s1") == [FULL]


def test_chain_follows_guids_not_names() -> None:
    impostor = dataclasses.replace(INC2, guid="999")  # same name, another snapshot
    with pytest.raises(ChainError, match=r"s3 is an incremental from s2 \(guid 102\)"):
        build_chain([FULL, impostor, INC3])


def test_gap_is_named() -> None:
    with pytest.raises(ChainGap, match="s4 is an incremental from s3") as info:
        build_chain([FULL, INC2, INC4])
    assert info.value.missing_snapshot == "s3"
    assert build_chain([FULL, INC2, INC4], "s2") == [FULL, INC2]
    assert not chain_is_complete([FULL, INC2, INC4], INC4)
    assert chain_is_complete([FULL, INC2, INC4], INC2)


def test_unknown_snapshot_and_empty_remote() -> None:
    with pytest.raises(ChainError, match="no committed backups"):
        build_chain([])
    with pytest.raises(ChainError, match="'nope' has no committed backup"):
        build_chain([FULL], "nope")


def test_newest_is_by_txg_not_by_clock() -> None:
    # The clock was set back between s3 and s4: s4's created time is older, its txg is newer.
    set_back = dataclasses.replace(INC4, created="2025-01-01T00:00:00+00:00")
    assert build_chain([FULL, INC2, INC3, set_back])[-1] == set_back
