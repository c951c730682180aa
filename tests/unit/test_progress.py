"""Progress lines and summaries (the terminal bar and the log lines end to end: test_progress_and_dry_run)."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from zfsglacier.stream.progress import Progress, summary_line
from zfsglacier.units import duration_text, human_bytes


def test_a_line_tells_done_of_expected_stored_ratio_rate_and_time_left(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("zfsglacier.stream.progress.time.monotonic", lambda: clock[0])
    progress = Progress("backup p/d@s", 4 << 30, tty=False, interval=3600)
    try:
        clock[0] += 10
        progress.update(1 << 30, 512 << 20)
        assert progress.line() == ("1.0 GiB of about 4.0 GiB raw (25%), 512.0 MiB stored, ratio 2.00, 102.4 MiB/s, "
                                   "about 0:00:30 left")
        progress.update(4 << 30, 3 << 30)  # past the estimate: no time left is promised
        assert progress.line().startswith("5.0 GiB of about 4.0 GiB raw (100%), 3.0 GiB stored, ratio 1.67")
        assert "left" not in progress.line()
    finally:
        progress.close()


def test_without_an_estimate_there_is_no_percentage_or_time_left() -> None:
    progress = Progress("restore s", None, tty=False, interval=3600)
    progress.update(2048, 0)
    assert progress.line().startswith("2.0 KiB raw, 0 B stored, ratio -, ")
    assert "%" not in progress.line() and "left" not in progress.line()
    progress.close()


class Intervals:
    """Stands in for the ticker's wait: each call is one interval passing, when the test lets it."""

    def __init__(self) -> None:
        self.passing = threading.Semaphore(0)
        self.closed = False
        self.asked: list[float] = []

    def __call__(self, seconds: float) -> bool:
        self.asked.append(seconds)
        self.passing.acquire()
        return self.closed


def test_without_a_terminal_a_line_comes_every_interval_even_while_no_data_moves(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="zfsglacier.stream.progress")

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "zfsglacier.stream.progress"]

    intervals = Intervals()
    progress = Progress("backup p/d@s", 1000, tty=False, interval=60, wait=intervals)
    progress.update(100, 50)
    intervals.passing.release(3)  # three intervals without an update: a stream waiting on the remote
    deadline = time.monotonic() + 10
    while len(lines()) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    intervals.closed = True
    intervals.passing.release()
    progress.close()
    assert len(lines()) == 3, "one line per interval, none once closed"
    assert all(line.startswith("backup p/d@s: 100 B of about 1000 B raw (10%), 50 B stored, ratio 2.00")
               for line in lines())
    assert intervals.asked == [60, 60, 60, 60]


def test_summary_line() -> None:
    assert summary_line(3 << 30, 1 << 30, 125.4) == "3.0 GiB raw, 1.0 GiB stored, ratio 3.00, 0:02:05, 24.5 MiB/s"
    assert duration_text(3725) == "1:02:05" and human_bytes(1023) == "1023 B"
