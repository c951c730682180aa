"""The data path, top to bottom.

backup:   zfs send --stdout--> [read thread] 1 MiB chunks -> codec writer -> [write thread] sha256 + count
          -> rclone rcat --stdin-->
restore:  rclone cat --offset --count (several at once, ranged_reads.py) --stdout--> [range threads]
          -> in order: [read thread] sha256 + count -> codec reader -> hold back the last MiB
          -> [write thread] zfs receive --stdin-->
          the held-back tail (which holds the stream's END record, without which zfs receive commits
          nothing) is written only after the whole object matched its size and sha256.
verify:   the same without zfs receive.

Every child's exit status is checked: a `zfs send` that dies looks like a clean end of input, and so
does a download that `rclone cat` gave up on.

Over 300 lines: both data paths stay in this one file, so that each can be followed from end to end.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO

from zfsglacier.codec.registry import Codec, Level, Reader, Writer
from zfsglacier.errors import IntegrityError, StageError, StageErrorFactory, ZfsError
from zfsglacier.proc import PIPE, Child, child_env
from zfsglacier.remote import rclone as rclone_mod
from zfsglacier.remote.manifest import Volume
from zfsglacier.remote.rclone_errors import read_error
from zfsglacier.signals import signals_deferred
from zfsglacier.stream.ranged_reads import OpenRange, Part, RangedReader, ReadSettings
from zfsglacier.stream.readahead import PipeSource, Prefetch, WriteBehind
from zfsglacier.stream.stall import StallWatch
from zfsglacier.stream.volumes import Digest, VolumeUploads

CHUNK = 1 << 20
HOLD_BACK = 1 << 20
_STOPPED = "; the stream was stopped before zfs receive could commit it"

# Called with (raw bytes just moved, stored bytes so far).
ProgressFn = Callable[[int, int], None]
# Takes secrets out of what rclone says (see rclone.Rclone.redact).
Redact = Callable[[str], str]


def _as_is(text: str) -> str:
    return text


@dataclass(frozen=True)
class StreamStats:
    raw_bytes: int
    stored_bytes: int
    sha256: str
    seconds: float
    volumes: tuple[Volume, ...] = ()


class HeldBackTail:
    """The newest `size` bytes (at least) of a stream, kept back as whole chunks, without copying."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._chunks: deque[bytes] = deque()
        self._bytes = 0

    def push(self, chunk: bytes) -> list[bytes]:
        """Add a chunk; returns the oldest chunks that are no longer needed to cover `size` bytes."""
        self._chunks.append(chunk)
        self._bytes += len(chunk)
        ready = []
        while self._bytes - len(self._chunks[0]) >= self._size:
            oldest = self._chunks.popleft()
            self._bytes -= len(oldest)
            ready.append(oldest)
        return ready

    def release(self) -> list[bytes]:
        chunks, self._chunks, self._bytes = list(self._chunks), deque(), 0
        return chunks


class _Stages:
    """What a stream started: its children (stopped together, the last started first) and its helper
    threads (closed at the end). Start them inside `signals_deferred()`: a signal must not fall between
    starting a child and taking charge of it, or the child would run on, unseen. A helper thread may
    start children too (the next volume's rclone): once `kill` began, `start` refuses."""

    def __init__(self) -> None:
        self._children: list[Child] = []
        self._closers: list[Callable[[], object]] = []
        self._stoppers: list[Callable[[], object]] = []
        self._lock = threading.Lock()
        self._killed = False

    def start(self, stage: str, argv: Sequence[str], *, error: StageErrorFactory,
              stdin: int | IO[bytes] | None = None, stdout: int | IO[bytes] | None = None,
              env: dict[str, str] | None = None, redact: Callable[[str], str] | None = None) -> Child:
        with self._lock:
            if self._killed:
                raise error(stage, "not started: the stream was stopped")
            child = Child(stage, argv, error=error, stdin=stdin, stdout=stdout, env=env, redact=redact)
            self._children.append(child)
            return child

    def helper(self, close: Callable[[], object], stop: Callable[[], object] | None = None) -> None:
        """`close` ends a helper at the end of the stream; `stop`, when given, is told first when the stream
        is killed (so that its threads take the deaths of their children for what they are)."""
        self._closers.append(close)
        if stop is not None:
            self._stoppers.append(stop)

    def kill(self) -> None:
        """SIGKILL each child before its stdin is closed, the last started first: the consumer (rclone
        rcat, zfs receive) dies before its producer, so it never sees a clean end of a cut stream."""
        for stop in self._stoppers:
            stop()
        with self._lock:
            self._killed = True
            children = list(self._children)
        for child in reversed(children):
            child.abort()

    def close_helpers(self) -> None:
        for close in reversed(self._closers):
            close()


def _failure_of(child: Child, cause: BaseException) -> StageError:
    """A write to `child` failed or its output ended early: its exit status says why."""
    if child.exit_status_within(10) is None:
        child.kill()
        child.wait()
    failure = child.failure()
    if child.popen.returncode == 0:
        failure = child.error(child.stage, f"stopped reading its input early ({cause})")
    return failure


@dataclass(frozen=True)
class VolumeTarget:
    """Where the stored stream goes: `rcat_argv(name)` uploads one object; volume n is named `names(n)`
    and holds at most `limit` bytes (None: one object). `stored`: volumes an interrupted run already
    uploaded, compared instead of uploaded; `on_volume` is told each time a volume is complete."""

    rcat_argv: Callable[[str], list[str]]
    names: Callable[[int], str]
    limit: int | None = None
    stored: Sequence[Volume] = ()
    on_volume: Callable[[list[Volume]], None] | None = None


def send_to_remote(
    send_argv: Sequence[str],
    target: VolumeTarget,
    codec: Codec,
    level: Level,
    threads: int,
    progress: ProgressFn,
    stall_timeout: float | None = None,
    redact: Redact = _as_is,
) -> StreamStats:
    started = time.monotonic()
    stages = _Stages()
    stall: StallWatch | None = None
    uploads: VolumeUploads | None = None
    raw = 0
    writer: Writer | None = None
    try:
        with signals_deferred():
            send = stages.start("zfs send", send_argv, error=ZfsError, stdout=PIPE, env=child_env())
            stall = watch = StallWatch(None, stall_timeout, "the remote accepted no data", "rclone rcat")
            stages.helper(watch.close)
            uploads = VolumeUploads(stages.start, target.rcat_argv, target.names, target.limit, rclone_mod.env(), watch,
                              redact, target.stored, target.on_volume)
            ahead = Prefetch(PipeSource(send.stdout.fileno(), CHUNK), "read: zfs send")
            stages.helper(ahead.close)
            behind = WriteBehind(uploads.write, "write: rclone rcat")
            stages.helper(behind.close)
        produced = _Counted(behind)
        writer = codec.open_writer(produced, level, threads)
        while chunk := ahead.read():
            writer.write(chunk)
            raw += len(chunk)
            # What the codec has produced so far, not what rclone has taken: buffers between them
            # would make the ratio of the bytes so far look better than it is.
            progress(len(chunk), produced.bytes)
        send.check()
        if raw == 0:
            raise ZfsError("zfs send", "produced no data")
        writer.close()  # the codec's last frame goes to rclone now
        behind.flush()
        volumes = uploads.finish()  # rclone uploads what it still buffers, then exits
    except (BrokenPipeError, ConnectionResetError) as exc:
        # rclone stopped reading, so it cannot see an end of input: its exit status says why.
        current = uploads.current if uploads is not None else None
        failure = watch.error() if watch.fired or current is None else _failure_of(current, exc)
        stages.kill()
        _close_quietly(writer)
        raise failure from None
    except BaseException:
        stages.kill()  # rclone killed before its stdin is closed: it can never finish a truncated upload
        _close_quietly(writer)
        if stall is not None and stall.fired:
            raise stall.error() from None
        raise
    finally:
        stages.close_helpers()
    return StreamStats(raw, uploads.hashes.whole.bytes, uploads.hashes.whole.hexdigest(), time.monotonic() - started,
                       tuple(volumes))


class _Counted:
    """A sink that counts what passes through it to `sink`."""

    def __init__(self, sink: WriteBehind) -> None:
        self._sink = sink
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.bytes += len(data)
        return self._sink.write(data)

    def flush(self) -> None:
        self._sink.flush()


def _close_quietly(writer: Writer | None) -> None:
    if writer is not None:
        with contextlib.suppress(Exception):  # the first error is the one being reported
            writer.close()


@dataclass(frozen=True)
class Expected:
    """What the manifest promises about a stored object."""

    path: str
    stored_bytes: int
    sha256: str
    raw_bytes: int


@dataclass(frozen=True)
class Source:
    """Where a stored backup is read from: its objects in order, the rclone argv that reads one of them
    (path, offset, count or None for the whole object), and how (ranges, streams, retries)."""

    parts: Sequence[Part]
    cat_argv: Callable[[str, int, int | None], list[str]]
    settings: ReadSettings
    redact: Redact = _as_is


def receive_from_remote(source: Source, codec: Codec, expected: Expected, progress: ProgressFn,
                        receive_argv: Sequence[str] | None) -> StreamStats:
    """Download a backup, check it and decompress it into `zfs receive RECEIVE_ARGV`, or to nowhere when
    None (verify: the objects are intact and decodable; only a receive proves the stream).

    What the objects hold must match the manifest (`expected`: the whole stream; the parts' own entries
    for a backup of several volumes) in size, sha256 and decompressed size. zfs receive never sees the
    stream's last HOLD_BACK bytes (its END record) before all of that matched, so a damaged stream is
    never committed."""
    started = time.monotonic()
    stages = _Stages()
    then = _STOPPED if receive_argv is not None else ""
    raw = 0
    held = HeldBackTail(HOLD_BACK)
    receive: Child | None = None
    behind: WriteBehind | None = None
    try:
        with signals_deferred():
            cats = RangedReader(source.parts, _range_opener(stages, source), source.settings, then)
            stages.helper(cats.close, stop=cats.stop)
            if receive_argv is not None:
                receive = stages.start("zfs receive", receive_argv, error=ZfsError, stdin=PIPE, env=child_env())
            ahead = Prefetch(cats, "read: rclone cat")
            stages.helper(ahead.close)
            if receive is not None:
                behind = WriteBehind(receive.stdin.write, "write: zfs receive")
                stages.helper(behind.close)
        _check_format(ahead, codec, expected)
        reader = codec.open_reader(ahead)
        try:
            for chunk in _decoded(reader, codec, expected, then):
                raw += len(chunk)
                if behind is not None:
                    for ready in held.push(chunk):
                        behind.write(ready)
                progress(len(chunk), cats.hashes.whole.bytes)
        except IntegrityError as undecodable:
            raise (_damaged_volume(ahead, cats) if receive is None else None) or undecodable from None
        finally:
            reader.close()
        while ahead.read(CHUNK):  # anything after the end of the compressed stream counts too
            pass
        cats.check()
        _check_expected(expected, cats.hashes.whole, raw, then)
        if receive is not None and behind is not None:
            for rest in held.release():
                behind.write(rest)
            behind.flush()
            receive.close_stdin()
            receive.check()
    except (BrokenPipeError, ConnectionResetError) as exc:
        if receive is None:
            raise
        failure = _failure_of(receive, exc)
        stages.kill()
        raise failure from None
    except BaseException:
        stages.kill()  # zfs receive killed before its stdin closes: an unfinished stream commits nothing
        raise
    finally:
        stages.close_helpers()
    return StreamStats(raw, cats.hashes.whole.bytes, cats.hashes.whole.hexdigest(), time.monotonic() - started)


def _range_opener(stages: _Stages, source: Source) -> OpenRange:
    env = rclone_mod.env()

    def open_range(part: Part, offset: int, count: int | None) -> Child:
        return stages.start("rclone cat", source.cat_argv(part.path, offset, count), error=read_error,
                            stdout=PIPE, env=env, redact=source.redact)

    return open_range


def _damaged_volume(ahead: Prefetch, cats: RangedReader) -> IntegrityError | None:
    """A damaged volume usually fails to decode before its end is read, and so before its own check
    could name it. verify downloads every volume anyway: read on to the end of the volume being read,
    and return its mismatch, if it has one."""
    if not cats.several:
        return None
    reading = cats.position
    try:
        while ahead.read(CHUNK):
            if cats.position > reading:  # that volume matched: the damage is elsewhere
                return None
    except IntegrityError as mismatch:
        return mismatch
    return None


def _decoded(reader: Reader, codec: Codec, expected: Expected, then: str) -> Iterator[bytes]:
    """The decompressed stream in chunks; a decoding error becomes the error that names the object."""
    while True:
        try:
            chunk = reader.read(CHUNK)
        except codec.decode_errors as exc:
            raise IntegrityError(f"{expected.path}: cannot be decompressed ({type(exc).__name__}: {exc}){then}") \
                from None
        if not chunk:
            return
        yield chunk


def _check_format(ahead: Prefetch, codec: Codec, expected: Expected) -> None:
    head = b""
    while len(head) < len(codec.magic) and (piece := ahead.read(len(codec.magic) - len(head))):
        head += piece
    ahead.unread(head)
    if head.startswith(codec.magic):
        return
    if not head:
        raise IntegrityError(f"{expected.path}: empty, or gone from the remote since it was listed")
    raise IntegrityError(f"{expected.path}: not a {codec.format} stream (it starts with {head.hex()!r})")


def _check_expected(expected: Expected, stored: Digest, raw: int, then: str = _STOPPED) -> None:
    """The whole object matched its manifest: only then may zfs receive see the end of the stream."""
    if stored.bytes != expected.stored_bytes or stored.hexdigest() != expected.sha256:
        raise IntegrityError(
            f"{expected.path}: does not match its manifest (size {stored.bytes}, expected "
            f"{expected.stored_bytes}; sha256 {stored.hexdigest()}, expected {expected.sha256}){then}"
        )
    if raw != expected.raw_bytes:
        raise IntegrityError(
            f"{expected.path}: decompresses to {raw} bytes, its manifest says {expected.raw_bytes}{then}"
        )
