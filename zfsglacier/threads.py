"""Which dataset a thread works for, when datasets are backed up side by side ([run] parallel): every log
line of that thread, and of the threads it starts (its progress ticker, its children's stderr readers),
starts with `[dataset] `. The CLI's log format reads it (cli.py)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator


class _Prefix(threading.local):
    text = ""


_prefix = _Prefix()


def prefix() -> str:
    """What this thread's log lines start with: `[dataset] ` in a dataset's thread, else nothing."""
    return _prefix.text


@contextlib.contextmanager
def working_for(dataset: str) -> Iterator[None]:
    _prefix.text = f"[{dataset}] "
    try:
        yield
    finally:
        _prefix.text = ""


def carried(target: Callable[[], object]) -> Callable[[], None]:
    """`target`, to run in a new thread with the prefix of the thread that starts it."""
    text = _prefix.text

    def run() -> None:
        _prefix.text = text
        target()

    return run
