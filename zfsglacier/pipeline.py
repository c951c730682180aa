"""The data path, top to bottom.

backup:   zfs send --stdout--> 1 MiB chunks -> codec writer -> sha256 + count -> rclone rcat --stdin-->
restore:  rclone cat --stdout--> sha256 + count -> codec reader -> hold back the last MiB -> zfs receive
          the held-back tail (which holds the stream's END record, without which zfs receive commits
          nothing) is written only after the whole object matched its size and sha256.

Every child's exit status is checked: a `zfs send` that dies looks like a clean end of input, and so
does a download that `rclone cat` gave up on.
"""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO

from . import rclone as rclone_mod
from .codecs import Codec, Level, Writer
from .errors import IntegrityError, RemoteError, StageError, ZfsError, ZfsglacierError
from .proc import PIPE, Child, child_env

CHUNK = 1 << 20
HOLD_BACK = 1 << 20

# Called with (raw bytes just moved, stored bytes so far).
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class StreamStats:
    raw_bytes: int
    stored_bytes: int
    sha256: str
    seconds: float


class HashingSink:
    """Counts and hashes what goes into a child's stdin."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._hash = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self._out.write(data)
        self.bytes += len(data)
        return len(data)

    def flush(self) -> None:
        self._out.flush()

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class HashingSource:
    """Counts and hashes what comes out of a child's stdout; can peek at the first bytes."""

    def __init__(self, src: IO[bytes]) -> None:
        self._src = src
        self._hash = hashlib.sha256()
        self._peeked = b""
        self.bytes = 0

    def _pull(self, size: int) -> bytes:
        data = self._src.read(size)
        self._hash.update(data)
        self.bytes += len(data)
        return data

    def peek(self, size: int) -> bytes:
        while len(self._peeked) < size:
            data = self._pull(size - len(self._peeked))
            if not data:
                break
            self._peeked += data
        return self._peeked[:size]

    def read(self, size: int = -1) -> bytes:
        if self._peeked:
            data, self._peeked = self._peeked, b""
            return data
        return self._pull(size if size > 0 else CHUNK)

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def _failure_of(child: Child, cause: BaseException) -> StageError:
    """A write to `child` failed or its output ended early: its exit status says why."""
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    failure = child.failure()
    if child.popen.returncode == 0:
        failure = child.error(child.stage, f"stopped reading its input early ({cause})")
    return failure


def send_to_remote(
    send_argv: Sequence[str],
    rcat_argv: Sequence[str],
    codec: Codec,
    level: Level,
    threads: int,
    progress: ProgressFn,
) -> StreamStats:
    started = time.monotonic()
    send = Child("zfs send", send_argv, error=ZfsError, stdout=PIPE, env=child_env())
    try:
        rcat = Child("rclone rcat", rcat_argv, error=RemoteError, stdin=PIPE, env=rclone_mod.env())
    except BaseException:
        send.abort()
        raise
    sink = HashingSink(rcat.stdin)
    raw = 0
    writer: Writer | None = None
    try:
        writer = codec.open_writer(sink, level, threads)
        while chunk := send.stdout.read(CHUNK):
            writer.write(chunk)
            raw += len(chunk)
            progress(len(chunk), sink.bytes)
        send.check()
        if raw == 0:
            raise ZfsError("zfs send", "produced no data")
        writer.close()  # the codec's last frame goes to rclone now
        rcat.close_stdin()
        rcat.check()
    except (BrokenPipeError, ConnectionResetError) as exc:
        # rclone stopped reading, so it cannot see an end of input: its exit status says why.
        failure = _failure_of(rcat, exc)
        rcat.abort()
        _close_quietly(writer)
        send.abort()
        raise failure from None
    except BaseException:
        rcat.abort()  # killed before its stdin is closed: it can never finish a truncated upload
        _close_quietly(writer)
        send.abort()
        raise
    return StreamStats(raw, sink.bytes, sink.hexdigest(), time.monotonic() - started)


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


def receive_from_remote(
    cat_argv: Sequence[str],
    receive_argv: Sequence[str],
    codec: Codec,
    expected: Expected,
    progress: ProgressFn,
) -> StreamStats:
    started = time.monotonic()
    cat = Child("rclone cat", cat_argv, error=RemoteError, stdout=PIPE, env=rclone_mod.env())
    try:
        receive = Child("zfs receive", receive_argv, error=ZfsError, stdin=PIPE, env=child_env())
    except BaseException:
        cat.abort()
        raise
    source = HashingSource(cat.stdout)
    raw = 0
    held = bytearray()
    try:
        head = source.peek(len(codec.magic))
        if not head.startswith(codec.magic):
            if not head:
                if cat.wait() != 0:
                    raise cat.failure()
                raise IntegrityError(f"{expected.path}: empty, or gone from the remote since it was listed")
            raise IntegrityError(f"{expected.path}: not a {codec.format} stream (it starts with {head.hex()!r})")
        reader = codec.open_reader(source)
        try:
            while True:
                try:
                    chunk = reader.read(CHUNK)
                except codec.decode_errors as exc:
                    raise _decode_failure(cat, expected, exc) from None
                if not chunk:
                    break
                raw += len(chunk)
                held += chunk
                if len(held) >= HOLD_BACK + CHUNK:
                    cut = len(held) - HOLD_BACK
                    _write(receive, memoryview(held)[:cut])
                    del held[:cut]
                progress(len(chunk), source.bytes)
        finally:
            reader.close()
        source.drain()
        cat.check()
        if source.bytes != expected.stored_bytes or source.hexdigest() != expected.sha256:
            raise IntegrityError(
                f"{expected.path}: does not match its manifest (size {source.bytes}, expected "
                f"{expected.stored_bytes}; sha256 {source.hexdigest()}, expected {expected.sha256}); "
                "the stream was stopped before zfs receive could commit it"
            )
        if raw != expected.raw_bytes:
            raise IntegrityError(
                f"{expected.path}: decompresses to {raw} bytes, its manifest says {expected.raw_bytes}; "
                "the stream was stopped before zfs receive could commit it"
            )
        _write(receive, held)
        receive.close_stdin()
        receive.check()
    except BaseException:
        receive.abort()  # killed before its stdin closes: an unfinished stream commits nothing
        cat.abort()
        raise
    return StreamStats(raw, source.bytes, source.hexdigest(), time.monotonic() - started)


def _write(child: Child, data: bytes | bytearray | memoryview) -> None:
    try:
        child.stdin.write(data)
    except (BrokenPipeError, ConnectionResetError) as exc:
        raise _failure_of(child, exc) from None


def _decode_failure(cat: Child, expected: Expected, exc: Exception) -> ZfsglacierError:
    # A download that rclone gave up on also ends in a truncated stream; blame the download then.
    try:
        code = cat.wait(timeout=2)
    except subprocess.TimeoutExpired:
        code = None
    if code not in (None, 0):
        return cat.failure()
    return IntegrityError(
        f"{expected.path}: cannot be decompressed ({type(exc).__name__}: {exc}); "
        "the stream was stopped before zfs receive could commit it"
    )
