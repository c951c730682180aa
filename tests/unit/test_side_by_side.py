"""[run] parallel: datasets side by side. The runner's order, shares, failures and signals, with actions of
its own (the real backups side by side: tests/integration/test_parallel.py), and the bandwidth split."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time

import pytest

from zfsglacier import cli, threads
from zfsglacier.background import Background
from zfsglacier.commands import datasets, side_by_side
from zfsglacier.config import BackupConfig, parse_config
from zfsglacier.config_values import split_bwlimit
from zfsglacier.errors import ConfigError, RemoteError, SignalReceived, ZfsError
from zfsglacier.signals import checkpoint, signals_as_exceptions, step
from zfsglacier.stream.progress import Progress

BASE = "[zfs]\ndataset = tank/data\n[rclone]\nremote = r\nbucket_name = b\n"


def config(extra: str = "") -> BackupConfig:
    return parse_config(BASE + extra)


@pytest.mark.parametrize(("value", "ways", "expected"), [
    ("10M", 1, "10M"),
    ("10M", 2, "5242880B"),
    ("10M:1M", 4, "2621440B:262144B"),
    ("1.5Mi", 3, "524288B"),
    ("1024", 2, "524288B"),  # no unit: KiB/s
    ("3", 4, "768B"),
    ("10M:off", 2, "5242880B:off"),
    ("08:00,512k 19:00,off", 2, "08:00,262144B 19:00,off"),
    ("Mon-08:00,512k Fri-19:00,5M", 5, "Mon-08:00,104857B Fri-19:00,1048576B"),
    ("1b", 4, "1B"),  # never below one byte per second: 0 would mean no limit
])
def test_a_bwlimit_is_split_rate_by_rate(value: str, ways: int, expected: str) -> None:
    assert split_bwlimit(value, ways) == expected


def test_no_bwlimit_stays_none() -> None:
    assert split_bwlimit(None, 3) is None


@pytest.mark.parametrize("value", ["1MB", "1M:1M:1M", "25:00x,1M", "abc", "-1M", "10M;reboot", "08:00,", ","])
def test_what_rclone_would_refuse_as_a_bwlimit_is_refused_naming_the_key(value: str) -> None:
    with pytest.raises(ConfigError, match=r"\[rclone\] bwlimit = .*expected an rclone --bwlimit value"):
        config(f"bwlimit = {value}\n")


def test_parallel_defaults_to_one_and_is_bounded() -> None:
    assert config().parallel == 1
    assert config("[run]\nparallel = 4\n").parallel == 4
    for bad in ("0", "33", "two"):
        with pytest.raises(ConfigError, match=r"\[run\] parallel = .*1 to 32"):
            config(f"[run]\nparallel = {bad}\n")


def test_a_share_is_a_part_of_the_bandwidth_and_of_rclones_memory() -> None:
    cfg = config("bwlimit = 8M\nupload_memory = 1G\n[run]\nparallel = 4\n")
    assert side_by_side.shared(cfg, 1) is cfg
    quarter = side_by_side.shared(cfg, 4)
    assert (quarter.bwlimit, quarter.upload_memory) == ("2097152B", 256 << 20)
    assert dataclasses.replace(quarter, bwlimit=cfg.bwlimit, upload_memory=cfg.upload_memory) == cfg


def test_the_opening_line_states_what_is_shared_and_the_memory() -> None:
    cfg = config("bwlimit = 8M\nupload_memory = 512M\n[compression]\nthreads = 2\n[run]\nparallel = 3\n")
    line = side_by_side.describe(cfg, 6)
    assert line.startswith("6 datasets, up to 3 at once: [rclone] bwlimit 8M and [rclone] upload_memory 512.0 MiB "
                           "are shared"), line
    assert "rclone buffers at most 512.0 MiB in all" in line
    assert "zfsglacier 30.0 MiB of stream buffers (3 x 10.0 MiB) plus 3 compressor(s) of 2 thread(s)" in line
    assert "up to 2 at once" in side_by_side.describe(cfg, 2)


class Recorder:
    """An action that records how many run at once and what share each got; `hold` seconds each."""

    def __init__(self, hold: float = 0.05, failing: dict[str, BaseException] | None = None) -> None:
        self.hold = hold
        self.failing = failing or {}
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.ways: dict[str, int] = {}
        self.prefixes: dict[str, str] = {}

    def __call__(self, item: str, ways: int) -> None:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.ways[item] = ways
            self.prefixes[item] = threads.prefix()
        try:
            time.sleep(self.hold)
            if item in self.failing:
                raise self.failing[item]
        finally:
            with self.lock:
                self.running -= 1


def test_items_run_up_to_the_limit_at_once_each_with_its_prefix_and_a_share_that_never_overcommits() -> None:
    items = [f"tank/d{n}" for n in range(7)]
    action = Recorder()
    outcomes = side_by_side.run(items, action, 3, str)
    assert outcomes.errors == [None] * 7
    assert action.most == 3
    assert action.prefixes == {item: f"[{item}] " for item in items}
    assert threads.prefix() == "", "the main thread's lines carry no dataset"
    # 3 ways while 3 or more are unfinished; the last to start share with fewer.
    assert [action.ways[item] for item in items[:3]] == [3, 3, 3]
    assert action.ways[items[-1]] in (1, 2, 3)
    assert min(action.ways.values()) >= 1


def test_a_lone_straggler_gets_the_whole_bandwidth() -> None:
    # d0 runs long; d1 and d2 end quickly: d2 starts when d0 and d2 are unfinished (2 ways), not 3.
    class Slow(Recorder):
        def __call__(self, item: str, ways: int) -> None:
            self.hold = 0.5 if item == "d0" else 0.01
            super().__call__(item, ways)

    action = Slow()
    side_by_side.run(["d0", "d1", "d2"], action, 2, str)
    assert action.ways == {"d0": 2, "d1": 2, "d2": 2}
    action = Slow()
    side_by_side.run(["d0", "d1"], action, 4, str)
    assert action.ways == {"d0": 2, "d1": 2}


def test_failures_are_reported_in_the_datasets_order_with_the_first_ones_exit_code(
        caplog: pytest.LogCaptureFixture) -> None:
    items = ["tank/a", "tank/b", "tank/c", "tank/d"]
    # b fails last (it holds longest), d first: the exit code is still b's, the first in the config's order.
    action = Recorder(failing={"tank/b": ZfsError("zfs send", "exited with status 1"),
                               "tank/d": RemoteError("rclone rcat", "exited with status 5")})
    outcomes = side_by_side.run(items, action, 2, str)
    assert [type(e).__name__ if e else None for e in outcomes.errors] == [None, "ZfsError", None, "RemoteError"]
    failed = datasets.failures(outcomes, str)
    assert failed == [("tank/b", 3), ("tank/d", 4)]
    assert datasets.summarize(failed, 4) == 3
    last = caplog.records[-1].getMessage()
    assert last == ("error: 2 of 4 datasets failed: tank/b (exit 3: a zfs command failed), "
                    "tank/d (exit 4: the remote or rclone failed)")


def test_an_error_that_is_not_zfsglaciers_own_is_raised_after_the_others_ended() -> None:
    action = Recorder(failing={"b": KeyError("a bug")})
    outcomes = side_by_side.run(["a", "b", "c"], action, 2, str)
    assert set(action.ways) == {"a", "b", "c"}
    with pytest.raises(KeyError, match="a bug"):
        datasets.failures(outcomes, str)


def test_a_signal_stops_the_workers_at_their_checkpoints_and_nothing_more_starts(
        caplog: pytest.LogCaptureFixture) -> None:
    started: list[str] = []
    cleaned: list[str] = []
    never: list[str] = []
    both = threading.Barrier(3, timeout=30)

    def action(item: str, ways: int) -> None:
        started.append(item)
        try:
            with step(f"sending {item}"):
                both.wait()
                while True:  # a stream's waits: each a checkpoint
                    time.sleep(0.01)
                    checkpoint()
        except SignalReceived:
            cleaned.append(item)
            checkpoint()  # a second checkpoint, in the cleanup, raises nothing
            raise

    with pytest.raises(SignalReceived) as info, signals_as_exceptions():
        threading.Timer(0.2, lambda: (both.wait(), os.kill(os.getpid(), signal.SIGTERM))).start()
        side_by_side.run(["a", "b", "c", "d"], action, 2, str, never_started=never.append)
    assert info.value.exit_code == 128 + signal.SIGTERM
    assert "while backing up 4 datasets, 2 at once" in str(info.value)
    assert sorted(started) == sorted(cleaned) == ["a", "b"]
    assert never == ["c", "d"]
    lines = {record.getMessage() for record in caplog.records}
    assert {"error: a: interrupted by SIGTERM while sending a", "error: b: interrupted by SIGTERM while sending b"} \
        <= lines


def test_outside_a_worker_a_checkpoint_never_raises() -> None:
    with signals_as_exceptions():
        checkpoint()
    with pytest.raises(SignalReceived), signals_as_exceptions():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)
    checkpoint()  # the signal is the main thread's, raised there; the run that had it is over


def test_the_lines_of_a_datasets_thread_and_of_the_threads_it_starts_carry_the_dataset() -> None:
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Keep()
    handler.setFormatter(logging.Formatter("%(dataset)s%(message)s"))
    handler.addFilter(cli._dataset_prefix)
    logger = logging.getLogger("zfsglacier")
    logger.addHandler(handler)
    level, logger.level = logger.level, logging.INFO
    try:
        with threads.working_for("tank/vm-100-disk-0"):
            logging.getLogger("zfsglacier.test").warning("a line of the dataset's own")
            Background(lambda: logging.getLogger("zfsglacier.test").warning("a line of a call beside it"),
                       "write: index").result()
            ticks = threading.Event()
            bar = Progress("backup tank/vm-100-disk-0@s", 100, tty=False, interval=0.01,
                           wait=lambda interval: ticks.wait(interval))
            time.sleep(0.2)
            ticks.set()
            bar.close()
        logging.getLogger("zfsglacier.test").warning("a line of the run's")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert lines[:2] == ["[tank/vm-100-disk-0] a line of the dataset's own",
                         "[tank/vm-100-disk-0] a line of a call beside it"]
    progress = [line for line in lines if "backup tank/vm-100-disk-0@s: " in line]
    assert progress and all(line.startswith("[tank/vm-100-disk-0] backup tank/vm") for line in progress), lines
    assert lines[-1] == "a line of the run's"
