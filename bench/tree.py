"""A tree of many datasets: `python -m bench.tree`.

A Proxmox host keeps dozens of datasets and zvols under `rpool/data`; a monitoring check that reads the
remote once per dataset times out. On a file-backed pool with a tree of N datasets (a top and N-1
children, each a few small files) backed up with `recursive = yes` to a loopback S3 remote (`rclone
serve s3`), this times, as processes (start-up included):
    status      `zfsglacier status` of the whole tree
    list        `zfsglacier list` of the whole tree
    backup      an incremental of the unchanged tree (one atomic snapshot), per dataset
and, in this process, side by side, loading every dataset's catalog with one listing of the tree and
one fetch of the indexes (remote/catalogs.py) against one listing and one read per dataset.
Targets (the issue that asked for them): status and list under 3 s for 100 datasets, the unchanged
incremental under 0.3 s per dataset.

BENCH_TREE_DATASETS  datasets in the tree (default 100; 20 with BENCH_QUICK=1)
BENCH_REPEAT         runs per measurement; the median is reported (default 3; 1 with BENCH_QUICK=1)
BENCH_OUT            where the JSON goes (default bench/results/)
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.e2e.setup import rig
from zfsglacier.commands import datasets
from zfsglacier.config import load_config
from zfsglacier.remote.catalog import load_catalog
from zfsglacier.remote.catalogs import load_catalogs
from zfsglacier.remote.rclone import rclone_for

from .catalog import median_seconds, zfsglacier_process
from .machine import describe, one_line
from .settings import RESULTS_DIR, positive_int


def build_tree(pool: rig.Pool, count: int) -> str:
    top = pool.dataset("data")
    rig.run(["zfs", "create", top])
    for number in range(1, count):
        rig.run(["zfs", "create", f"{top}/vm-{100 + number}-disk-0"])
    for name in rig.out(["zfs", "list", "-H", "-o", "mountpoint", "-r", top]).split():
        (Path(name) / "config").write_text(f"{name}\n" * 64)
    return top


def main() -> int:
    quick = os.environ.get("BENCH_QUICK", "").strip() not in ("", "0")
    count = positive_int(os.environ, "BENCH_TREE_DATASETS", 20 if quick else 100)
    repeat = positive_int(os.environ, "BENCH_REPEAT", 1 if quick else 3)
    machine = describe()
    print(f"machine: {one_line(machine)}")
    print(f"a tree of {count} datasets, recursive = yes, on loopback S3 (rclone serve s3), median of {repeat}:")
    rclone = rig.find_tool("rclone")
    if rclone is None:
        raise SystemExit("bench.tree: rclone not found")
    seconds: dict[str, float] = {}
    with (tempfile.TemporaryDirectory(prefix="zfsglacier-bench-tree-") as tmp, rig.file_pool() as pool,
          rig.s3_server(rclone) as server, server.remote() as remote):
        work = Path(tmp)
        top = build_tree(pool, count)
        config = work / "config.ini"
        config.write_text(f"[zfs]\ndataset = {top}\nrecursive = yes\n[rclone]\nremote = {remote.name}\n"
                          f"bucket_name = {remote.bucket}\nconfig_path = {remote.config_path}\n"
                          "[monitoring]\nwarn_after = 30d\ncrit_after = 60d\n")
        env = {**os.environ, "ZFSGLACIER_LOCK_DIR": str(work / "locks")}
        started = time.perf_counter()
        zfsglacier_process(["-q", "backup", "--config", str(config)], env)()
        seconds["first backup (fulls), per dataset"] = (time.perf_counter() - started) / count
        seconds["unchanged incremental, per dataset"] = \
            median_seconds(zfsglacier_process(["-q", "backup", "--config", str(config)], env), repeat) / count
        seconds["status"] = median_seconds(zfsglacier_process(["status", "--config", str(config)], env), repeat)
        seconds["list"] = median_seconds(zfsglacier_process(["-q", "list", "--config", str(config)], env), repeat)
        cfg = load_config(config)
        client = rclone_for(cfg)
        targets = datasets.remote_targets(cfg, client)
        assert len(targets) == count, f"{len(targets)} datasets on the remote, {count} made"
        seconds["catalogs: one listing of the tree"] = \
            median_seconds(lambda: load_catalogs(targets, datasets.configured(cfg), client), repeat)
        seconds["catalogs: one listing per dataset"] = \
            median_seconds(lambda: [load_catalog(target, client) for target in targets], repeat)
    width = max(len(label) for label in seconds)
    for label, value in seconds.items():
        print(f"  {label:<{width}}  {value:7.2f} s")
    out_dir = Path(os.environ.get("BENCH_OUT") or RESULTS_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"tree-{time.strftime('%Y%m%d-%H%M%S')}-{machine['hostname']}.json"
    record: dict[str, Any] = {"machine": machine, "datasets": count, "repeat": repeat, "seconds": seconds}
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
