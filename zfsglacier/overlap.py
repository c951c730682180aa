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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .stall import StallWatch

DEPTH = 4
_POLL = 0.1  # how often a thread blocked on a full or empty queue checks whether it should stop


class Prefetch:
    """Reads a pipe in `chunk`-sized pieces in a thread; `read()` hands them out in order.

    The thread waits with poll() rather than in read(), so that it can always be stopped: under
    zfs-fuse the daemon, not the `zfs send` process, holds the pipe's other end, so killing the
    child does not always end the stream.
    """

    def __init__(self, fd: int, chunk: int, name: str, seen: Callable[[bytes], object] = len,
                 watch: StallWatch | None = None, next_fd: Callable[[], int | None] | None = None) -> None:
        self._fd = fd
        self._next_fd = next_fd  # at the end of `fd`: the pipe to go on reading from, or None (the end)
        self._watch = watch  # told how long we wait for the other end
        self._chunk = chunk
        self._seen = seen  # called in the thread with every piece read (hashing, counting)
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(DEPTH)
        self._stop = threading.Event()
        self._left = memoryview(b"")
        self._eof = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _read_piece(self) -> bytes | None:
        """Up to `chunk` bytes (fewer only at the end of the stream); None once stopped."""
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        parts: list[bytes] = []
        size = 0
        if self._watch is not None:
            self._watch.begin()
        try:
            while size < self._chunk:
                if self._stop.is_set():
                    return None
                if not poller.poll(_POLL * 1000):
                    continue
                data = os.read(self._fd, self._chunk - size)
                if not data:
                    following = self._next_fd() if self._next_fd is not None else None
                    if following is None:
                        self._next_fd = None  # the end: asked once
                        break
                    poller.unregister(self._fd)
                    self._fd = following
                    poller.register(self._fd, select.POLLIN)
                    continue
                if self._watch is not None:
                    self._watch.moved()
                self._seen(data)  # before a next_fd call, which checks what was seen of its pipe
                parts.append(data)
                size += len(data)
        finally:
            if self._watch is not None:
                self._watch.end()
        return b"".join(parts)

    def _put(self, item: bytes | BaseException) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            while (piece := self._read_piece()) is not None:
                if not self._put(piece) or not piece:
                    return
        except BaseException as exc:  # handed to the caller, who raises it
            self._put(exc)

    def read(self, size: int = -1) -> bytes:
        if not self._left:
            if self._eof:
                return b""
            item = self._queue.get()
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
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
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
                self._queue.put(piece, timeout=_POLL)
                return len(piece)
            except queue.Full:
                self._raise_error()
                self._check_alive()

    def _check_alive(self) -> None:
        if not self._thread.is_alive():
            raise RuntimeError(f"{self._thread.name}: the writing thread ended unexpectedly")

    def flush(self) -> None:
        """Wait until everything given so far is written; raise what went wrong, if anything."""
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks > 0 and self._thread.is_alive():
                self._queue.all_tasks_done.wait(_POLL)
        self._raise_error()
        self._check_alive()

    def close(self) -> None:
        """Stop the thread. Pending pieces are dropped once a write failed; otherwise written first."""
        while self._thread.is_alive():
            try:
                self._queue.put(None, timeout=_POLL)
                break
            except queue.Full:
                continue
        self._thread.join()
