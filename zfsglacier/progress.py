"""Progress of a stream: a tqdm bar on a terminal, else a log line every minute (journald-friendly)."""

from __future__ import annotations

import logging
import sys
import time

from tqdm import tqdm

log = logging.getLogger(__name__)
LOG_INTERVAL = 60.0


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class Progress:
    def __init__(self, label: str, total: int | None = None, *, tty: bool | None = None) -> None:
        self.label = label
        self.raw = 0
        self.stored = 0
        self._started = time.monotonic()
        self._last_log = self._started
        on_tty = sys.stderr.isatty() if tty is None else tty
        self._bar = (
            tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024, leave=False,
                 file=sys.stderr)
            if on_tty else None
        )

    def update(self, raw_delta: int, stored_total: int) -> None:
        self.raw += raw_delta
        self.stored = stored_total
        if self._bar is not None:
            self._bar.update(raw_delta)
            return
        now = time.monotonic()
        if now - self._last_log >= LOG_INTERVAL:
            self._last_log = now
            log.info("%s: %s", self.label, self.summary())

    def restart(self) -> None:
        """The stream starts over from its first byte."""
        if self._bar is not None:
            self._bar.reset(total=self._bar.total)
        self.raw = self.stored = 0
        self._started = self._last_log = time.monotonic()

    def summary(self) -> str:
        seconds = max(time.monotonic() - self._started, 1e-9)
        return (f"{human_bytes(self.raw)} raw, {human_bytes(self.stored)} stored, "
                f"{human_bytes(self.raw / seconds)}/s")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
