"""Sizes, ratios and durations as people read them: `1.2 GiB`, `2.05`, `0:04:05`."""

from __future__ import annotations

from datetime import timedelta


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def ratio_text(raw: int, stored: int) -> str:
    return f"{raw / stored:.2f}" if stored else "-"


def duration_text(seconds: float) -> str:
    """0:04:05 style, whole seconds."""
    return str(timedelta(seconds=round(max(seconds, 0))))
