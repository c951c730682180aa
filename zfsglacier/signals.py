"""SIGINT, SIGTERM and SIGHUP become a SignalReceived exception in the main thread, so the
cleanup in `except`/`finally` blocks runs (systemd stops a unit with SIGTERM). A second signal
during that cleanup is noted, not raised, so the cleanup can finish.

Inside `signals_deferred()` a signal is kept and raised when the block ends: for steps that must not be
cut in two, such as starting a child process and taking charge of it.

`step("sending pool/data@x ...")` marks what the run is doing, so that the interruption names it:
"interrupted by SIGTERM while sending pool/data@x ...". Steps are marked in the main thread only.

The kernel may hand a signal sent to the process to any of its threads. CPython then runs the
handler in the main thread, but only once that thread runs Python code again: a main thread blocked
in an endless wait (a lock, a queue, waitpid) would never see it. So the main thread never waits
without a timeout (readahead.Prefetch, proc.Child.wait).

An exception raised inside the logging module (or tqdm) can leave one of its module-wide locks
held: every other thread that logs then blocks forever, and so does the cleanup that waits for
those threads. A signal that arrives there is delivered again a moment later instead.

Datasets backed up side by side ([run] parallel) run in worker threads (`with worker():`), where no
signal handler runs. The first signal is also recorded for them, and each worker raises it itself at
its next `checkpoint()`: when it starts a step, and in every wait of a stream or a child (readahead,
proc), so within a fraction of a second. From there its own cleanup runs as in the main thread, and a
second checkpoint in that cleanup raises nothing. Steps, and blocks that defer signals, are per thread.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from zfsglacier.errors import SignalReceived

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_REDELIVER_AFTER = 0.01  # seconds
_LOCK_HOLDING_MODULES = ("logging", "tqdm.std")  # tqdm only once a progress bar imported it
_interrupted: SignalReceived | None = None  # the first signal of the run, for the worker threads


class _ThreadState(threading.local):
    def __init__(self) -> None:
        self.steps: list[str] = []
        self.holding = 0  # depth of signals_deferred() blocks
        self.held: list[SignalReceived] = []
        self.worker = False  # a worker thread: raises the run's signal at its checkpoints
        self.raised = False  # ... once


_thread = _ThreadState()


@contextmanager
def step(what: str) -> Iterator[None]:
    checkpoint()
    _thread.steps.append(what)
    try:
        yield
    finally:
        _thread.steps.pop()


def current_step() -> str | None:
    return _thread.steps[-1] if _thread.steps else None


@contextmanager
def signals_deferred() -> Iterator[None]:
    _thread.holding += 1
    try:
        yield
    finally:
        _thread.holding -= 1
        if not _thread.holding and _thread.held:
            raise _thread.held.pop()
    checkpoint()


@contextmanager
def worker() -> Iterator[None]:
    """This thread backs up one dataset of several: it raises the run's signal at its checkpoints."""
    _thread.worker, _thread.raised = True, False
    try:
        yield
    finally:
        _thread.worker = False


def interrupted() -> SignalReceived | None:
    """The signal that stops the run, once one came."""
    return _interrupted


def checkpoint() -> None:
    """In a worker thread, once the run got a signal: raise it here (once, and not inside a deferred block)."""
    received = _interrupted
    if received is None or not _thread.worker or _thread.raised or _thread.holding:
        return
    _thread.raised = True
    raise SignalReceived(received.signum, signal.Signals(received.signum).name, current_step())


def _in_lock_holding_code(frame: FrameType | None) -> bool:
    files = {module.__file__ for name in _LOCK_HOLDING_MODULES if (module := sys.modules.get(name)) is not None}
    while frame is not None:
        if frame.f_code.co_filename in files:
            return True
        frame = frame.f_back
    return False


@contextmanager
def signals_as_exceptions() -> Iterator[None]:
    raised = False
    redeliveries: list[threading.Timer] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal raised
        if raised:
            return
        if _in_lock_holding_code(frame):
            timer = threading.Timer(_REDELIVER_AFTER, os.kill, (os.getpid(), signum))
            redeliveries.append(timer)
            timer.start()
            return
        raised = True
        received = SignalReceived(signum, signal.Signals(signum).name, current_step())
        global _interrupted
        _interrupted = received
        if _thread.holding:
            _thread.held.append(received)
            return
        raise received

    global _interrupted
    _interrupted = None
    previous = {sig: signal.signal(sig, handler) for sig in HANDLED}
    try:
        yield
    finally:
        _interrupted = None
        for timer in redeliveries:
            timer.cancel()
        for sig, old in previous.items():
            signal.signal(sig, old)
