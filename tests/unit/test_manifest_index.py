import json
from pathlib import Path

import pytest

from zfsglacier import proc
from zfsglacier.errors import RemoteError
from zfsglacier.remote import manifest_index
from zfsglacier.remote.manifest import Manifest, data_object_name, manifest_name
from zfsglacier.remote.rclone import Rclone


def make(snapshot: str, host: str = "h") -> Manifest:
    return Manifest(
        dataset="tank/data", snapshot=snapshot, guid="1" + str(len(snapshot)), createtxg=1, kind="full",
        base=None, base_guid=None, compressor="zstd", level=3, raw_bytes=1000, stored_bytes=100,
        sha256="a" * 64, object=data_object_name(snapshot, "full", ".zst"),
        created="2026-01-01T00:00:00+00:00", host=host, tool_version="0.1.0",
    )


ENTRIES = {manifest_name(s): make(s).to_json() for s in ("s1", "s2", "my snap ü")}


def test_round_trip_keeps_every_manifests_exact_bytes() -> None:
    data = manifest_index.encode(ENTRIES)
    assert manifest_index.decode(data) == ENTRIES
    doc = json.loads(data)
    assert doc["format"] == manifest_index.FORMAT and doc["version"] == manifest_index.FORMAT_VERSION
    assert manifest_index.decode(manifest_index.encode({})) == {}
    # Every entry parses back into the manifest it copies.
    for name, text in manifest_index.decode(data).items():
        assert Manifest.from_json(text, name).snapshot == name.removesuffix(".manifest.json")


def test_encoding_does_not_depend_on_insertion_order() -> None:
    assert manifest_index.encode(dict(reversed(list(ENTRIES.items())))) == manifest_index.encode(ENTRIES)


def _doc(**changes: object) -> bytes:
    doc: dict[str, object] = {"format": manifest_index.FORMAT, "version": manifest_index.FORMAT_VERSION,
                              "manifests": {"s1.manifest.json": "{}"}}
    doc.update(changes)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x00\xffgarbage", "not valid JSON"),
        (b"", "not valid JSON"),
        (b'{"format": "zfsglacier-index", "version": 1, "manifests": {', "not valid JSON"),
        (b"[]", "not a version 1 zfsglacier index"),
        (b'"zfsglacier-index"', "not a version 1 zfsglacier index"),
        (_doc(format="zfsglacier-manifest"), "not a version 1 zfsglacier index"),
        (_doc(format=None), "not a version 1 zfsglacier index"),
        (_doc(version=2), "not a version 1 zfsglacier index"),
        (_doc(version="1"), "not a version 1 zfsglacier index"),
        (_doc(manifests=None), "manifests are not a map of names to texts"),
        (_doc(manifests=["s1.manifest.json"]), "manifests are not a map of names to texts"),
        (_doc(manifests={"s1.manifest.json": {"format": "zfsglacier-manifest"}}),
         "manifests are not a map of names to texts"),
        (_doc(manifests={"s1.manifest.json": "{}", "s2.manifest.json": 12}),
         "manifests are not a map of names to texts"),
        (_doc(manifests={"s1.manifest.json": None}), "manifests are not a map of names to texts"),
    ],
)
def test_decode_rejects_what_is_not_an_index(data: bytes, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        manifest_index.decode(data)


def test_decode_of_a_missing_manifests_key_is_an_error() -> None:
    doc = json.loads(_doc())
    del doc["manifests"]
    with pytest.raises(ValueError, match="manifests are not a map"):
        manifest_index.decode(json.dumps(doc).encode())


def test_usable_entries_need_a_listed_manifest_of_the_same_size() -> None:
    s1, s2, s3 = (manifest_name(s) for s in ("s1", "s2", "s3"))
    entries = {s1: make("s1").to_json(), s2: make("s2").to_json(), s3: make("s3").to_json()}
    listed = {
        s1: len(entries[s1]),  # current: used
        s2: len(make("s2", host="another host").to_json()),  # rewritten since: read instead
        # s3 is not listed: its manifest is gone, the entry must not bring it back
        manifest_name("s4"): 500,  # not in the index: read
    }
    assert listed[s2] != len(entries[s2])
    assert manifest_index.usable_entries(entries, listed) == {s1: entries[s1]}
    assert manifest_index.usable_entries(entries, {}) == {}
    assert manifest_index.usable_entries({}, listed) == {}


def _fake_rclone_copy(monkeypatch: pytest.MonkeyPatch, returncode: int, objects: dict[str, bytes],
                      ) -> list[tuple[list[str], str]]:
    """proc.run stand-in for `rclone copy`: writes `objects` into the destination (the last argument)."""
    calls: list[tuple[list[str], str]] = []

    def fake_run(stage: str, argv: list[str], **kwargs: object) -> proc.Result:
        if "copy" not in argv:  # e.g. `rclone config file`, asked for on a failure: no config found
            return proc.Result(1, b"", "")
        names_file = argv[argv.index("--files-from-raw") + 1] if "--files-from-raw" in argv else ""
        calls.append((list(argv), Path(names_file).read_text() if names_file else ""))
        destination = Path(argv[-1])
        destination.mkdir(parents=True)
        for name, data in objects.items():
            (destination / name).write_bytes(data)
        return proc.Result(returncode, b"", "ERROR : some object: not found" if returncode else "")

    monkeypatch.setattr(proc, "run", fake_run)
    return calls


def test_read_many_names_the_objects_in_a_file_and_keeps_the_remote_path_after_the_flags(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _fake_rclone_copy(monkeypatch, 0, {"a.manifest.json": b"A", "b c.manifest.json": b"BC"})
    rc = Rclone("/usr/bin/rclone", Path("/etc/r.conf"))
    got = rc.read_many("r:b/tank/my data", ["b c.manifest.json", "a.manifest.json", "a.manifest.json"])
    assert got == {"a.manifest.json": b"A", "b c.manifest.json": b"BC"}
    [(argv, names)] = calls
    assert argv[:4] == ["/usr/bin/rclone", "--config", "/etc/r.conf", "copy"]
    assert argv[-2] == "r:b/tank/my data"  # the remote path, after every flag
    flags = argv[4:-2]
    assert all(flag.startswith("--") or flags[i - 1].startswith("--") for i, flag in enumerate(flags))
    assert "--files-from-raw" in flags and "--transfers" in flags
    assert names == "a.manifest.json\nb c.manifest.json\n"  # sorted, unique, raw (a space stays)
    assert rc.read_many("r:b", []) == {}
    assert len(calls) == 1  # nothing to read: no rclone at all


def test_read_many_returns_what_arrived_and_fails_only_when_nothing_did(monkeypatch: pytest.MonkeyPatch) -> None:
    rc = Rclone("rclone", None)
    _fake_rclone_copy(monkeypatch, 1, {"a.manifest.json": b"A"})
    assert rc.read_many("r:b", ["a.manifest.json", "gone.manifest.json"]) == {"a.manifest.json": b"A"}
    _fake_rclone_copy(monkeypatch, 1, {})
    with pytest.raises(RemoteError, match=r"reading 2 object\(s\) from r:b failed \(exit 1\)"):
        rc.read_many("r:b", ["a.manifest.json", "gone.manifest.json"])


def test_lsjson_lists_without_modification_times() -> None:
    argv = Rclone("rclone", None).lsjson_argv("r:b/t")
    assert "--no-modtime" in argv and argv[-1] == "r:b/t"


def test_read_many_by_pattern_lists_one_level_and_keeps_only_what_was_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_rclone_copy(monkeypatch, 0, {"a.manifest.json": b"A", "b.manifest.json": b"B"})
    got = Rclone("rclone", None).read_many("r:b/t", ["a.manifest.json"], pattern="*.manifest.json")
    assert got == {"a.manifest.json": b"A"}
    [(argv, names)] = calls
    assert argv[-2] == "r:b/t"
    flags = argv[2:-2]
    # One level only: a child dataset's manifests live in a subfolder and are not this dataset's.
    assert flags[flags.index("--max-depth") + 1] == "1"
    assert flags[flags.index("--include") + 1] == "*.manifest.json"
    assert "--files-from-raw" not in flags and names == ""
