"""The report of `python -m bench.e2e`: the table, efficiency against the slowest stage, the CPU ceiling,
the WAN comparisons, and the JSON record."""


from __future__ import annotations

from typing import Any

from bench import wan

from .cases import GB, PHASES, Case


def efficiency(case: Case, by_name: dict[str, Case]) -> tuple[float, Case] | None:
    stages = [by_name[name] for name in case.stages if name in by_name]
    mb_s = case.median("mb_per_s")
    if not stages or mb_s is None:
        return None
    slowest = min(stages, key=lambda s: s.median("mb_per_s") or 0.0)
    return mb_s / (slowest.median("mb_per_s") or float("inf")), slowest


def cpu_ceiling(cpu_s_per_gb: float | None, daemon_cpu_s_per_gb: float | None, cores: int) -> float | None:
    """The MB/s of raw bytes at which `cores` cores would all be busy, given the CPU seconds per raw GB of
    the process tree and of the daemons outside it: cores / CPU s per raw byte. None if unmeasured."""
    if cpu_s_per_gb is None:
        return None
    per_gb = cpu_s_per_gb + (daemon_cpu_s_per_gb or 0.0)
    if per_gb <= 0 or cores <= 0:
        return None
    return cores / per_gb * GB / 1e6


def ceiling(case: Case, cores: int) -> tuple[float, float] | None:
    """An end-to-end case's CPU-bound ceiling (MB/s, from the medians) and its MB/s as a share of it."""
    mb_s = case.median("mb_per_s")
    if case.kind == "stage" or mb_s is None:
        return None
    top = cpu_ceiling(case.median("cpu_s_per_gb"), case.median("daemon_cpu_s_per_gb"), cores)
    return None if top is None else (top, mb_s / top)


def usable_cores(meta: dict[str, Any]) -> int:
    return int(meta["machine"]["usable_cores"])


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(cases: list[Case], cores: int) -> str:
    by_name = {c.name: c for c in cases}
    header = (
        "case",
        "MB/s",
        "wall s",
        "CPU s/GB",
        "daemon CPU s/GB",
        "stored bytes",
        "ratio",
        "RSS MiB",
        "procs",
        "eff.",
        "ceil MB/s",
        "of ceil",
    )
    rows: list[tuple[str, ...]] = []
    for phase in PHASES:
        for kind in ("zfsglacier", "shell", "stage"):
            for c in (c for c in cases if c.phase == phase and c.kind == kind):
                found = efficiency(c, by_name)
                top = ceiling(c, cores)
                stored = c.median("stored_bytes")
                rows.append(
                    (
                        f"{phase}: {c.name}" if kind != "stage" else f"{phase} stage: {c.name}",
                        _fmt(c.median("mb_per_s"), 1),
                        _fmt(c.median("wall_s"), 2),
                        _fmt(c.median("cpu_s_per_gb"), 2),
                        _fmt(c.median("daemon_cpu_s_per_gb"), 2),
                        "-" if stored is None else f"{stored:.0f}",
                        _fmt(c.median("ratio"), 3),
                        _fmt(c.median("peak_rss_mib"), 1),
                        _fmt(c.median("children"), 0),
                        _fmt(found[0] if found else None, 2),
                        _fmt(top[0] if top else None, 1),
                        _fmt(top[1] if top else None, 2),
                    )
                )
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(row) for row in rows)])


def summary(cases: list[Case], meta: dict[str, Any]) -> str:
    by_name = {c.name: c for c in cases}
    m = meta["machine"]
    lines = [
        f"machine: {m['hostname']}: {m['cores']} cores ({m['usable_cores']} usable), {m['cpu_model']}, "
        f"{m['memory_gib']} GiB; {m['os']}; Python {m['python']}; zfs: {m['zfs']}; {m['rclone']}; "
        f"{m['zstd']}; {m['pigz']}",
        f"zfsglacier: commit {meta['code']['commit'][:12]}"
        f"{' with uncommitted changes' if meta['code']['uncommitted'] else ''}",
        f"input: {meta['input']}; raw stream {meta['raw_stream_bytes']} bytes; {meta['repeat']} repeat(s), "
        f"medians shown; load average at start {meta['load_start']}, at end {meta['load_end']}",
        "",
        table(cases, usable_cores(meta)),
    ]
    bounded = [(c, found) for c in cases if (found := efficiency(c, by_name))]
    if bounded:
        lines += ["", "efficiency = end-to-end MB/s / the slowest of its stages alone:"]
        lines += [
            f"  {c.name}: {c.median('mb_per_s'):.1f} MB/s; slowest stage: {slowest.name} "
            f"{slowest.median('mb_per_s'):.1f} MB/s; efficiency {ratio:.2f}"
            for c, (ratio, slowest) in bounded
        ]
        lines.append(
            f"ceiling = {usable_cores(meta)} usable cores / (CPU s/GB + daemon CPU s/GB), in MB/s: the throughput "
            "at which all cores would be busy, given the CPU the run spent per byte; of ceiling = MB/s / ceiling: "
            "near 1 the run is CPU-bound, well below 1 its stages wait on each other or on I/O"
        )
    overhead = [c for c in cases if c.median("overhead_s") is not None]
    if overhead:
        lines.append(
            "zfsglacier's fixed cost (wall time minus its own timing of the stream: start-up, snapshot, "
            "listings, manifest, checks):"
        )
        lines += [f"  {c.name}: {c.median('overhead_s'):.2f} s of {c.median('wall_s'):.2f} s" for c in overhead]
    if meta.get("wan"):
        lines += wan_lines(meta["wan"])
    if meta["snapshot"] is None:
        lines.append("BENCH_STREAM: no zfs here, so only the stages that need no zfs ran; no end-to-end case.")
    lines.append(f"run took {meta['seconds']:.0f} s")
    return "\n".join(lines)


def _find(cases: list[Case], phase: str, kind: str, remote: str, variant: str) -> Case | None:
    found = [c for c in cases if (c.phase, c.kind, c.remote, c.variant) == (phase, kind, remote, variant)]
    return found[0] if found and found[0].samples else None


def wan_comparisons(cases: list[Case], remote: str = "wan") -> list[dict[str, Any]]:
    """zfsglacier against the shell pipeline it replaces on `remote`, per phase, zstd with zstd and pigz with
    pigz: both MB/s, zfsglacier's time / the shell's (medians), zfsglacier's peak RSS and fixed cost."""
    out = []
    for phase in PHASES:
        for mine, theirs in (("zg-zstd", "sh-zstd"), ("zg-pigz", "sh-pigz")):
            zg, sh = _find(cases, phase, "zfsglacier", remote, mine), _find(cases, phase, "shell", remote, theirs)
            if zg is None or sh is None:
                continue
            out.append(
                {
                    "phase": phase,
                    "codec": mine.removeprefix("zg-"),
                    "zfsglacier": zg.name,
                    "shell": sh.name,
                    "zfsglacier_mb_per_s": zg.median("mb_per_s"),
                    "shell_mb_per_s": sh.median("mb_per_s"),
                    "time_ratio": (zg.median("wall_s") or 0.0) / (sh.median("wall_s") or float("inf")),
                    "zfsglacier_peak_rss_mib": zg.median("peak_rss_mib"),
                    "zfsglacier_overhead_s": zg.median("overhead_s"),
                    "zfsglacier_children": zg.median("children"),
                    "shell_children": sh.median("children"),
                }
            )
    return out


def proxy_cpu_per_gb(cases: list[Case], remote: str = "wan") -> float | None:
    """The proxy's CPU seconds per GB of stored bytes it forwarded, over every sample of `remote`'s cases."""
    samples = [s for c in cases if c.remote == remote for s in c.samples if s.get("stored_bytes")]
    moved = sum(s["stored_bytes"] for s in samples)
    cpu = sum(s["daemon_cpu_s_by"].get("wan proxy", 0.0) for s in samples)
    return cpu / (moved / GB) if moved else None


def wan_meta(link: wan.Link, cases: list[Case]) -> dict[str, Any]:
    return {
        "mbps": link.mbps,
        "rtt_ms": link.rtt_ms,
        "handshake_ms": link.handshake * 1000,
        "buffer_bytes": link.buffer,
        "model": link.describe(),
        "proxy_cpu_s_per_gb": proxy_cpu_per_gb(cases),
        "comparisons": wan_comparisons(cases),
    }


def wan_lines(meta: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"WAN model (remote wan: the s3 remote's server through bench/wan.py, loopback): {meta['model']}; "
        "no packet loss, no slow start, no shared bottleneck",
    ]
    shown = [c for c in meta["comparisons"] if c["codec"] == "zstd"]
    lines += [
        f"  {c['phase']}: {c['zfsglacier']} {c['zfsglacier_mb_per_s']:.1f} MB/s (peak RSS "
        f"{_fmt(c['zfsglacier_peak_rss_mib'], 1)} MiB, {_fmt(c['zfsglacier_children'], 0)} processes) vs "
        f"{c['shell']} {c['shell_mb_per_s']:.1f} MB/s: zfsglacier's time / the shell's {c['time_ratio']:.2f}"
        for c in shown
    ]
    if not shown:
        lines.append("  no end-to-end case ran on it")
    if meta["proxy_cpu_s_per_gb"] is not None:
        lines.append(
            f"  the proxy's CPU (in daemon CPU): {meta['proxy_cpu_s_per_gb']:.2f} s per GB of stored bytes it forwarded"
        )
    return lines


def record(cases: list[Case], meta: dict[str, Any]) -> dict[str, Any]:
    by_name = {c.name: c for c in cases}
    keys = (
        "mb_per_s",
        "wall_s",
        "cpu_s_per_gb",
        "daemon_cpu_s_per_gb",
        "stored_bytes",
        "ratio",
        "peak_rss_mib",
        "children",
        "overhead_s",
    )
    out = []
    for c in cases:
        found = efficiency(c, by_name)
        top = ceiling(c, usable_cores(meta))
        out.append(
            {
                "phase": c.phase,
                "kind": c.kind,
                "name": c.name,
                "remote": c.remote,
                "variant": c.variant,
                "stages": list(c.stages),
                "median": {k: c.median(k) for k in keys},
                "efficiency": found[0] if found else None,
                "slowest_stage": found[1].name if found else None,
                "cpu_ceiling_mb_per_s": top[0] if top else None,
                "of_ceiling": top[1] if top else None,
                "samples": c.samples,
            }
        )
    return {**meta, "cases": out}
