"""Catalog at scale: `python -m bench.catalog`.

Generates the remote side of N committed backups of one dataset (one full and N-1 incrementals,
so restoring the newest is a chain of N) on a loopback S3 remote (`rclone serve s3`), then times
what a user waits for:
    list        `zfsglacier list` (a process, start-up included)
    plan        `zfsglacier restore` of the newest backup up to its confirmation prompt: catalog,
                chain resolution, object checks and the printed plan (a process, start-up included)
    load        load_catalog() alone, in this process
    chain       build_chain() of the newest backup alone, in this process
each with the index (`zfsglacier.index.json`) and without it (every manifest fetched in one batch).

BENCH_CATALOG_COUNT  committed backups to generate (default 1000; 100 with BENCH_QUICK=1)
BENCH_REPEAT         runs per measurement; the median is reported (default 3; 1 with BENCH_QUICK=1)
BENCH_OUT            where the JSON goes (default bench/results/)
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.e2e.setup import rig
from zfsglacier.config import load_config
from zfsglacier.errors import EXIT_USAGE
from zfsglacier.remote import manifest_index
from zfsglacier.remote.catalog import load_catalog
from zfsglacier.remote.manifest import Manifest, build_chain, data_object_name, manifest_name
from zfsglacier.remote.rclone import Rclone

from .machine import describe, one_line
from .settings import RESULTS_DIR, positive_int

DATASET = "benchpool/data"
# In a pool that does not exist: the restore plans the chain, then refuses the target (no terminal needed).
TARGET = "zfsglacier-bench-no-such-pool/restored"
DATA_BYTES = 64  # the data objects' content does not matter for planning, only their listed size


def generate(directory: Path, count: int) -> None:
    """`count` committed backups of DATASET, written straight into the served directory."""
    directory.mkdir(parents=True)
    manifests: dict[str, bytes] = {}
    previous: Manifest | None = None
    for number in range(count):
        snapshot = f"glacier-backup-{number:06d}"
        kind = "full" if previous is None else "incremental"
        data = hashlib.sha256(snapshot.encode()).digest() * (DATA_BYTES // 32)
        manifest = Manifest(
            dataset=DATASET, snapshot=snapshot, guid=str(10**15 + number), createtxg=100 + number,
            kind=kind, base=previous.snapshot if previous else None,
            base_guid=previous.guid if previous else None, compressor="zstd", level=3,
            raw_bytes=1 << 20, stored_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
            object=data_object_name(snapshot, kind, ".zst"), created="2026-01-01T00:00:00+00:00",
            host="bench", tool_version="bench",
        )
        (directory / manifest.object).write_bytes(data)
        text = manifest.to_json()
        (directory / manifest_name(snapshot)).write_bytes(text)
        manifests[manifest_name(snapshot)] = text
        previous = manifest
    (directory / manifest_index.INDEX_NAME).write_bytes(manifest_index.encode(manifests))


def median_seconds(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def zfsglacier_process(argv: list[str], env: dict[str, str], expect: int = 0) -> Callable[[], None]:
    """A run of `python -m zfsglacier ARGV` that must exit `expect` (a whole process: start-up counts)."""
    def run() -> None:
        done = subprocess.run([sys.executable, "-m", "zfsglacier", *argv], env=env, capture_output=True,
                              stdin=subprocess.DEVNULL, check=False)
        if done.returncode != expect:
            raise RuntimeError(f"zfsglacier {' '.join(argv)} exited {done.returncode}, not {expect}: "
                               f"{done.stderr.decode(errors='replace')[-500:]}")
    return run


def measure(config: Path, env: dict[str, str], repeat: int) -> dict[str, float]:
    cfg = load_config(config)
    rclone = Rclone(rig.find_tool("rclone") or "rclone", cfg.rclone_config)
    newest = load_catalog(cfg, rclone).manifests[-1].snapshot
    catalog = load_catalog(cfg, rclone)
    return {
        "list": median_seconds(zfsglacier_process(["-q", "list", "--config", str(config)], env, 0), repeat),
        # The catalog is loaded and the chain resolved and checked before the target's parent is found missing.
        "plan": median_seconds(zfsglacier_process(["-q", "restore", "--config", str(config), "--target-dataset", TARGET,
                                      "--snapshot", newest], env, EXIT_USAGE), repeat),
        "load": median_seconds(lambda: load_catalog(cfg, rclone), repeat),
        "chain": median_seconds(lambda: build_chain(catalog.manifests, newest), repeat),
    }


def main() -> int:
    quick = os.environ.get("BENCH_QUICK", "").strip() not in ("", "0")
    count = positive_int(os.environ, "BENCH_CATALOG_COUNT", 100 if quick else 1000)
    repeat = positive_int(os.environ, "BENCH_REPEAT", 1 if quick else 3)
    machine = describe()
    print(f"machine: {one_line(machine)}")
    print(f"catalog of {count} backups (1 full, {count - 1} incrementals) on loopback S3 (rclone serve s3), "
          f"median of {repeat}:")
    rclone = rig.find_tool("rclone")
    if rclone is None:
        raise SystemExit("bench.catalog: rclone not found")
    results: dict[str, dict[str, float]] = {}
    with (tempfile.TemporaryDirectory(prefix="zfsglacier-bench-catalog-") as tmp, rig.s3_server(rclone) as server,
          server.remote() as remote):
        work = Path(tmp)
        generate(remote.root / DATASET, count)
        config = work / "config.ini"
        config.write_text(f"[zfs]\ndataset = {DATASET}\n[rclone]\nremote = {remote.name}\n"
                          f"bucket_name = {remote.bucket}\nconfig_path = {remote.config_path}\n")
        env = {**os.environ, "ZFSGLACIER_LOCK_DIR": str(work / "locks")}
        results["with index"] = measure(config, env, repeat)
        (remote.root / DATASET / manifest_index.INDEX_NAME).unlink()
        results["without index"] = measure(config, env, repeat)
    print(f"{'':<14}{'list':>8}{'plan':>8}{'load':>8}{'chain':>8}   (seconds)")
    for label, row in results.items():
        print(f"{label:<14}" + "".join(f"{row[key]:>8.2f}" for key in ("list", "plan", "load", "chain")))
    out_dir = Path(os.environ.get("BENCH_OUT") or RESULTS_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"catalog-{time.strftime('%Y%m%d-%H%M%S')}-{machine['hostname']}.json"
    record: dict[str, Any] = {"machine": machine, "count": count, "repeat": repeat, "seconds": results}
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
