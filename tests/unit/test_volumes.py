"""Volumes: a stored stream cut into objects of at most max_object_size, uploaded and downloaded in
order, compared instead of uploaded when a backup resumes; the manifest and record that describe them."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from config_text import with_value

from zfsglacier.codec.registry import get_codec
from zfsglacier.config import parse_config
from zfsglacier.errors import ConfigError, IntegrityError
from zfsglacier.policy.resume import PartialBackup, can_resume, why_not
from zfsglacier.remote.manifest import Manifest, Volume, snapshot_of_data_object, snapshot_of_partial, volume_name
from zfsglacier.stream import pipeline
from zfsglacier.stream.pipeline import Expected, Source, VolumeTarget, receive_from_remote, send_to_remote
from zfsglacier.stream.ranged_reads import Part, ReadSettings
from zfsglacier.stream.volumes import RegeneratedDiffers

from .test_pipeline import no_progress, sink_argv

# Does not compress: the stored stream is about as long as this, so it spans several 256 KiB volumes.
RAW = bytes(16) + os.urandom(1 << 20) + bytes(100_000)
LIMIT = 256 << 10


def store_in(directory: Path) -> VolumeTarget:
    """Each volume becomes a file of its name in `directory`."""
    return VolumeTarget(lambda name: ["sh", "-c", 'cat > "$0"', str(directory / name)],
                        lambda number: volume_name("snap.full.zfs.zst", number), LIMIT)


def backup_in_volumes(tmp_path: Path, directory: Path, target: VolumeTarget | None = None):  # type: ignore[no-untyped-def]
    directory.mkdir(exist_ok=True)
    source = tmp_path / "raw"
    source.write_bytes(RAW)
    return send_to_remote(["cat", str(source)], target or store_in(directory), get_codec("zstd"), 3, 2,
                          no_progress)


def test_a_long_stream_is_cut_into_volumes_of_at_most_the_limit(tmp_path: Path) -> None:
    stats = backup_in_volumes(tmp_path, tmp_path / "remote")
    names = [v.object for v in stats.volumes]
    assert names[:3] == ["snap.full.zfs.zst", "snap.full.zfs.zst.0002", "snap.full.zfs.zst.0003"]
    assert len(names) == -(-stats.stored_bytes // LIMIT)
    assert sorted(p.name for p in (tmp_path / "remote").iterdir()) == sorted(names)
    whole = b"".join((tmp_path / "remote" / name).read_bytes() for name in names)
    assert stats.sha256 == hashlib.sha256(whole).hexdigest() and len(whole) == stats.stored_bytes
    for volume in stats.volumes:
        data = (tmp_path / "remote" / volume.object).read_bytes()
        assert len(data) == volume.stored_bytes <= LIMIT
        assert hashlib.sha256(data).hexdigest() == volume.sha256
    assert all(v.stored_bytes == LIMIT for v in stats.volumes[:-1])


def test_each_complete_volume_is_reported_but_the_last(tmp_path: Path) -> None:
    reported: list[list[Volume]] = []
    base = store_in(tmp_path / "remote")
    target = VolumeTarget(base.rcat_argv, base.names, LIMIT, on_volume=reported.append)
    stats = backup_in_volumes(tmp_path, tmp_path / "remote", target)
    assert [len(r) for r in reported] == list(range(1, len(stats.volumes)))
    assert reported[-1] == list(stats.volumes[:-1])


def test_a_resumed_stream_compares_the_stored_volumes_and_uploads_only_the_rest(tmp_path: Path) -> None:
    first = backup_in_volumes(tmp_path, tmp_path / "first")
    base = store_in(tmp_path / "second")
    target = VolumeTarget(base.rcat_argv, base.names, LIMIT, stored=first.volumes[:2])
    second = backup_in_volumes(tmp_path, tmp_path / "second", target)
    assert second.volumes == first.volumes and second.sha256 == first.sha256
    uploaded = sorted(p.name for p in (tmp_path / "second").iterdir())
    assert uploaded == sorted(v.object for v in first.volumes[2:])


@pytest.mark.parametrize("which", [0, 1])
def test_a_resumed_stream_that_differs_from_a_stored_volume_says_which(which: int, tmp_path: Path) -> None:
    first = backup_in_volumes(tmp_path, tmp_path / "first")
    stored = list(first.volumes[:2])
    stored[which] = Volume(stored[which].object, stored[which].stored_bytes, "0" * 64)
    base = store_in(tmp_path / "second")
    with pytest.raises(RegeneratedDiffers) as differs:
        backup_in_volumes(tmp_path, tmp_path / "second",
                          VolumeTarget(base.rcat_argv, base.names, LIMIT, stored=tuple(stored)))
    assert differs.value.number == which + 1
    assert f"volume {which + 1} ({stored[which].object}) sent again" in str(differs.value)
    assert not any((tmp_path / "second").iterdir()), "nothing was uploaded before the difference"


def local_cat(directory: Path) -> Callable[[str, int, int | None], list[str]]:
    """A stand-in for rclone cat: object r:b/NAME is the file NAME in `directory`, read from `offset`."""
    def argv(path: str, offset: int, count: int | None) -> list[str]:
        file = str(directory / path.removeprefix("r:b/"))
        counted = [f"count={count}"] if count is not None else []
        return ["dd", f"if={file}", "bs=1M", "iflag=skip_bytes,count_bytes", f"skip={offset}", *counted, "status=none"]

    return argv


def parts_of(directory: Path, volumes: tuple[Volume, ...], streams: int = 1) -> Source:
    return Source([Part(f"r:b/{v.object}", v) for v in volumes], local_cat(directory),
                  ReadSettings(streams=streams, range_bytes=64 << 10, retries=0))


@pytest.mark.parametrize("streams", [1, 3])
def test_a_restore_reads_the_volumes_in_order_as_one_stream(streams: int, tmp_path: Path) -> None:
    stats = backup_in_volumes(tmp_path, tmp_path / "remote")
    expected = Expected("r:b/snap.full.zfs.zst", stats.stored_bytes, stats.sha256, stats.raw_bytes)
    (tmp_path / "recv").mkdir()
    got = receive_from_remote(parts_of(tmp_path / "remote", stats.volumes, streams), get_codec("zstd"), expected,
                              no_progress, sink_argv(tmp_path / "recv"))
    assert (tmp_path / "recv" / "out").read_bytes() == RAW
    assert (tmp_path / "recv" / "committed").exists()
    assert got.sha256 == stats.sha256


@pytest.mark.parametrize("streams", [1, 3])
def test_a_damaged_volume_is_named_and_the_end_never_reaches_the_receive(streams: int, tmp_path: Path) -> None:
    stats = backup_in_volumes(tmp_path, tmp_path / "remote")
    second = tmp_path / "remote" / stats.volumes[1].object
    data = bytearray(second.read_bytes())
    data[100] ^= 0xFF
    second.write_bytes(bytes(data))
    expected = Expected("r:b/snap.full.zfs.zst", stats.stored_bytes, stats.sha256, stats.raw_bytes)
    (tmp_path / "recv").mkdir()
    with pytest.raises(IntegrityError) as error:
        receive_from_remote(parts_of(tmp_path / "remote", stats.volumes, streams), get_codec("zstd"), expected,
                            no_progress, sink_argv(tmp_path / "recv"))
    assert f"r:b/{stats.volumes[1].object}: volume 2 of {len(stats.volumes)} does not match its manifest" \
        in str(error.value)
    assert not (tmp_path / "recv" / "committed").exists()


def manifest(volumes: tuple[Volume, ...]) -> Manifest:
    return Manifest(
        dataset="tank/data", snapshot="s1", guid="123", createtxg=5, kind="full", base=None, base_guid=None,
        compressor="zstd", level=3, raw_bytes=10, stored_bytes=sum(v.stored_bytes for v in volumes) or 6,
        sha256="a" * 64, object="s1.full.zfs.zst", created="2026-01-01T00:00:00+00:00", host="h",
        tool_version="1", volumes=volumes)


def test_a_manifest_of_several_volumes_is_version_3_and_reads_back() -> None:
    volumes = (Volume("s1.full.zfs.zst", 4, "b" * 64), Volume("s1.full.zfs.zst.0002", 2, "c" * 64))
    text = manifest(volumes).to_json()
    assert json.loads(text)["version"] == 3
    back = Manifest.from_json(text, "m")
    assert back.volumes == volumes and back.parts == volumes


def test_a_manifest_of_one_object_stays_version_2() -> None:
    text = manifest(()).to_json()
    doc = json.loads(text)
    assert doc["version"] == 2 and "volumes" not in doc
    assert Manifest.from_json(text, "m").parts == (Volume("s1.full.zfs.zst", 6, "a" * 64),)


@pytest.mark.parametrize("volumes", [
    [{"object": "s1.full.zfs.zst", "stored_bytes": 6, "sha256": "b" * 64}],  # one is not several
    [{"object": "s1.full.zfs.zst", "stored_bytes": 4, "sha256": "b" * 64},
     {"object": "s1.full.zfs.zst.0002", "stored_bytes": 1, "sha256": "c" * 64}],  # 5 != stored_bytes 6
    [{"object": "other", "stored_bytes": 4, "sha256": "b" * 64},
     {"object": "s1.full.zfs.zst.0002", "stored_bytes": 2, "sha256": "c" * 64}],  # first is not `object`
    [{"object": "s1.full.zfs.zst", "stored_bytes": 4, "sha256": "b" * 64},
     {"object": "../x", "stored_bytes": 2, "sha256": "c" * 64}],
    "s1.full.zfs.zst",
])
def test_a_manifest_whose_volumes_do_not_add_up_is_refused(volumes: object) -> None:
    from zfsglacier.remote.manifest import content_sha256

    doc = json.loads(manifest(()).to_json())
    doc["version"], doc["volumes"] = 3, volumes
    doc["manifest_sha256"] = content_sha256(doc)
    with pytest.raises(IntegrityError, match="volumes"):
        Manifest.from_json(json.dumps(doc).encode(), "m")


def test_volume_names_are_data_objects_of_their_snapshot() -> None:
    assert volume_name("s.incr.zfs.gz", 1) == "s.incr.zfs.gz"
    assert volume_name("s.incr.zfs.gz", 12) == "s.incr.zfs.gz.0012"
    assert snapshot_of_data_object("s.incr.zfs.gz.0012") == "s"
    assert snapshot_of_data_object("s.full.zfs.0002") == "s"  # codec none
    assert snapshot_of_partial("s.partial.json") == "s" and snapshot_of_data_object("s.partial.json") is None


RECORD = PartialBackup("tank/data", "s2", "99", "s1", "98", ("-L",), "zstd", 3, LIMIT, "s2.incr.zfs.zst",
                       (Volume("s2.incr.zfs.zst", LIMIT, "d" * 64),))


def test_a_partial_backup_record_reads_back_and_refuses_garbage() -> None:
    assert PartialBackup.from_json(RECORD.to_json()) == RECORD
    doc = json.loads(RECORD.to_json())
    for broken in ({**doc, "version": 2}, {k: v for k, v in doc.items() if k != "guid"}, {**doc, "volumes": []},
                   {**doc, "volumes": [{"object": "a/b", "stored_bytes": 1, "sha256": "d" * 64}]}):
        with pytest.raises(ValueError):
            PartialBackup.from_json(json.dumps(broken).encode())
    with pytest.raises(ValueError):
        PartialBackup.from_json(b"\xff")


def test_why_a_recorded_backup_is_not_resumed() -> None:
    same = {"send_flags": ("-L",), "compressor": "zstd", "level": 3, "limit": LIMIT, "base": object()}
    assert why_not(RECORD, full=False, **same) is None  # type: ignore[arg-type]
    assert why_not(RECORD, full=True, **same) == "--full given"  # type: ignore[arg-type]
    assert "changed" in (why_not(RECORD, full=False, **{**same, "level": 5}) or "")  # type: ignore[arg-type]
    assert "max_object_size" in (why_not(RECORD, full=False, **{**same, "limit": None}) or "")  # type: ignore[arg-type]
    assert "is gone" in (why_not(RECORD, full=False, **{**same, "base": None}) or "")  # type: ignore[arg-type]
    assert can_resume(3, LIMIT) and not can_resume("auto", LIMIT) and not can_resume(3, None)


@pytest.mark.parametrize(("value", "expected"), [("100G", 100 << 30), ("1M", 1 << 20), ("0", None)])
def test_max_object_size(value: str, expected: int | None) -> None:
    assert parse_config(with_value("rclone", "max_object_size", value)).max_object_size == expected


@pytest.mark.parametrize("value", ["512K", "big", "-1G"])
def test_a_bad_max_object_size_names_the_key(value: str) -> None:
    with pytest.raises(ConfigError, match=r"\[rclone\] max_object_size = "):
        parse_config(with_value("rclone", "max_object_size", value))


class FakeAhead:
    """Hands out chunks, then raises what the reading thread found (or ends)."""

    def __init__(self, chunks: list[bytes], then: BaseException | None, on_read: Callable[[int], None]) -> None:
        self.chunks, self.then, self.on_read, self.reads = list(chunks), then, on_read, 0

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        self.on_read(self.reads)
        if self.chunks:
            return self.chunks.pop(0)
        if self.then is not None:
            raise self.then
        return b""


class FakeDownloads:
    def __init__(self, several: bool) -> None:
        self.several, self.position = several, 1


def test_an_undecodable_volume_is_named_once_its_end_is_read() -> None:
    mismatch = IntegrityError("x.0002: volume 2 of 3 does not match its manifest")
    cats = FakeDownloads(several=True)
    ahead = FakeAhead([b"a", b"b"], mismatch, on_read=lambda n: None)
    assert pipeline._damaged_volume(ahead, cats) is mismatch  # type: ignore[arg-type]
    assert ahead.reads == 3


def test_when_the_volume_being_read_matches_the_decoding_error_stands() -> None:
    cats = FakeDownloads(several=True)

    def next_volume(reads: int) -> None:
        if reads == 2:
            cats.position = 2

    ahead = FakeAhead([b"a", b"b", b"c"], None, on_read=next_volume)
    assert pipeline._damaged_volume(ahead, cats) is None  # type: ignore[arg-type]
    assert ahead.reads == 2  # no further than the next volume's start


def test_a_single_object_is_not_read_on() -> None:
    ahead = FakeAhead([b"a"], None, on_read=lambda n: None)
    assert pipeline._damaged_volume(ahead, FakeDownloads(several=False)) is None  # type: ignore[arg-type]
    assert ahead.reads == 0


def test_stream_hashes_give_each_volume_and_the_whole_stream() -> None:
    from zfsglacier.stream.volumes import StreamHashes

    first, second = os.urandom(1000), os.urandom(700)
    hashes = StreamHashes()
    hashes.update(first[:300])
    hashes.update(first[300:])
    assert hashes.end_volume() == (1000, hashlib.sha256(first).hexdigest())
    hashes.update(second)
    assert hashes.end_volume() == (700, hashlib.sha256(second).hexdigest())
    assert (hashes.whole.bytes, hashes.whole.hexdigest()) == (1700, hashlib.sha256(first + second).hexdigest())
