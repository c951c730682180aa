"""`level = auto` against fixed zstd levels, on zfsglacier's own pipeline with an upload that is
slower than compression (rclone's --bwlimit, through RCLONE_BWLIMIT) and with one that is not.

The source stage is `cat` of a generated corpus file instead of `zfs send`, so that the only thing
that differs between the rows is the level policy. Run: `python -m bench.adaptive`.
Settings (environment):
BENCH_AUTO_SIZE     corpus in MiB (default 256; 96 with BENCH_QUICK=1). `auto` picks the next frame's level
                    after each 32 MiB frame, so up to 32 MiB it never changes level: a smoke test, no result
BENCH_AUTO_BWLIMIT  the slow upload, an rclone rate (default 8M)
BENCH_REPEAT        runs per row, medians shown (default 3; 1 with BENCH_QUICK=1)
BENCH_QUICK=1       a faster run: the smaller defaults above
BENCH_OUT           where the JSON record goes (default bench/results/)
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from zfsglacier.codec.registry import AUTO, Level, default_threads, get_codec
from zfsglacier.remote.rclone import Rclone, find_rclone
from zfsglacier.stream.pipeline import VolumeTarget, send_to_remote

from . import machine
from .corpus import MIB, make_corpus
from .settings import RESULTS_DIR, positive_int

POLICIES: tuple[Level, ...] = (3, AUTO, 6)


@dataclass(frozen=True)
class Sample:
    policy: str
    bwlimit: str
    wall: float
    stored: int


def _one(corpus: Path, remote_dir: Path, config: Path, level: Level, bwlimit: str) -> Sample:
    for old in remote_dir.glob("*"):
        old.unlink()
    if bwlimit:
        os.environ["RCLONE_BWLIMIT"] = bwlimit
    else:
        os.environ.pop("RCLONE_BWLIMIT", None)
    rclone = Rclone(find_rclone(), config)
    started = time.monotonic()
    stats = send_to_remote(
        ["cat", str(corpus)],
        VolumeTarget(lambda name: rclone.rcat_argv(f"bench:out/{name}"), lambda number: "stream.zfs.zst"),
        get_codec("zstd"),
        level,
        default_threads(),
        lambda raw, stored: None,
    )
    return Sample(str(level), bwlimit or "none", time.monotonic() - started, stats.stored_bytes)


def main() -> int:
    quick = os.environ.get("BENCH_QUICK") == "1"
    size = positive_int(os.environ, "BENCH_AUTO_SIZE", 96 if quick else 256) * MIB  # frames are 32 MiB
    repeat = positive_int(os.environ, "BENCH_REPEAT", 1 if quick else 3)
    results = Path(os.environ.get("BENCH_OUT") or RESULTS_DIR)
    bwlimit = os.environ.get("BENCH_AUTO_BWLIMIT", "8M")
    work = Path(tempfile.mkdtemp(prefix="zfsglacier-bench-auto-"))
    try:
        corpus = make_corpus(work / "corpus", size, seed=1)
        (work / "remote" / "out").mkdir(parents=True)
        config = work / "rclone.conf"
        config.write_text(f"[bench]\ntype = alias\nremote = {work / 'remote'}\n")
        samples = [
            _one(corpus, work / "remote" / "out", config, level, limit)
            for _ in range(repeat)
            for limit in (bwlimit, "")
            for level in POLICIES
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = _medians(samples)
    described = machine.describe()
    print(f"machine: {machine.one_line(described)}")
    print(f"input: generated corpus, {size // MIB} MiB; {repeat} repeat(s), medians; zstd, {default_threads()} threads")
    print(f"{'upload limit':>12}  {'level':>5}  {'wall s':>7}  {'stored MiB':>10}  {'raw MB/s':>8}")
    for (limit, policy), (wall, stored) in rows.items():
        print(f"{limit:>12}  {policy:>5}  {wall:7.2f}  {stored / MIB:10.1f}  {size / wall / 1e6:8.1f}")
    for limit in (bwlimit, "none"):
        fixed, auto = rows[(limit, "3")], rows[(limit, AUTO)]
        print(
            f"upload limit {limit}: auto vs level 3: stored x{auto[1] / fixed[1]:.3f}, wall x{auto[0] / fixed[0]:.3f}"
        )
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"auto-{time.strftime('%Y%m%d-%H%M%S')}-{described['hostname']}{'-quick' if quick else ''}.json"
    out.write_text(
        json.dumps(
            {"machine": described, "size": size, "repeat": repeat, "samples": [s.__dict__ for s in samples]}, indent=2
        )
        + "\n"
    )
    print(f"wrote {out}")
    return 0


def _medians(samples: list[Sample]) -> dict[tuple[str, str], tuple[float, float]]:
    keys = dict.fromkeys((s.bwlimit, s.policy) for s in samples)
    return {
        key: (
            statistics.median(s.wall for s in samples if (s.bwlimit, s.policy) == key),
            statistics.median(s.stored for s in samples if (s.bwlimit, s.policy) == key),
        )
        for key in keys
    }


if __name__ == "__main__":
    raise SystemExit(main())
