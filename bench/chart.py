"""Throughput against ratio, in-process vs external, if matplotlib happens to be installed (not a dependency)."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from .measure import Result


def available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def draw(results: Sequence[Result], path: Path, title: str) -> Path:
    import matplotlib  # type: ignore[import-not-found]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found]

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    for ax, op in zip(axes, ("compress", "decompress"), strict=True):
        for impl, marker in (("in-process", "o"), ("external", "s")):
            chosen = [r for r in results if r.case.op == op and r.case.impl == impl]
            ax.scatter([r.ratio for r in chosen], [r.mb_per_s for r in chosen], marker=marker, label=impl)
            for r in chosen:
                ax.annotate(r.case.name, (r.ratio, r.mb_per_s), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("ratio (raw / stored)")
        ax.set_ylabel("raw MB/s (wall)")
        ax.set_yscale("log")
        ax.set_title(op)
        ax.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
