"""A watchdog for the remote end of a stream: a remote that accepts a connection and then stops
reading (or sending) must not hang a run forever.

rclone's own `--timeout` (5 min of idle I/O by default) is retried up to `--low-level-retries`
times, which can keep an unattended run waiting for most of an hour. The watch measures what we
see instead: how long a write to `rclone rcat` or a read from `rclone cat` has been waiting without
moving a byte. Past `[rclone] stall_timeout` it kills rclone, which ends the wait, and the pipeline
then reports the stall rather than the kill.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from zfsglacier.errors import RemoteError
from zfsglacier.proc import Child


def describe_seconds(seconds: float) -> str:
    """600 -> '10m', 90 -> '90s': the way the config writes durations."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


class StallWatch:
    """Kills the child it follows once a wait marked with `waiting()` has moved no data for `timeout`
    seconds. A stream of several volumes has one rclone per volume: `follow` each as it starts."""

    def __init__(self, child: Child | None, timeout: float | None, stalled: str, stage: str = "", *,
                 clock: Callable[[], float] = time.monotonic, thread: bool = True) -> None:
        """`clock` and `thread`: a test drives the watch with a clock of its own and calls `check` itself."""
        self._child = child
        self._clock = clock
        self._stage = stage or (child.stage if child is not None else "rclone")
        self.timeout = timeout
        self._stalled = stalled  # what a stall means, e.g. "the remote accepted no data"
        self._since: float | None = None
        self._closed = threading.Event()
        self.fired = False
        self._thread: threading.Thread | None = None
        if timeout is not None and thread:
            self._thread = threading.Thread(target=self._run, args=(timeout,), name=f"stall:{self._stage}",
                                            daemon=True)
            self._thread.start()

    def follow(self, child: Child) -> None:
        self._child = child

    @contextmanager
    def waiting(self) -> Iterator[None]:
        self._since = self._clock()
        try:
            yield
        finally:
            self._since = None

    def begin(self) -> None:
        """A wait starts (for code that cannot use `waiting()` as a block)."""
        self._since = self._clock()

    def moved(self) -> None:
        """Data moved: the current wait, if any, starts over."""
        if self._since is not None:
            self._since = self._clock()

    def end(self) -> None:
        self._since = None

    def check(self) -> bool:
        """Kill the child when the current wait has moved no data for longer than the timeout. True once
        the watch has fired."""
        since, child = self._since, self._child
        if self.fired or self.timeout is None or since is None or child is None:
            return self.fired
        if self._clock() - since > self.timeout:
            self.fired = True
            child.kill()
        return self.fired

    def _run(self, timeout: float) -> None:
        interval = min(1.0, timeout / 4)
        while not self._closed.wait(interval):
            if self.check():
                return

    def error(self) -> RemoteError:
        """What to report once the watch has fired."""
        limit = describe_seconds(self.timeout or 0)
        return RemoteError(self._stage, f"{self._stalled} for {limit} ([rclone] stall_timeout = {limit})")

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join()
