"""Peak resident memory of one process image, from VmHWM in /proc/<pid>/status.

Not ru_maxrss: Linux keeps that across exec, so a freshly spawned child already reports the resident size
of the process it was forked from (spawn a child from a parent holding 500 MiB and its ru_maxrss starts
at 500 MiB). VmHWM belongs to the address space, which exec replaces, so it is the new program's own.
"""

from __future__ import annotations

import threading
from pathlib import Path

_POLL_SECONDS = 0.01


def hwm_kib(pid: int | str = "self") -> int | None:
    """VmHWM of `pid` in KiB, or None once it has exited (or if this is not Linux)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None  # a zombie has no address space left


class PeakWatcher:
    """Polls another process's VmHWM until it exits. VmHWM only grows, so the last reading is the peak,
    short of whatever the process allocates in its last poll interval."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            value = hwm_kib(self._pid)
            if value is None:
                return
            self.peak_kib = max(self.peak_kib, value)
            self._stop.wait(_POLL_SECONDS)

    def __enter__(self) -> PeakWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
