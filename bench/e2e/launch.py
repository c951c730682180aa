"""`python -m bench.e2e.launch ARGS...` runs `python -m zfsglacier ARGS...` in this very process and, when
it ends (however it ends), writes to the file named by BENCH_E2E_RSS_FILE this process's own peak RSS in
KiB and the number of child processes it started (zfs, rclone: every subprocess.Popen), space-separated.

The peak is VmHWM from /proc/self/status: the high-water mark of this process's memory since its exec,
threads included, children (zfs, rclone) not. Not getrusage's ru_maxrss: Linux carries the parent's
high-water mark across fork (or vfork) and exec into it, so every child of a big parent reports at
least the parent's peak.
"""

from __future__ import annotations

import os
import runpy
import subprocess
from pathlib import Path
from typing import Any


def peak_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def count_children() -> list[int]:
    """From now on, every subprocess.Popen made in this process adds one to the returned counter."""
    started = [0]
    original = subprocess.Popen.__init__

    def counting(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        started[0] += 1

    subprocess.Popen.__init__ = counting  # type: ignore[method-assign]
    return started


def main() -> None:
    report = Path(os.environ.pop("BENCH_E2E_RSS_FILE"))
    children = count_children()
    try:
        runpy.run_module("zfsglacier", run_name="__main__", alter_sys=True)
    finally:
        report.write_text(f"{peak_rss_kib()} {children[0]}\n")


if __name__ == "__main__":
    main()
