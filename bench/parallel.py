"""Datasets side by side: `python -m bench.parallel`.

A tree of 6 datasets (a top and 5 children, as a Proxmox host's `rpool/data` with its disks), each holding
BENCH_PARALLEL_MIB MiB of bench.corpus's mix, backed up whole (`recursive = yes`, one atomic snapshot, a
full of every dataset into an empty folder) through the WAN model of `make bench` (bench.wan in front of
`rclone serve s3`: per connection 25 MB/s and a 20 ms round trip, unless BENCH_WAN_MBPS/BENCH_WAN_RTT_MS
say otherwise), with `[run] parallel` = 1, 2, 3 and 6. The settings take turns within each repeat, so
that a drift of the machine touches all of them; reported: the median wall time of each (a process,
start-up included), its ratio to parallel = 1, and the zfsglacier process's peak memory (VmHWM).

The WAN model caps each connection on its own and not the link they share, so the same tree is backed
up once more with `[rclone] bwlimit` = BENCH_PARALLEL_BWLIMIT at parallel = 1 and 6: a shared limit must
hold the whole run's rate within it, whatever the number of datasets at once.

BENCH_PARALLEL_MIB      MiB per dataset (default 32; 8 with BENCH_QUICK=1)
BENCH_PARALLEL_BWLIMIT  the shared limit's run (default 8M; rclone's units, MiB/s)
BENCH_REPEAT            runs per setting; the median is reported (default 3; 1 with BENCH_QUICK=1)
BENCH_OUT               where the JSON goes (default bench/results/)
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import wan
from bench.e2e.__main__ import wan_remote
from bench.e2e.setup import rig
from bench.rss import _vm_hwm_mib
from zfsglacier.config_values import rate_bytes

from .corpus import MIB, write_corpus
from .machine import describe, one_line
from .settings import RESULTS_DIR, positive_int

DATASETS = 6
SETTINGS = (1, 2, 3, 6)


def build_tree(pool: rig.Pool, size: int) -> str:
    top = pool.dataset("data")
    names = [top, *(f"{top}/vm-{100 + number}-disk-0" for number in range(1, DATASETS))]
    for number, name in enumerate(names):
        rig.run(["zfs", "create", name])
        mountpoint = Path(rig.out(["zfs", "get", "-H", "-o", "value", "mountpoint", name]).strip())
        with (mountpoint / "disk.img").open("wb") as out:
            write_corpus(out, size, 1000 + number)
    return top


def link_from_env() -> wan.Link:
    def number(name: str, default: float) -> float:
        raw = os.environ.get(name, "").strip()
        return float(raw) if raw else default

    return wan.Link.of(number("BENCH_WAN_MBPS", wan.DEFAULT_MBPS), number("BENCH_WAN_RTT_MS", wan.DEFAULT_RTT_MS))


class Tree:
    """The tree, its remote through the WAN model, and one config per run (a fresh folder each time)."""

    def __init__(self, top: str, remote: rig.Remote, work: Path) -> None:
        self.top = top
        self.remote = remote
        self.work = work
        self.runs = 0
        self.env = {**os.environ, "ZFSGLACIER_LOCK_DIR": str(work / "locks")}

    def backup(self, parallel: int, bwlimit: str | None = None) -> tuple[float, int, int]:
        """A full backup of the whole tree: (seconds, peak MiB of the zfsglacier process, stored bytes)."""
        self.runs += 1
        folder = f"{self.remote.bucket}/run-{self.runs}"
        limit = f"bwlimit = {bwlimit}\n" if bwlimit else ""
        config = self.work / f"config-{self.runs}.ini"
        config.write_text(f"[zfs]\ndataset = {self.top}\nrecursive = yes\n[rclone]\nremote = {self.remote.name}\n"
                          f"bucket_name = {folder}\nconfig_path = {self.remote.config_path}\n{limit}"
                          f"[run]\nparallel = {parallel}\n")
        argv = [sys.executable, "-m", "zfsglacier", "-q", "backup", "--config", str(config)]
        started = time.perf_counter()
        process = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        peak = 0
        while process.poll() is None:
            with contextlib.suppress(OSError, ValueError):  # it is exiting
                peak = max(peak, _vm_hwm_mib(process.pid))
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        err = process.stderr.read().decode(errors="replace") if process.stderr else ""
        if process.returncode != 0:
            raise RuntimeError(f"backup with parallel = {parallel} exited {process.returncode}: {err[-800:]}")
        stored = sum(path.stat().st_size for path in (self.remote.root.parent / folder).rglob("*.zfs.*"))
        for snapshot in rig.out(["zfs", "list", "-H", "-o", "name", "-t", "snapshot", "-r", self.top]).split():
            _destroy(snapshot)
        return seconds, peak, stored


def _destroy(snapshot: str, timeout: float = 30) -> None:
    """Release zfsglacier's hold on the next incremental's base, then destroy; zfs-fuse often answers the
    first destroy with "busy"."""
    rig.run(["zfs", "release", "zfsglacier", snapshot], check=False)
    deadline = time.monotonic() + timeout
    while rig.run(["zfs", "destroy", snapshot], check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"zfs destroy {snapshot}: still failing after {timeout:g} s")
        time.sleep(0.2)


def main() -> int:
    quick = os.environ.get("BENCH_QUICK", "").strip() not in ("", "0")
    size = positive_int(os.environ, "BENCH_PARALLEL_MIB", 8 if quick else 32) * MIB
    repeat = positive_int(os.environ, "BENCH_REPEAT", 1 if quick else 3)
    bwlimit = os.environ.get("BENCH_PARALLEL_BWLIMIT", "").strip() or "8M"
    if rate_bytes(bwlimit) is None:
        raise SystemExit(f"BENCH_PARALLEL_BWLIMIT={bwlimit}: one rate, such as 8M")
    link = link_from_env()
    machine = describe()
    print(f"machine: {one_line(machine)}")
    print(f"a tree of {DATASETS} datasets of {size // MIB} MiB each, recursive = yes, full backups through the "
          f"WAN model ({link.describe()}), median of {repeat}:")
    rclone = rig.find_tool("rclone")
    if rclone is None:
        raise SystemExit("bench.parallel: rclone not found")
    times: dict[int, list[float]] = {n: [] for n in SETTINGS}
    peaks: dict[int, list[int]] = {n: [] for n in SETTINGS}
    limited: dict[int, dict[str, float]] = {}
    with (tempfile.TemporaryDirectory(prefix="zfsglacier-bench-parallel-") as tmp, rig.file_pool() as pool,
          rig.s3_server(rclone) as server, server.remote() as direct,
          wan.proxy(server.port, link, Path(tmp) / "wan-proxy.log") as proxy):
        work = Path(tmp)
        tree = Tree(build_tree(pool, size), wan_remote(direct, server, proxy, work), work)
        for _ in range(repeat):
            for parallel in SETTINGS:
                seconds, peak, _stored = tree.backup(parallel)
                times[parallel].append(seconds)
                peaks[parallel].append(peak)
        for parallel in (1, DATASETS):
            seconds, peak, stored = tree.backup(parallel, bwlimit)
            limited[parallel] = {"seconds": seconds, "stored_bytes": stored, "rate_bytes_s": stored / seconds,
                                 "limit_bytes_s": rate_bytes(bwlimit) or 0.0, "peak_mib": peak}
    medians = {n: statistics.median(times[n]) for n in SETTINGS}
    print(f"  {'parallel':>8} {'seconds':>8} {'vs 1':>6} {'peak MiB':>9}")
    for parallel in SETTINGS:
        print(f"  {parallel:>8} {medians[parallel]:>8.2f} {medians[parallel] / medians[1]:>6.2f} "
              f"{max(peaks[parallel]):>9}")
    print(f"with [rclone] bwlimit = {bwlimit} shared (one run each; the stored bytes over the wall time, start-up "
          "and the catalog's reads included):")
    for parallel, row in limited.items():
        print(f"  parallel = {parallel}: {row['seconds']:.2f} s, {row['rate_bytes_s'] / MIB:.2f} MiB/s "
              f"(limit {row['limit_bytes_s'] / MIB:.2f} MiB/s)")
    out_dir = Path(os.environ.get("BENCH_OUT") or RESULTS_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"parallel-{time.strftime('%Y%m%d-%H%M%S')}-{machine['hostname']}.json"
    record: dict[str, Any] = {
        "machine": machine, "datasets": DATASETS, "mib_each": size // MIB, "repeat": repeat,
        "wan": link.describe(), "seconds": {str(n): times[n] for n in SETTINGS},
        "median_seconds": {str(n): medians[n] for n in SETTINGS},
        "ratio_to_1": {str(n): medians[n] / medians[1] for n in SETTINGS},
        "peak_mib": {str(n): max(peaks[n]) for n in SETTINGS}, "bwlimit": bwlimit,
        "with_bwlimit": {str(n): row for n, row in limited.items()},
    }
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
