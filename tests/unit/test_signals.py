"""Signals become exceptions in the main thread, but never inside logging, where an exception can
leave a module-wide lock held (every other thread that logs would then hang, and the cleanup with it)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from types import FrameType

import pytest

from zfsglacier.errors import SignalReceived, ZfsError
from zfsglacier.proc import Child
from zfsglacier.signals import _in_lock_holding_code, signals_as_exceptions, signals_deferred
from zfsglacier.stream.readahead import Prefetch


class SignalsItself(logging.Handler):
    """Sends SIGTERM to this process from inside logging, and waits there long enough for it to arrive."""

    def __init__(self) -> None:
        super().__init__()
        self.finished = False
        self.frame: FrameType | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.frame = sys._getframe()
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 0.2
        while time.monotonic() < deadline:  # bytecodes run here: the handler gets its chance
            pass
        self.finished = True


def test_code_inside_logging_is_recognised() -> None:
    handler = SignalsItself()
    logger = logging.getLogger("zfsglacier.test.signals.frames")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        handler.emit = lambda record: setattr(handler, "frame", sys._getframe())  # type: ignore[method-assign]
        logger.warning("x")
    finally:
        logger.removeHandler(handler)
    assert _in_lock_holding_code(handler.frame)
    assert not _in_lock_holding_code(sys._getframe())


def test_a_signal_inside_logging_is_raised_after_it_not_in_it() -> None:
    handler = SignalsItself()
    logger = logging.getLogger("zfsglacier.test.signals.deferred")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with pytest.raises(SignalReceived) as info, signals_as_exceptions():
            logger.warning("a line, while SIGTERM arrives")
            assert handler.finished, "the signal must not interrupt logging"
            time.sleep(5)  # the signal is delivered again here, outside logging
            pytest.fail("SIGTERM was never raised")
    finally:
        logger.removeHandler(handler)
    assert info.value.exit_code == 128 + signal.SIGTERM
    assert handler.finished


def test_a_signal_inside_held_back_is_raised_when_the_block_ends() -> None:
    steps: list[str] = []
    with pytest.raises(SignalReceived) as info, signals_as_exceptions():
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)  # the handler runs here, and keeps the signal
            steps.append("the whole block ran")
        steps.append("after the block")  # never: the kept signal is raised as the block ends
    assert steps == ["the whole block ran"]
    assert info.value.exit_code == 128 + signal.SIGTERM


class Silent:
    """A Prefetch source that never has anything to give (a stalled remote)."""

    def next_piece(self, stop: threading.Event) -> bytes | None:
        stop.wait()
        return None


@pytest.mark.parametrize("where", ["Prefetch.read", "Child.wait"])
def test_a_signal_the_kernel_gives_another_thread_still_stops_the_main_threads_wait(where: str) -> None:
    """The main thread blocked in a wait that never ends by itself; SIGTERM delivered to another thread
    (as the kernel may do with a signal sent to the process): the main thread must still raise."""
    bystander = threading.Thread(target=time.sleep, args=(3,), daemon=True)
    bystander.start()
    threading.Timer(0.3, signal.pthread_kill, (bystander.ident, signal.SIGTERM)).start()
    started = time.monotonic()
    ahead = Prefetch(Silent(), "silent") if where == "Prefetch.read" else None
    child = Child("sleeper", ["sleep", "30"], error=ZfsError) if ahead is None else None
    try:
        with pytest.raises(SignalReceived), signals_as_exceptions():
            if ahead is not None:
                ahead.read()
            else:
                assert child is not None
                child.wait()
    finally:
        if ahead is not None:
            ahead.close()
        if child is not None:
            child.kill()
            child.wait()
    assert time.monotonic() - started < 2.5
