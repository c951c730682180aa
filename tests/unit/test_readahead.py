"""The threads that overlap the stages: WriteBehind survives a queue that a signal raised in the middle
of Queue.put left inconsistent, and never leaves its caller waiting on a thread that has ended."""

from __future__ import annotations

import threading

import pytest

from zfsglacier.stream.readahead import DEPTH, WriteBehind


def in_time(action: object, seconds: float = 10) -> None:
    """Run `action` in a thread; fail if it has not returned after `seconds` (a hang)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            action()  # type: ignore[operator]
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), "hung"
    if errors:
        raise errors[0]


def test_an_item_queued_but_not_counted_does_not_end_the_writing_thread() -> None:
    written: list[bytes] = []
    behind = WriteBehind(written.append, "write: test")
    # What SignalReceived raised between Queue.put's _put() and its unfinished_tasks += 1 leaves behind.
    with behind._queue.mutex:
        behind._queue._put(b"uncounted")  # type: ignore[attr-defined]
        behind._queue.not_empty.notify()
    pieces = [bytes([n]) * 10 for n in range(DEPTH * 3)]

    def write_all_and_close() -> None:
        for piece in pieces:
            behind.write(piece)
        behind.flush()
        behind.close()

    in_time(write_all_and_close)
    assert written == [b"uncounted", *pieces]


def test_a_writing_thread_that_ended_is_an_error_not_a_wait() -> None:
    gate = threading.Event()
    behind = WriteBehind(lambda data: gate.wait(), "write: test")
    behind._queue.put(None)  # the thread ends at once, as if it had died
    behind._thread.join(5)
    gate.set()

    def fill() -> None:
        for _ in range(DEPTH + 2):
            behind.write(b"x")

    with pytest.raises(RuntimeError, match="the writing thread ended unexpectedly"):
        in_time(fill)
    in_time(behind.close)
