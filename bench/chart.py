"""Charts, if matplotlib happens to be installed (not a dependency): throughput against ratio, in-process vs
external (`python -m bench`), and MB/s per case by remote (`python -m bench.e2e`)."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.codec.measure import Result


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


_KIND_COLOURS = {"zfsglacier": "tab:blue", "shell": "tab:orange", "stage": "tab:gray"}


def draw_e2e(data: dict[str, Any], path: Path) -> Path:
    """`python -m bench.e2e`'s medians as horizontal bars of raw MB/s, one panel per remote (and one for the
    stages that use none), zfsglacier, shell pipelines and stages in their own colours."""
    import matplotlib  # type: ignore[import-not-found]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found]

    remotes = [*data["settings"].get("remotes", []), None]
    groups = []
    for remote in remotes:
        chosen = [c for c in data["cases"] if c.get("remote") == remote and c["median"]["mb_per_s"]]
        if chosen:
            groups.append((remote, sorted(chosen, key=lambda c: (c["phase"], c["kind"] != "zfsglacier", c["kind"]))))
    heights = [max(len(cases), 1) for _, cases in groups] or [1]
    fig, axes = plt.subplots(len(heights), 1, figsize=(11, 1.5 + 0.24 * sum(heights)), squeeze=False, sharex=True,
                             gridspec_kw={"height_ratios": heights})
    for ax, (remote, cases) in zip(axes[:, 0], groups, strict=False):
        labels = [f"{c['phase']}: {c['name']}" for c in cases]
        values = [c["median"]["mb_per_s"] for c in cases]
        ax.barh(range(len(cases)), values, color=[_KIND_COLOURS.get(c["kind"], "tab:green") for c in cases])
        for y, value in enumerate(values):
            ax.annotate(f"{value:.1f}", (value, y), fontsize=6, xytext=(2, -2), textcoords="offset points")
        ax.set_yticks(range(len(cases)), labels, fontsize=6)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_title(f"remote: {remote}" if remote else "stages without a remote", fontsize=8)
        ax.tick_params(axis="x", labelbottom=True, labelsize=7)
    axes[-1, 0].set_xlabel("raw MB/s (median wall time)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colour) for colour in _KIND_COLOURS.values()]
    fig.legend(handles, ["zfsglacier", "shell pipeline", "stage alone"], fontsize=7, loc="lower left", ncol=3,
               frameon=False)
    wan = data.get("wan")
    model = f"\nremote wan: {wan['model']}" if wan else ""
    fig.suptitle(f"{data['input']}; {data['repeat']} repeat(s){model}", fontsize=7)
    fig.tight_layout(rect=(0, 0.25 / fig.get_figheight(), 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
