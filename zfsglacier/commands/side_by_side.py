"""Datasets backed up side by side: `[run] parallel = N` runs up to N of a command's datasets at once.

Each dataset runs in a worker thread of its own, exactly as it runs alone (its lock, stream, commit and
cleanup); the main thread only waits. Its log lines carry the dataset's name (`[pool/data/vm-100-disk-0] `,
threads.py), its progress lines too.

What the datasets share, they share out: one that starts while k datasets are unfinished (itself
included) gets 1/min(N, k) of `[rclone] bwlimit` and of `[rclone] upload_memory`. No more than
min(N, k) run from then on, so the shares of those running never add up to more than the setting;
a dataset that starts when few are left gets a larger share.

A signal is raised in the main thread as ever (signals.py); each worker raises it at its next
checkpoint and cleans up as a run of that dataset alone would, and the main thread waits for all of
them before it raises it in turn. A dataset not started by then never starts.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from zfsglacier.config import BackupConfig
from zfsglacier.config_values import split_bwlimit
from zfsglacier.errors import SignalReceived
from zfsglacier.proc import PIPE_SIZE
from zfsglacier.signals import interrupted, signals_deferred, step, worker
from zfsglacier.stream.pipeline import CHUNK
from zfsglacier.stream.readahead import DEPTH
from zfsglacier.threads import working_for
from zfsglacier.units import human_bytes

log = logging.getLogger(__name__)
T = TypeVar("T")
POLL = 0.1  # the main thread waits in slices (signals.py)
# What one stream holds in zfsglacier besides its compressor: DEPTH chunks read ahead and as many written
# behind, and the two pipes between zfsglacier and its children.
STREAM_BUFFERS = 2 * DEPTH * CHUNK + 2 * PIPE_SIZE


def shared(cfg: BackupConfig, ways: int) -> BackupConfig:
    """`cfg` for one of `ways` datasets that run at once: 1/ways of the bandwidth and of rclone's memory."""
    if ways == 1:
        return cfg
    return dataclasses.replace(cfg, bwlimit=split_bwlimit(cfg.bwlimit, ways), upload_memory=cfg.upload_memory // ways)


def describe(cfg: BackupConfig, count: int) -> str:
    """The log line that opens a run side by side: what is shared, and the memory it may take."""
    at_once = min(cfg.parallel, count)
    limit = f"[rclone] bwlimit {cfg.bwlimit}" if cfg.bwlimit else "no [rclone] bwlimit"
    return (f"{count} datasets, up to {at_once} at once: {limit} and [rclone] upload_memory "
            f"{human_bytes(cfg.upload_memory)} are shared among those running; memory: rclone buffers at most "
            f"{human_bytes(cfg.upload_memory)} in all, and zfsglacier {human_bytes(at_once * STREAM_BUFFERS)} "
            f"of stream buffers ({at_once} x {human_bytes(STREAM_BUFFERS)}) plus {at_once} compressor(s) of "
            f"{cfg.threads} thread(s)")


@dataclasses.dataclass
class Outcomes(Generic[T]):
    """What became of each item, in the items' order: None (it succeeded) or what it raised."""

    items: Sequence[T]
    errors: list[BaseException | None]


def run(items: Sequence[T], action: Callable[[T, int], object], limit: int, name: Callable[[T], str],
        never_started: Callable[[T], object] = lambda item: None) -> Outcomes[T]:
    """`action(item, ways)` for every item, up to `limit` at once, each in a worker thread; `ways` is how
    many share the run's bandwidth and memory with it (see the module's text). Returns when all ended.
    On a signal, waits for the workers' cleanup, calls `never_started` for each item that did not
    start, and raises it."""
    errors: list[BaseException | None] = [None] * len(items)
    waiting = deque(range(len(items)))
    unfinished = len(items)
    lock = threading.Lock()

    def take() -> tuple[int, int] | None:
        with lock:
            if interrupted() is not None or not waiting:  # a worker that ends after a signal takes no more
                return None
            return waiting.popleft(), min(limit, unfinished)

    workers = min(limit, len(items))
    ended = _Countdown(workers)

    def work() -> None:
        nonlocal unfinished
        with ended, worker():
            while (taken := take()) is not None:
                index, ways = taken
                try:
                    with working_for(name(items[index])):
                        action(items[index], ways)
                except BaseException as exc:  # the main thread reports it (worker threads raise nothing)
                    errors[index] = exc
                finally:
                    with lock:
                        unfinished -= 1

    with step(f"backing up {len(items)} datasets, {workers} at once"):
        try:
            with signals_deferred():  # a signal among the starts would leave a started worker unwaited for
                for number in range(workers):
                    threading.Thread(target=work, name=f"dataset worker {number + 1}", daemon=True).start()
            ended.wait()
        except SignalReceived:
            ended.wait()  # each worker raised the signal at its checkpoint and cleans up: wait for that
            with lock:
                left = [items[index] for index in waiting]
            for item in left:
                never_started(item)
            for item, error in zip(items, errors, strict=True):
                if isinstance(error, SignalReceived):
                    log.error("error: %s: %s", name(item), error)
            raise
    return Outcomes(items, errors)


class _Countdown:
    """Entered by each worker; `wait()` returns once all have left. The main thread waits on an Event in
    slices, never in Thread.join(), which a signal's exception can leave believing a live thread ended."""

    def __init__(self, count: int) -> None:
        self._left = count
        self._lock = threading.Lock()
        self._none_left = threading.Event()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._left -= 1
            if self._left == 0:
                self._none_left.set()

    def wait(self) -> None:
        while not self._none_left.wait(POLL):
            pass
