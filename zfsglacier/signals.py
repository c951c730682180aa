"""SIGINT, SIGTERM and SIGHUP become a SignalReceived exception in the main thread, so the
cleanup in `except`/`finally` blocks runs (systemd stops a unit with SIGTERM). A second signal
during that cleanup is noted, not raised, so the cleanup can finish."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from .errors import SignalReceived

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def signals_as_exceptions() -> Iterator[None]:
    raised = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal raised
        if raised:
            return
        raised = True
        raise SignalReceived(signum, signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in HANDLED}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
