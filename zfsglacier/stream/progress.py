"""Progress of a stream, and the summary line at its end.

On a terminal: a tqdm bar (raw bytes, with the stored bytes and the ratio after it, the rate and,
when the stream's size is estimated, the ETA). Without one (journald, cron, a pipe): a plain log line
every `interval` seconds, never a carriage return, written by a timer thread, so that lines keep
coming while the stream waits (rclone uploading what it buffered, a slow remote).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from zfsglacier.threads import carried
from zfsglacier.units import duration_text, human_bytes, ratio_text

log = logging.getLogger(__name__)
LOG_INTERVAL = 60.0  # seconds between progress lines without a terminal (--progress-interval)
_POSTFIX_EVERY = 0.5  # seconds between updates of the bar's stored/ratio text


def set_log_interval(seconds: float) -> None:
    global LOG_INTERVAL
    LOG_INTERVAL = seconds


def summary_line(raw: int, stored: int, seconds: float) -> str:
    """What a finished stream moved: `1.2 GiB raw, 600.0 MiB stored, ratio 2.05, 0:00:10, 120.3 MiB/s`."""
    return (f"{human_bytes(raw)} raw, {human_bytes(stored)} stored, ratio {ratio_text(raw, stored)}, "
            f"{duration_text(seconds)}, {human_bytes(raw / max(seconds, 1e-9))}/s")


def _bar(label: str, total: int | None) -> Any:
    from tqdm import tqdm  # only on a terminal: importing it costs more than the rest of zfsglacier

    return tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024, leave=False, file=sys.stderr,
                dynamic_ncols=True)


class Progress:
    """`total`: the expected raw bytes (an estimate for a backup, exact for a restore), or None. `wait`:
    how the line ticker waits one interval (True: closed, stop); a test passes intervals of its own."""

    def __init__(self, label: str, total: int | None = None, *, tty: bool | None = None,
                 interval: float | None = None, wait: Callable[[float], bool] | None = None) -> None:
        self.label = label
        self.total = total
        self.raw = 0
        self.stored = 0
        self._interval = LOG_INTERVAL if interval is None else interval
        self._started = time.monotonic()
        self._last_postfix = 0.0
        on_tty = sys.stderr.isatty() if tty is None else tty
        self._bar = _bar(label, total) if on_tty else None
        self._closed = threading.Event()
        self._wait = wait or self._closed.wait
        self._ticker: threading.Thread | None = None
        if self._bar is None:
            self._ticker = threading.Thread(target=carried(self._tick), name=f"progress:{label}", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while not self._wait(self._interval):
            log.info("%s: %s", self.label, self.line())

    def update(self, raw_delta: int, stored_total: int) -> None:
        self.raw += raw_delta
        self.stored = stored_total
        now = time.monotonic()
        if self._bar is not None:
            if now - self._last_postfix >= _POSTFIX_EVERY:
                self._last_postfix = now
                self._bar.set_postfix_str(f"{human_bytes(self.stored)} stored, ratio "
                                          f"{ratio_text(self.raw, self.stored)}", refresh=False)
            self._bar.update(raw_delta)

    def restart(self) -> None:
        """The stream starts over from its first byte."""
        if self._bar is not None:
            self._bar.reset(total=self._bar.total)
        self.raw = self.stored = 0
        self._started = time.monotonic()

    def line(self) -> str:
        """`1.2 GiB of about 4.0 GiB raw (30%), 600.0 MiB stored, ratio 2.05, 120.3 MiB/s, about 0:00:25 left`"""
        seconds = max(time.monotonic() - self._started, 1e-9)
        rate = self.raw / seconds
        done = human_bytes(self.raw)
        left = ""
        if self.total:
            done += f" of about {human_bytes(self.total)}"
            if self.raw < self.total and rate > 0:
                left = f", about {duration_text((self.total - self.raw) / rate)} left"
        percent = f" ({min(self.raw * 100 // self.total, 100)}%)" if self.total else ""
        return (f"{done} raw{percent}, {human_bytes(self.stored)} stored, ratio {ratio_text(self.raw, self.stored)}, "
                f"{human_bytes(rate)}/s{left}")

    def close(self) -> None:
        self._closed.set()
        if self._ticker is not None:
            self._ticker.join()
        if self._bar is not None:
            self._bar.close()
