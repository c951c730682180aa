"""`Background`: one call run in a thread of its own while the caller goes on (the index read while
the remote is listed, the index written while the local snapshots are seen to)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from zfsglacier.signals import checkpoint
from zfsglacier.threads import carried

T = TypeVar("T")
POLL = 0.1  # the caller waits in slices: a signal delivered to another thread still reaches it (signals.py)


class Background(Generic[T]):
    """One call run in a thread of its own while the caller goes on (two remote calls at once, say);
    `result()` waits for it, in slices (signals.py), and returns what it returned or raises what it raised."""

    def __init__(self, call: Callable[[], T], name: str) -> None:
        self._call = call
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=carried(self._run), name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._call()
        except BaseException as exc:  # raised in the caller by result()
            self._error = exc

    def result(self) -> T:
        while self._thread.is_alive():
            self._thread.join(POLL)
            checkpoint()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # set when the call returned
