"""The source of the restore (and verify) pipeline: a backup's stored objects read in order as one stream,
over several connections at once.

One HTTP stream from S3, B2 or Wasabi gets 20-100 MB/s whatever the link. So each object (each volume of
a backup) is read as consecutive ranges, `rclone cat --offset N --count M`, up to `streams` ranges at once,
each on its own connection; the ranges are handed on strictly in order, the first as it arrives, the
others buffered (memory: `streams` x `range_bytes` at most). An object shorter than two ranges is one
`rclone cat`, and so is every object with `streams = 1`.

A range whose rclone fails, or moves no data for `stall_timeout`, is read again from where it stopped, a
few times with a growing pause, each logged; only then does the stream fail, with the error naming the
object and the offset. A range that ends short of what it asked for, before the object's end, is such a
failure, never silently accepted. A read the remote refuses as frozen (ObjectFrozen) is never retried:
restore and verify turn it into a thaw.

What is handed on is hashed here, in order: the whole stream (the manifest's sha256) and, for a backup of
several volumes, each volume, checked against its manifest entry as its end passes. The size and sha256
checks of the pipeline and its held-back END record are therefore as strong as with one stream.

Over 300 lines: the range threads, the order they hand on in and their retries share one lock and one
queue, and are read together.
"""

from __future__ import annotations

import collections
import logging
import os
import select
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Protocol

from zfsglacier.errors import IntegrityError, ObjectFrozen, RemoteError, StageError, ZfsglacierError
from zfsglacier.remote.manifest import Volume
from zfsglacier.stream.readahead import POLL
from zfsglacier.stream.stall import describe_seconds
from zfsglacier.stream.volumes import StreamHashes
from zfsglacier.units import human_bytes

log = logging.getLogger(__name__)

READ_PIECE = 1 << 20
DEFAULT_RETRIES = 3
FIRST_RETRY_PAUSE = 1.0  # seconds; doubled for each further attempt


@dataclass(frozen=True)
class Part:
    """One stored object of a backup (its only one, or one of its volumes): its rclone path and what its
    manifest promises."""

    path: str
    volume: Volume


@dataclass(frozen=True)
class ReadSettings:
    """How objects are read: `streams` ranges of `range_bytes` at once; a range is read again up to
    `retries` times; `stall_timeout` (None: wait forever) is how long a range may move no data."""

    streams: int = 1
    range_bytes: int = 16 << 20
    stall_timeout: float | None = None
    retries: int = DEFAULT_RETRIES
    first_pause: float = FIRST_RETRY_PAUSE

    @property
    def memory_bytes(self) -> int:
        return self.streams * self.range_bytes

    def describe(self) -> str:
        if self.streams == 1:
            return "one stream per object"
        return (f"{self.streams} streams of {human_bytes(self.range_bytes)} ranges (up to "
                f"{human_bytes(self.memory_bytes)} buffered)")


class RangeChild(Protocol):
    """A started read of one range (rclone cat, or a stand-in in tests)."""

    @property
    def stdout(self) -> IO[bytes]: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def kill(self) -> None: ...

    def failure(self, returncode: int | None = None) -> StageError: ...


# Starts the read of `count` bytes of `part` from `offset` (count None: the whole object, offset 0).
OpenRange = Callable[[Part, int, int | None], RangeChild]


@dataclass
class _Range:
    part: int  # index into the parts
    offset: int
    count: int
    whole: bool  # the whole object: one plain `rclone cat`
    number: int  # 1-based, within its object
    of: int  # ranges of its object
    received: int = 0
    buffered: int = 0
    done: bool = False
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.chunks: collections.deque[bytes] = collections.deque()


class _Attempt(Exception):
    """One attempt at a range failed in a way worth another try."""

    def __init__(self, error: ZfsglacierError) -> None:
        super().__init__(str(error))
        self.error = error


def plan_ranges(parts: Sequence[Part], settings: ReadSettings) -> list[_Range]:
    ranges: list[_Range] = []
    for index, part in enumerate(parts):
        size = part.volume.stored_bytes
        if settings.streams == 1 or size < 2 * settings.range_bytes:
            ranges.append(_Range(index, 0, size, True, 1, 1))
            continue
        starts = range(0, size, settings.range_bytes)
        for number, offset in enumerate(starts, 1):
            ranges.append(_Range(index, offset, min(settings.range_bytes, size - offset), False, number,
                                 len(starts)))
    return ranges


class RangedReader:
    """The parts of one backup, in order, as pieces for Prefetch (readahead.PieceSource).

    Range threads fill the ranges ahead; `next_piece` (Prefetch's thread) hands them on in order and hashes
    them. `close` stops the threads (the pipeline kills the children first)."""

    def __init__(self, parts: Sequence[Part], open_range: OpenRange, settings: ReadSettings,
                 then: str = "", sleep: Callable[[float], bool] | None = None) -> None:
        self._parts = list(parts)
        self._open_range = open_range
        self._settings = settings
        self._then = then  # appended to an integrity error: what it means for the receive
        self._pending = collections.deque(plan_ranges(self._parts, settings))  # not started yet, in order
        self._open: collections.deque[_Range] = collections.deque()  # started, not yet handed on, in order
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._pause = sleep or self._stop.wait  # returns True once stopped
        self._threads: list[threading.Thread] = []
        self.hashes = StreamHashes()  # the whole stream (the manifest's sha256), and each part of several
        self.position = 0  # the part being handed on; it moves on only once the previous one matched

    @property
    def several(self) -> bool:
        return len(self._parts) > 1

    # --- the reading side (Prefetch's thread) ---------------------------------------------------------

    def next_piece(self, stop: threading.Event) -> bytes | None:
        while True:
            self._start_ranges()
            if not self._open:
                return b""
            head = self._open[0]
            with self._cond:
                while not head.chunks and not head.done and head.error is None:
                    if stop.is_set():
                        return None
                    self._cond.wait(POLL)
                if head.chunks:
                    piece = head.chunks.popleft()
                    head.buffered -= len(piece)
                    self._cond.notify_all()
                elif head.error is not None:
                    raise head.error
                else:
                    piece = b""
            if piece:
                self.hashes.update(piece)
                return piece
            self._open.popleft()
            if head.number == head.of:
                self._end_of_part(head.part)

    def _start_ranges(self) -> None:
        if len(self._open) >= self._settings.streams or not self._pending:
            return
        self._threads = [thread for thread in self._threads if thread.is_alive()]
        while self._pending and len(self._open) < self._settings.streams:
            r = self._pending.popleft()
            self._open.append(r)
            thread = threading.Thread(target=self._fetch, args=(r,), daemon=True,
                                      name=f"read: {self._parts[r.part].path} @{r.offset}")
            self._threads.append(thread)
            thread.start()

    def _end_of_part(self, index: int) -> None:
        """A part was handed on whole: for a backup of several, it must match its own manifest entry."""
        size, sha256 = self.hashes.end_volume()
        part = self._parts[index]
        if self.several and (size, sha256) != (part.volume.stored_bytes, part.volume.sha256):
            raise IntegrityError(
                f"{part.path}: volume {index + 1} of {len(self._parts)} does not match its manifest (size {size}, "
                f"expected {part.volume.stored_bytes}; sha256 {sha256}, expected {part.volume.sha256}){self._then}")
        self.position = index + 1

    # --- the range threads ----------------------------------------------------------------------------

    def _fetch(self, r: _Range) -> None:
        part = self._parts[r.part]
        attempt = 1
        while not self._stop.is_set():
            try:
                self._attempt(r, part)
                if self._stop.is_set():
                    return
                with self._cond:
                    r.done = True
                    self._cond.notify_all()
                return
            except ObjectFrozen as frozen:
                return self._fail(r, frozen)
            except _Attempt as failed:
                if attempt > self._settings.retries:
                    return self._fail(r, failed.error)
                pause = self._settings.first_pause * 2 ** (attempt - 1)
                log.warning("%s: %s; reading it again from byte %d in %s (attempt %d of %d)", part.path,
                            failed.error, r.offset + r.received, describe_seconds(pause), attempt + 1,
                            self._settings.retries + 1)
                attempt += 1
                if self._pause(pause):
                    return
            except BaseException as exc:  # handed to the reading side
                return self._fail(r, exc)

    def _fail(self, r: _Range, error: BaseException) -> None:
        with self._cond:
            r.error = error
            self._cond.notify_all()

    def _attempt(self, r: _Range, part: Part) -> None:
        """One rclone cat of what is left of the range. Raises _Attempt for a failure worth retrying."""
        whole = r.whole and r.received == 0
        got, span = r.received, self._span(r)
        child = self._open_range(part, r.offset + got, None if whole else r.count - got)
        where = f"reading {part.path}{span}"
        stalled = False
        try:
            stalled = self._pump(r, child)
        except BaseException:
            child.kill()
            raise
        finally:
            child.stdout.close()
        if self._stop.is_set():
            child.kill()
            child.wait()
            return
        code = child.wait()
        if stalled:
            limit = describe_seconds(self._settings.stall_timeout or 0)
            raise _Attempt(RemoteError("rclone cat", f"{where}: the remote sent no data for {limit} ([rclone] "
                                                     f"stall_timeout = {limit})"))
        if code != 0 and r.received < r.count:  # all there: what rclone found wrong after, the sha256 judges
            failure = child.failure(code)
            if isinstance(failure, ObjectFrozen):
                raise failure
            raise _Attempt(type(failure)(failure.stage, f"{where}: {failure.detail}", failure.stderr_tail))
        if r.received < r.count:  # rclone said nothing went wrong: read again, then the object is to blame
            raise _Attempt(IntegrityError(f"{part.path}{span}: ended after {r.received - got} of the "
                                          f"{r.count - got} bytes asked for, short of the {part.volume.stored_bytes} "
                                          f"its manifest gives{self._then}"))

    @staticmethod
    def _span(r: _Range) -> str:
        """What of its object a range reads now: "" (all of it), "from byte N", or "bytes N-M (range i of n)"."""
        if r.whole:
            return f" from byte {r.received}" if r.received else ""
        return f" bytes {r.offset + r.received}-{r.offset + r.count - 1} (range {r.number} of {r.of})"

    def _pump(self, r: _Range, child: RangeChild) -> bool:
        """Move the child's output into the range until its end; True when it stalled (and was killed).
        Waits while the range holds `range_bytes` not yet handed on (a range ahead of the one being read):
        only the waits for the remote count towards a stall."""
        fd = child.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        path, stall = self._parts[r.part].path, self._settings.stall_timeout
        waiting_since: float | None = None
        while not self._stop.is_set():
            with self._cond:
                while r.buffered >= self._settings.range_bytes and not self._stop.is_set():
                    self._cond.wait(POLL)
            waiting_since = waiting_since or time.monotonic()
            if not poller.poll(POLL * 1000):
                if stall is not None and time.monotonic() - waiting_since > stall:
                    child.kill()
                    return True
                continue
            # One byte more than is left tells a longer object from one that ends where it should.
            data = os.read(fd, min(READ_PIECE, r.count - r.received + 1))
            if not data:
                return False
            if r.received + len(data) > r.count:
                size = self._parts[r.part].volume.stored_bytes
                raise IntegrityError(f"{path}: longer than its manifest says ({size} bytes){self._then}")
            waiting_since = None
            with self._cond:
                r.chunks.append(data)
                r.received += len(data)
                r.buffered += len(data)
                self._cond.notify_all()
        return False

    def check(self) -> None:
        """After the end of the stream: every range was handed on."""
        if self._open or self._pending:
            raise RemoteError("rclone cat", "the stream ended before its last range")

    def stop(self) -> None:
        """The stream is being killed: no range is read again, whatever happens to its rclone."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        self.stop()
        for thread in self._threads:
            thread.join()
