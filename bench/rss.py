"""Peak memory of the zfsglacier process against the stream size: `python -m bench.rss [MiB ...]`.

Backs up (full, to a local-directory remote) and restores a generated dataset of each size, and reads
the zfsglacier process's own VmHWM while it runs (children excluded: ru_maxrss would carry the parent's
peak). Memory must not grow with the stream.

Sizes in MiB: the arguments, else BENCH_RSS_SIZES (e.g. "1024 4096" or "1024,4096"), else 1024 and 4096
(64 and 256 with BENCH_QUICK=1).
The rows are printed and written as JSON to BENCH_OUT (default bench/results/).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.e2e.setup import destroy, rig

from .corpus import MIB, write_corpus
from .machine import describe, one_line
from .settings import RESULTS_DIR

COMPRESSORS = ("zstd", "pigz")
DEFAULT_SIZES = (1024, 4096)
QUICK_SIZES = (64, 256)


@dataclass(frozen=True)
class Row:
    size_mib: int
    compressor: str
    backup_peak_mib: int
    restore_peak_mib: int

    def line(self) -> str:
        return (
            f"{self.size_mib:>6} MiB  {self.compressor:<5}  backup {self.backup_peak_mib:>4} MiB  "
            f"restore {self.restore_peak_mib:>4} MiB"
        )


def _vm_hwm_mib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return 0


def _peak(argv: list[str], env: dict[str, str]) -> int:
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while process.poll() is None:
        with contextlib.suppress(OSError, ValueError):  # it is exiting
            peak = max(peak, _vm_hwm_mib(process.pid))
        time.sleep(0.05)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {process.returncode}")
    return peak


def measure(size_mib: int) -> list[Row]:
    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="zfsglacier-bench-rss-") as tmp,
        rig.file_pool(size=(size_mib * 3 + 1024) * MIB) as pool,
        rig.local_remote() as remote,
    ):
        work = Path(tmp)
        env = {**os.environ, "ZFSGLACIER_LOCK_DIR": str(work / "locks")}
        dataset = pool.dataset("data")
        rig.run(["zfs", "create", dataset])
        with (pool.path("data") / "corpus").open("wb") as out:
            write_corpus(out, size_mib * MIB, seed=1)
        for compressor in COMPRESSORS:
            config = work / f"{compressor}.ini"
            config.write_text(f"[zfs]\ndataset = {dataset}\nsnapshot_retention = 0\n[rclone]\nremote = {remote.name}\n"
                              f"bucket_name = {remote.bucket}\nconfig_path = {remote.config_path}\n"
                              f"[compression]\ncompressor = {compressor}\n")
            zfsglacier = [sys.executable, "-m", "zfsglacier", "-q"]
            backup = _peak([*zfsglacier, "backup", "--full", "--config", str(config)], env)
            target = pool.dataset("restored")
            restore = _peak([*zfsglacier, "restore", "--yes", "--config", str(config), "--target-dataset", target], env)
            destroy(target)
            rows.append(Row(size_mib, compressor, backup, restore))
    return rows


def sizes(argv: Sequence[str], env: Mapping[str, str] = os.environ) -> list[int]:
    """The sizes to measure, in MiB: `argv`, else BENCH_RSS_SIZES, else DEFAULT_SIZES."""
    words = argv or env.get("BENCH_RSS_SIZES", "").replace(",", " ").split()
    quick = env.get("BENCH_QUICK", "").strip() not in ("", "0")
    found = [int(word) for word in words] or list(QUICK_SIZES if quick else DEFAULT_SIZES)
    if min(found) < 1:
        raise ValueError(f"sizes must be at least 1 MiB, not {min(found)}")
    return found


def main() -> int:
    chosen = sizes(sys.argv[1:])
    machine = describe()
    print(f"machine: {one_line(machine)}")
    print("peak RSS (VmHWM) of the zfsglacier process, full backup to a local remote and restore:")
    rows = []
    for size in chosen:
        for row in measure(size):
            rows.append(row)
            print(row.line(), flush=True)
    results = Path(os.environ.get("BENCH_OUT") or RESULTS_DIR)
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"rss-{time.strftime('%Y%m%d-%H%M%S')}-{machine['hostname']}.json"
    record = {"machine": machine, "sizes_mib": chosen, "rows": [asdict(row) for row in rows]}
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
