"""The ranged reader (stream/ranged_reads.py: RangedReader) with a stand-in for rclone cat: each range is
served from memory through a real pipe by a thread that can be slow, fail, stop short or go silent, as a script says."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import IO

import pytest

from zfsglacier.errors import IntegrityError, ObjectFrozen, RemoteError, StageError
from zfsglacier.remote.manifest import Volume
from zfsglacier.stream.ranged_reads import Part, RangedReader, ReadSettings, plan_ranges

KIB = 1 << 10
RANGE = 64 * KIB


class FakeCat:
    """A started read: `data` written to a pipe by a thread (after `delay` s, `stall` s before the last
    half when stall is set), then exit `code` with `stderr`."""

    def __init__(self, data: bytes, code: int = 0, stderr: str = "", delay: float = 0.0,
                 stall: float = 0.0) -> None:
        read, write = os.pipe()
        self._out = os.fdopen(read, "rb", buffering=0)
        self._code, self._stderr = code, stderr
        self._killed = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(write, data, delay, stall), daemon=True)
        self._thread.start()

    def _serve(self, fd: int, data: bytes, delay: float, stall: float) -> None:
        try:
            if self._killed.wait(delay):
                return
            half = len(data) // 2 if stall else len(data)
            os.write(fd, data[:half]) if half else None
            if stall and not self._killed.wait(stall):
                os.write(fd, data[half:])
        except OSError:
            pass
        finally:
            os.close(fd)
            self._done.set()

    @property
    def stdout(self) -> IO[bytes]:
        return self._out

    def wait(self, timeout: float | None = None) -> int:
        self._done.wait(timeout)
        return -9 if self._killed.is_set() else self._code

    def kill(self) -> None:
        self._killed.set()

    def failure(self, returncode: int | None = None) -> StageError:
        code = self.wait() if returncode is None else returncode
        cls = ObjectFrozen if "restore first" in self._stderr else RemoteError
        return cls("rclone cat", f"exited with status {code}", self._stderr)


@dataclass
class Remote:
    """Objects by path, and how the reads of each (path, offset) go, attempt by attempt."""

    objects: dict[str, bytes]
    script: dict[tuple[str, int], list[dict[str, object]]] = field(default_factory=dict)
    asked: list[tuple[str, int, int | None]] = field(default_factory=list)

    def open(self, part: Part, offset: int, count: int | None) -> FakeCat:
        """Each script applies to the reads of the RANGE bytes from its offset: a range read again too."""
        self.asked.append((part.path, offset, count))
        data = self.objects[part.path]
        served = data[offset:offset + count] if count is not None else data[offset:]
        how = next((steps for (path, start), steps in self.script.items()
                    if path == part.path and start <= offset < start + RANGE), [])
        options = how.pop(0) if how else {}
        if "short" in options:
            served = served[: int(options["short"])]  # type: ignore[call-overload]
        return FakeCat(served, **{k: v for k, v in options.items() if k != "short"})  # type: ignore[arg-type]


def parts_of(objects: dict[str, bytes]) -> list[Part]:
    return [Part(path, Volume(path.rpartition("/")[2], len(data), hashlib.sha256(data).hexdigest()))
            for path, data in objects.items()]


def read_all(reader: RangedReader) -> bytes:
    stop = threading.Event()
    out = bytearray()
    try:
        while piece := reader.next_piece(stop):
            out += piece
        reader.check()
    finally:
        reader.close()
    return bytes(out)


def settings(**kwargs: object) -> ReadSettings:
    base: dict[str, object] = {"streams": 4, "range_bytes": 64 * KIB, "retries": 2, "first_pause": 0.01}
    return ReadSettings(**{**base, **kwargs})  # type: ignore[arg-type]


def test_ranges_cover_each_object_and_small_objects_are_one_read() -> None:
    parts = parts_of({"r:b/big": bytes(300 * KIB), "r:b/small": bytes(100 * KIB)})
    ranges = plan_ranges(parts, settings())
    assert [(r.part, r.offset, r.count, r.whole, r.number, r.of) for r in ranges] == [
        (0, 0, 64 * KIB, False, 1, 5), (0, 64 * KIB, 64 * KIB, False, 2, 5), (0, 128 * KIB, 64 * KIB, False, 3, 5),
        (0, 192 * KIB, 64 * KIB, False, 4, 5), (0, 256 * KIB, 44 * KIB, False, 5, 5),  # the short final range
        (1, 0, 100 * KIB, True, 1, 1),  # under two ranges: one plain read
    ]
    assert [r.whole for r in plan_ranges(parts, settings(streams=1))] == [True, True]


def test_ranges_finishing_out_of_order_are_handed_on_in_order() -> None:
    data = os.urandom(300 * KIB + 17)
    remote = Remote({"r:b/x": data})
    # The first range is the slowest, the last the fastest.
    for number, offset in enumerate(range(0, len(data), 64 * KIB)):
        remote.script[("r:b/x", offset)] = [{"delay": 0.2 - 0.04 * number}]
    reader = RangedReader(parts_of(remote.objects), remote.open, settings())
    assert read_all(reader) == data
    assert reader.hashes.whole.hexdigest() == hashlib.sha256(data).hexdigest()
    assert [(offset, count) for _, offset, count in remote.asked] == [
        (o, min(64 * KIB, len(data) - o)) for o in range(0, len(data), 64 * KIB)]


def test_no_more_than_streams_ranges_are_read_or_held_at_once() -> None:
    data = os.urandom(640 * KIB)
    remote = Remote({"r:b/x": data})
    reader = RangedReader(parts_of(remote.objects), remote.open, settings(streams=3))
    stop = threading.Event()
    first = reader.next_piece(stop)
    time.sleep(0.3)  # the others are read ahead meanwhile, but only up to `streams` ranges
    assert first and len(remote.asked) == 3
    assert first + read_all(reader) == data and len(remote.asked) == 10


def test_a_range_that_fails_once_is_read_again_from_where_it_stopped(caplog: pytest.LogCaptureFixture) -> None:
    data = os.urandom(256 * KIB)
    remote = Remote({"r:b/x": data}, {("r:b/x", 64 * KIB): [{"short": 10_000, "code": 1,
                                                              "stderr": "ERROR : connection reset by peer"}]})
    with caplog.at_level(logging.WARNING, logger="zfsglacier"):
        assert read_all(RangedReader(parts_of(remote.objects), remote.open, settings())) == data
    assert ("r:b/x", 64 * KIB + 10_000, 64 * KIB - 10_000) in remote.asked, remote.asked
    (retry,) = [m for m in caplog.messages if "again" in m]
    assert retry.startswith("r:b/x: rclone cat: reading r:b/x bytes 65536-131071 (range 2 of 4): exited with "
                            "status 1: ERROR : connection reset by peer; reading it again from byte 75536 in ")
    assert retry.endswith("(attempt 2 of 3)")


def test_a_range_that_always_fails_ends_the_stream_naming_the_object_and_offset() -> None:
    data = os.urandom(256 * KIB)
    failing = {"short": 5000, "code": 1, "stderr": "ERROR : 503 Slow Down"}
    remote = Remote({"r:b/x": data}, {("r:b/x", 128 * KIB): [dict(failing) for _ in range(3)]})
    with pytest.raises(RemoteError) as info:
        read_all(RangedReader(parts_of(remote.objects), remote.open, settings()))
    assert str(info.value) == ("rclone cat: reading r:b/x bytes 141072-196607 (range 3 of 4): exited with status 1: "
                               "ERROR : 503 Slow Down")  # after 2 x 5000 bytes
    assert sum(1 for _, offset, _ in remote.asked if 128 * KIB <= offset < 192 * KIB) == 3  # the first and 2 more


def test_a_range_short_of_what_it_asked_for_before_the_end_is_an_error_never_silent() -> None:
    data = os.urandom(256 * KIB)
    short = {"short": 1000}  # rclone exits 0, yet the range is not all there
    remote = Remote({"r:b/x": data}, {("r:b/x", 0): [dict(short) for _ in range(3)]})
    with pytest.raises(IntegrityError) as info:
        read_all(RangedReader(parts_of(remote.objects), remote.open, settings(), then="; stopped"))
    assert str(info.value) == ("r:b/x bytes 2000-65535 (range 1 of 4): ended after 1000 of the 63536 bytes asked "
                               "for, short of the 262144 its manifest gives; stopped")


def test_a_short_range_read_again_completes() -> None:
    data = os.urandom(256 * KIB)
    remote = Remote({"r:b/x": data}, {("r:b/x", 0): [{"short": 1000}]})
    assert read_all(RangedReader(parts_of(remote.objects), remote.open, settings())) == data
    assert ("r:b/x", 1000, 64 * KIB - 1000) in remote.asked


def test_an_object_longer_than_its_manifest_is_an_integrity_error() -> None:
    data = os.urandom(100 * KIB)
    remote = Remote({"r:b/x": data + b"more"})
    parts = [Part("r:b/x", Volume("x", len(data), hashlib.sha256(data).hexdigest()))]
    with pytest.raises(IntegrityError, match=r"r:b/x: longer than its manifest says \(102400 bytes\)"):
        read_all(RangedReader(parts, remote.open, settings()))


def test_a_stalled_range_is_killed_and_read_again(caplog: pytest.LogCaptureFixture) -> None:
    data = os.urandom(256 * KIB)
    remote = Remote({"r:b/x": data}, {("r:b/x", 192 * KIB): [{"stall": 30.0}]})
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="zfsglacier"):
        assert read_all(RangedReader(parts_of(remote.objects), remote.open, settings(stall_timeout=0.3))) == data
    assert time.monotonic() - started < 10
    assert any("the remote sent no data for 0.3s ([rclone] stall_timeout = 0.3s); reading it again from byte "
               f"{192 * KIB + 32 * KIB}" in m for m in caplog.messages), caplog.messages


def test_a_range_that_always_stalls_ends_the_stream() -> None:
    data = os.urandom(256 * KIB)
    remote = Remote({"r:b/x": data}, {("r:b/x", 0): [{"stall": 30.0} for _ in range(3)]})
    with pytest.raises(RemoteError, match=r"^rclone cat: reading r:b/x bytes \d+-65535 \(range 1 of 4\): the "
                                          r"remote sent no data for 0.2s"):
        read_all(RangedReader(parts_of(remote.objects), remote.open, settings(stall_timeout=0.2, range_bytes=64 * KIB)))


def test_waiting_for_room_to_hand_on_is_no_stall() -> None:
    """A read that has filled its buffer waits for the reading side: that is not the remote stalling."""
    data = os.urandom(100 * KIB)  # one plain read, longer than a range's buffer
    remote = Remote({"r:b/x": data})
    reader = RangedReader(parts_of(remote.objects), remote.open, settings(streams=1, stall_timeout=0.3))
    first = reader.next_piece(threading.Event())
    time.sleep(1.0)  # the reading side is slow; the read waits for room meanwhile
    assert first is not None and first + read_all(reader) == data
    assert remote.asked == [("r:b/x", 0, None)], "read once, never again"


def test_a_frozen_object_is_never_read_again() -> None:
    data = os.urandom(256 * KIB)
    frozen = {"short": 0, "code": 1, "stderr": "Failed to open: Object in GLACIER, restore first"}
    remote = Remote({"r:b/x": data}, {("r:b/x", 0): [dict(frozen)]})
    with pytest.raises(ObjectFrozen):
        read_all(RangedReader(parts_of(remote.objects), remote.open, settings()))
    assert sum(1 for _, offset, _ in remote.asked if offset == 0) == 1


def test_volumes_are_read_on_across_their_boundaries_and_each_checked() -> None:
    objects = {"r:b/s.full.zfs.zst": os.urandom(200 * KIB), "r:b/s.full.zfs.zst.0002": os.urandom(150 * KIB)}
    remote = Remote(dict(objects))
    reader = RangedReader(parts_of(objects), remote.open, settings())
    assert read_all(reader) == b"".join(objects.values())
    assert reader.position == 2
    # A damaged second volume is named as such.
    damaged = dict(objects)
    damaged["r:b/s.full.zfs.zst.0002"] = bytes(150 * KIB)
    with pytest.raises(IntegrityError, match=r"r:b/s.full.zfs.zst.0002: volume 2 of 2 does not match its manifest"):
        read_all(RangedReader(parts_of(objects), Remote(damaged).open, settings()))


def test_closing_stops_the_range_threads_while_they_wait() -> None:
    data = os.urandom(640 * KIB)
    remote = Remote({"r:b/x": data}, {("r:b/x", 0): [{"delay": 60.0}]})
    reader = RangedReader(parts_of(remote.objects), remote.open, settings())
    stop = threading.Event()
    consumer = threading.Thread(target=reader.next_piece, args=(stop,), daemon=True)
    consumer.start()
    time.sleep(0.2)
    started = time.monotonic()
    stop.set()
    reader.stop()
    reader.close()
    consumer.join(5)
    assert not consumer.is_alive() and time.monotonic() - started < 5


def test_memory_is_stated_as_streams_times_range() -> None:
    assert ReadSettings(4, 16 << 20).describe() == "4 streams of 16.0 MiB ranges (up to 64.0 MiB buffered)"
    assert ReadSettings(1, 16 << 20).describe() == "one stream per object"

