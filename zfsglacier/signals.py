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
_held: list[SignalReceived] = []
_holding = 0
_steps: list[str] = []


@contextmanager
def step(what: str) -> Iterator[None]:
    _steps.append(what)
    try:
        yield
    finally:
        _steps.pop()


@contextmanager
def signals_deferred() -> Iterator[None]:
    global _holding
    _holding += 1
    try:
        yield
    finally:
        _holding -= 1
        if not _holding and _held:
            raise _held.pop()


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
        received = SignalReceived(signum, signal.Signals(signum).name, _steps[-1] if _steps else None)
        if _holding:
            _held.append(received)
            return
        raise received

    previous = {sig: signal.signal(sig, handler) for sig in HANDLED}
    try:
        yield
    finally:
        for timer in redeliveries:
            timer.cancel()
        for sig, old in previous.items():
            signal.signal(sig, old)
