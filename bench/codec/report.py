"""The table, the side-by-side pairs, and the JSON record of a run."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zfsglacier.codec.registry import CODECS

from .measure import Result

_HEADER = ("op", "impl", "codec/tool", "level", "threads", "MB/s", "CPU s/GB", "ratio", "peak RSS MiB")


def _cell(value: int | None) -> str:
    return "-" if value is None else str(value)


def _row(result: Result) -> tuple[str, ...]:
    case = result.case
    tool = " ".join(case.argv) if case.impl == "external" else case.codec + ("" if case.sha256 else " no-sha256")
    if case.produced_by:
        tool = f"{tool} < {case.produced_by}"
    return (
        case.op,
        case.impl,
        tool,
        _cell(case.level),
        _cell(case.threads),
        f"{result.mb_per_s:.1f}",
        f"{result.cpu_s_per_gb:.2f}",
        f"{result.ratio:.3f}",
        f"{result.peak_rss_mib:.1f}",
    )


def table(results: Sequence[Result]) -> str:
    rows = [_HEADER, *(_row(r) for r in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER))]
    numeric = range(3, len(_HEADER))

    def fmt(row: tuple[str, ...]) -> str:
        cells = enumerate(zip(row, widths, strict=True))
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in cells)

    lines = [fmt(rows[0]), "  ".join("-" * w for w in widths)]
    lines += [fmt(row) for row in rows[1:]]
    return "\n".join(lines)


def rss_note(results: Sequence[Result]) -> str:
    before = [s["rss_before_kib"] / 1024 for r in results if r.case.impl == "in-process" for s in r.samples]
    # VmHWM, not ru_maxrss: see bench.memory
    baseline = f"{statistics.median(before):.1f} MiB" if before else "n/a"
    return (
        "peak RSS: in-process rows are the whole worker process (the interpreter with zstandard and isal "
        f"imported holds {baseline} before any data moves); external rows are the tool alone"
    )


@dataclass(frozen=True)
class Pair:
    title: str
    ours: Result
    theirs: Result

    @property
    def throughput_ratio(self) -> float:
        return self.ours.mb_per_s / self.theirs.mb_per_s

    @property
    def size_ratio(self) -> float:
        return self.ours.stored_bytes / self.theirs.stored_bytes

    @property
    def cpu_ratio(self) -> float:
        return self.ours.cpu_s_per_gb / self.theirs.cpu_s_per_gb

    def line(self) -> str:
        return (
            f"{self.title}: throughput x{self.throughput_ratio:.2f} ({self.ours.mb_per_s:.1f} vs "
            f"{self.theirs.mb_per_s:.1f} MB/s), stored size x{self.size_ratio:.3f}, CPU per GB x{self.cpu_ratio:.2f}"
        )

    def record(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "in_process": self.ours.case.name,
            "external": self.theirs.case.name,
            "throughput_ratio": self.throughput_ratio,
            "size_ratio": self.size_ratio,
            "cpu_ratio": self.cpu_ratio,
        }


def _find(results: Sequence[Result], op: str, impl: str, codec: str, level: int, threads: int | None,
          sha256: bool = True) -> Result | None:
    for result in results:
        case = result.case
        if (case.op, case.impl, case.codec, case.level, case.threads, case.sha256) == (
                op, impl, codec, level, threads, sha256):
            return result
    return None


def pairs(results: Sequence[Result], nproc: int) -> list[Pair]:
    """The comparisons that decide the default: in-process vs the command it replaced."""
    zstd = CODECS["zstd"].default_level
    pigz = CODECS["pigz"].default_level
    wanted = [
        (f"in-process zstd -{zstd} T={nproc} vs zstd -{zstd} -T{nproc}", "compress", "zstd", zstd, nproc, "zstd", zstd),
        (f"in-process pigz -{pigz} T={nproc} vs pigz -6 -p {nproc}", "compress", "pigz", pigz, nproc, "pigz", 6),
        (f"in-process pigz -{pigz} T={nproc} vs pigz -1 -p {nproc}", "compress", "pigz", pigz, nproc, "pigz", 1),
    ]
    found = []
    for title, op, codec, level, threads, tool, tool_level in wanted:
        ours = _find(results, op, "in-process", codec, level, threads)
        theirs = _find(results, op, "external", tool, tool_level, threads)
        if ours and theirs:
            found.append(Pair(title, ours, theirs))
    alone = _find(results, "compress", "in-process", "zstd", zstd, nproc, sha256=False)
    zstd_tool = _find(results, "compress", "external", "zstd", zstd, nproc)
    if alone and zstd_tool:
        found.insert(1, Pair(f"in-process zstd -{zstd} T={nproc} without the sha256 vs zstd -{zstd} -T{nproc} (codec "
                             "alone)", alone, zstd_tool))
    for codec, level, tool in (("zstd", zstd, "zstd"), ("pigz", pigz, "pigz")):
        ours = _find(results, "decompress", "in-process", codec, level, None)
        theirs = _find(results, "decompress", "external", tool, level, None)
        if ours and theirs:
            found.append(Pair(f"in-process {codec} reader vs {tool} -d, on {codec} -{level} output", ours, theirs))
    return found


def record(results: Sequence[Result], found: Sequence[Pair], meta: dict[str, Any]) -> dict[str, Any]:
    return {
        **meta,
        "pairs": [p.record() for p in found],
        "cases": [
            {
                "case": r.case.spec(),
                "name": r.case.name,
                "median": {
                    "mb_per_s": r.mb_per_s,
                    "cpu_s_per_gb": r.cpu_s_per_gb,
                    "ratio": r.ratio,
                    "stored_bytes": r.stored_bytes,
                    "peak_rss_mib": r.peak_rss_mib,
                },
                "samples": r.samples,
            }
            for r in results
        ],
    }


def write_json(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path
