"""`python -m bench.e2e_launch ARGS...` runs `python -m zfsglacier ARGS...` in this very process and, when
it ends (however it ends), writes this process's own peak RSS in KiB to the file named by BENCH_E2E_RSS_FILE.

The peak is VmHWM from /proc/self/status: the high-water mark of this process's memory since its exec,
threads included, children (zfs, rclone) not. Not getrusage's ru_maxrss: Linux carries the parent's
high-water mark across fork (or vfork) and exec into it, so every child of a big parent reports at
least the parent's peak.
"""

from __future__ import annotations

import os
import runpy
from pathlib import Path


def peak_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> None:
    report = Path(os.environ.pop("BENCH_E2E_RSS_FILE"))
    try:
        runpy.run_module("zfsglacier", run_name="__main__", alter_sys=True)
    finally:
        report.write_text(f"{peak_rss_kib()}\n")


if __name__ == "__main__":
    main()
