"""Does compressing on top of `zfs send -c` pay? `python -m bench.send_compressed [MiB]`.

On a throwaway pool (a dataset with compression=lz4 holding the benchmark corpus), the full stream of
one snapshot goes through zfsglacier's own send pipeline (`zfs send` -> codec -> sha256 -> a sink that
discards) four ways, interleaved over BENCH_REPEAT rounds (default 3): a plain send and `zfs send -c`,
each stored with zstd -3 and with no compression. Per way: the stream and stored sizes, and the
medians of wall time and CPU seconds (zfsglacier plus zfs send). Needs an OpenZFS zfs (`send -c`):
elsewhere it says so and exits 0; `make test-openzfs` runs it in the OpenZFS VMs with OPENZFS_BENCH=1.

Size in MiB: the argument, else BENCH_SEND_MIB, else 256 (64 with BENCH_QUICK=1).
The rows are printed and written as JSON to BENCH_OUT (default bench/results/).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.e2e.setup import rig
from zfsglacier.codec.registry import get_codec
from zfsglacier.stream.pipeline import VolumeTarget, send_to_remote
from zfsglacier.zfs import capabilities
from zfsglacier.zfs.cmd import send_argv

from .corpus import MIB, write_corpus
from .machine import describe, one_line
from .settings import RESULTS_DIR

WAYS = (("plain", (), "zstd"), ("-c", ("-c",), "zstd"), ("plain", (), "none"), ("-c", ("-c",), "none"))
DISCARD = VolumeTarget(lambda name: ["sh", "-c", "cat >/dev/null"], lambda number: "stream")


@dataclass(frozen=True)
class Row:
    send: str
    compressor: str
    stream_bytes: int
    stored_bytes: int
    wall_seconds: float  # median
    cpu_seconds: float  # median, zfsglacier and its children (zfs send, the sink)

    def line(self, plain_zstd: Row | None) -> str:
        against = f"  stored {self.stored_bytes / plain_zstd.stored_bytes:5.2f}x, CPU " \
                  f"{self.cpu_seconds / plain_zstd.cpu_seconds:5.2f}x of plain + zstd" if plain_zstd else ""
        return (f"send {self.send:<5} {self.compressor:<4}  stream {self.stream_bytes / MIB:8.1f} MiB  stored "
                f"{self.stored_bytes / MIB:8.1f} MiB  wall {self.wall_seconds:6.2f} s  CPU {self.cpu_seconds:6.2f} s"
                f"{against}")


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _once(snapshot: str, flags: tuple[str, ...], compressor: str) -> tuple[int, int, float, float]:
    codec = get_codec(compressor)
    level = codec.default_level
    cpu, wall = _cpu(), time.monotonic()
    stats = send_to_remote(send_argv(snapshot, None, ["-L", "-e", *flags]), DISCARD, codec, level, 2,
                           lambda raw, stored: None)
    return stats.raw_bytes, stats.stored_bytes, time.monotonic() - wall, _cpu() - cpu


def measure(size_mib: int, repeat: int) -> list[Row]:
    samples: dict[int, list[tuple[int, int, float, float]]] = {i: [] for i in range(len(WAYS))}
    with rig.file_pool(size=(size_mib * 2 + 512) * MIB) as pool:
        dataset = pool.dataset("data")
        rig.run(["zfs", "create", "-o", "compression=lz4", dataset])
        with (pool.path("data") / "corpus").open("wb") as out:
            write_corpus(out, size_mib * MIB, seed=1)
        rig.run(["zfs", "snapshot", f"{dataset}@bench"])
        for _ in range(repeat):
            for i, (_, flags, compressor) in enumerate(WAYS):
                samples[i].append(_once(f"{dataset}@bench", flags, compressor))
    rows = []
    for i, (send, _, compressor) in enumerate(WAYS):
        runs = samples[i]
        rows.append(Row(send, compressor, runs[0][0], runs[0][1], statistics.median(r[2] for r in runs),
                        statistics.median(r[3] for r in runs)))
    return rows


def main() -> int:
    tools = capabilities.zfs_tools()
    if not tools.compressed_send:
        print("bench.send_compressed: this zfs has no zfs send -c (zfs-fuse): nothing to measure here; "
              "OPENZFS_BENCH=1 make test-openzfs runs it on OpenZFS 2.1 and 2.3")
        return 0
    quick = os.environ.get("BENCH_QUICK", "").strip() not in ("", "0")
    size = int(sys.argv[1]) if sys.argv[1:] else int(os.environ.get("BENCH_SEND_MIB") or (64 if quick else 256))
    repeat = int(os.environ.get("BENCH_REPEAT") or 3)
    machine = describe()
    print(f"machine: {one_line(machine)}")
    print(f"zfs send of a {size} MiB corpus on compression=lz4, {repeat} interleaved rounds, medians:")
    rows = measure(size, repeat)
    plain_zstd = rows[0]
    for row in rows:
        print(row.line(plain_zstd), flush=True)
    results = Path(os.environ.get("BENCH_OUT") or RESULTS_DIR)
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"send-compressed-{time.strftime('%Y%m%d-%H%M%S')}-{machine['hostname']}.json"
    out.write_text(json.dumps({"machine": machine, "size_mib": size, "repeat": repeat,
                               "rows": [asdict(row) for row in rows]}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
