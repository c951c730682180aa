"""Peak memory of the zfsglacier process against the stream size: `python -m bench.rss [MiB ...]`.

Backs up (full, to a local-directory remote) and restores a generated dataset of each size (default
1024 and 4096 MiB), and reads the zfsglacier process's own VmHWM while it runs (children excluded:
ru_maxrss would carry the parent's peak). Memory must not grow with the stream.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .corpus import MIB, write_corpus
from .e2e_setup import destroy, rig
from .machine import describe, one_line

COMPRESSORS = ("zstd", "pigz")


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


def measure(size_mib: int) -> list[str]:
    lines = []
    work = Path(tempfile.mkdtemp(prefix="zfsglacier-bench-rss-"))
    env = {**os.environ, "ZFSGLACIER_LOCK_DIR": str(work / "locks")}
    with rig.file_pool(size=(size_mib * 3 + 1024) * MIB) as pool, rig.local_remote() as remote:
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
            lines.append(f"{size_mib:>6} MiB  {compressor:<5}  backup {backup:>4} MiB  restore {restore:>4} MiB")
    return lines


def main() -> int:
    sizes = [int(arg) for arg in sys.argv[1:]] or [1024, 4096]
    print(f"machine: {one_line(describe())}")
    print("peak RSS (VmHWM) of the zfsglacier process, full backup to a local remote and restore:")
    for size in sizes:
        for line in measure(size):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
