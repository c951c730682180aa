"""Threads that let the stages of a stream overlap inside one process.

Without them the pump is serial: while it waits for a full pipe to `zfs receive`, nobody reads from
`rclone cat`, and while it waits for `zfs send`, nobody writes to rclone. `Prefetch` reads ahead
into a bounded queue and `WriteBehind` writes from one; blocking pipe I/O, hashing and the codecs
release the GIL, so they truly run side by side. Memory stays bounded by DEPTH chunks per thread.

An error in a thread is raised in the caller at its next call, as if the call itself had failed.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import threading
from collections.abc import Callable
from typing import Protocol

from zfsglacier.signals import checkpoint
from zfsglacier.threads import carried

DEPTH = 4
POLL = 0.1  # how often a thread blocked on a full or empty queue checks whether it should stop


class PieceSource(Protocol):
    """Where Prefetch reads from, in its thread."""

    def next_piece(self, stop: threading.Event) -> bytes | None:
        """The next piece of the stream, in order: b"" at its end, None once `stop` is set."""


class PipeSource:
    """A pipe read in `chunk`-sized pieces (fewer bytes only at its end); `seen` is called with each.

    It waits with poll() rather than in read(), so that it can always be stopped: under zfs-fuse the
    daemon, not the `zfs send` process, holds the pipe's other end, so killing the child does not always
    end the stream."""

    def __init__(self, fd: int, chunk: int, seen: Callable[[bytes], object] = len) -> None:
        self._fd = fd
        self._chunk = chunk
        self._seen = seen

    def next_piece(self, stop: threading.Event) -> bytes | None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        parts: list[bytes] = []
        size = 0
        while size < self._chunk:
            if stop.is_set():
                return None
            if not poller.poll(POLL * 1000):
                continue
            data = os.read(self._fd, self._chunk - size)
            if not data:
                break
            self._seen(data)
            parts.append(data)
            size += len(data)
        return b"".join(parts)


class Prefetch:
    """Reads a source's pieces ahead in a thread, up to DEPTH of them; `read()` hands them out in order."""

    def __init__(self, source: PieceSource, name: str) -> None:
        self._source = source
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(DEPTH)
        self._stop = threading.Event()
        self._left = memoryview(b"")
        self._eof = False
        self._thread = threading.Thread(target=carried(self._run), name=name, daemon=True)
        self._thread.start()

    def _put(self, item: bytes | BaseException) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=POLL)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            while (piece := self._source.next_piece(self._stop)) is not None:
                if not self._put(piece) or not piece:
                    return
        except BaseException as exc:  # handed to the caller, who raises it
            self._put(exc)

    def read(self, size: int = -1) -> bytes:
        if not self._left:
            if self._eof:
                return b""
            item = self._next()
            if isinstance(item, BaseException):
                self._eof = True
                raise item
            if not item:
                self._eof = True
                return b""
            if size < 0 or size >= len(item):
                return item  # the whole piece: no copy
            self._left = memoryview(item)
        take = len(self._left) if size < 0 else size
        data, self._left = self._left[:take], self._left[take:]
        return bytes(data)

    def _next(self) -> bytes | BaseException:
        # Never an endless wait: a signal that the kernel hands to another thread reaches the main thread's
        # handler only once it runs again (signals.py), and a read may wait for hours on a stalled remote.
        while True:
            try:
                return self._queue.get(timeout=POLL)
            except queue.Empty:
                checkpoint()

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def unread(self, data: bytes) -> None:
        """Put back what was just read, to be read again first."""
        self._left = memoryview(data + bytes(self._left))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class WriteBehind:
    """Writes what it is given with `write` in a thread, in order, up to DEPTH pieces ahead."""

    def __init__(self, write: Callable[[bytes], object], name: str) -> None:
        self._write = write
        self._queue: queue.Queue[bytes | None] = queue.Queue(DEPTH)
        self._error: BaseException | None = None
        self._failed = threading.Event()
        self._thread = threading.Thread(target=carried(self._run), name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if not self._failed.is_set():
                    self._write(item)
            except BaseException as exc:  # raised in the caller at its next call
                self._error = exc
                self._failed.set()
            finally:
                # A signal raised in the caller in the middle of Queue.put (signals.py) can leave an item
                # queued but not counted: its task_done() then raises ValueError, which must not end
                # this thread, or the caller would wait forever for room in the queue.
                with contextlib.suppress(ValueError):
                    self._queue.task_done()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._raise_error()
        piece = bytes(data)
        while True:
            try:
                self._queue.put(piece, timeout=POLL)
                return len(piece)
            except queue.Full:
                self._raise_error()
                self._check_alive()
                checkpoint()

    def _check_alive(self) -> None:
        if not self._thread.is_alive():
            raise RuntimeError(f"{self._thread.name}: the writing thread ended unexpectedly")

    def flush(self) -> None:
        """Wait until everything given so far is written; raise what went wrong, if anything."""
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks > 0 and self._thread.is_alive():
                self._queue.all_tasks_done.wait(POLL)
                checkpoint()
        self._raise_error()
        self._check_alive()

    def close(self) -> None:
        """Stop the thread. Pending pieces are dropped once a write failed; otherwise written first."""
        while self._thread.is_alive():
            try:
                self._queue.put(None, timeout=POLL)
                break
            except queue.Full:
                continue
        self._thread.join()
