"""`python -m bench.e2e`: the end-to-end benchmark. zfsglacier backup, restore and verify against the shell
pipelines they replace (verify: `rclone cat | zstd -t`), and each stage alone, on the same snapshot and the
same remotes (a local directory, S3 served by `rclone serve s3` on 127.0.0.1, and that S3 server reached
through bench.wan's proxy, which gives each connection an internet link's rate cap and latency), side by
side in one run; medians of the repeats.

BENCH_E2E_SIZE     generated corpus in MiB (default 1024; 64 with BENCH_QUICK)
BENCH_DATASET      pool/x: use this dataset's newest snapshot (or one made and destroyed here) instead
BENCH_STREAM       a saved `zfs send` stream: only the stages that need no zfs run
BENCH_E2E_REMOTES  which remotes, comma-separated (default local,s3,wan)
BENCH_WAN_MBPS     the wan remote's cap in MB/s per connection and direction (default 25)
BENCH_WAN_RTT_MS   its round-trip time (default 20 ms)
BENCH_WAN_HANDSHAKE_RTTS  round trips a new connection waits before its first byte (default 2: TCP + TLS)
BENCH_REPEAT, BENCH_QUICK, BENCH_SEED, BENCH_OUT: as for `python -m bench` (bench/settings.py)

Table: MB/s of raw (uncompressed stream) bytes; CPU s per raw GB of the whole process tree (this process
and every child, grandchildren included); daemon CPU: the zfs-fuse daemon (where zfs send/receive really
work under zfs-fuse) and `rclone serve s3`, which are not in the tree; zfsglacier's peak RSS is its own
process, children excluded; procs: the child processes a run started (zfsglacier's zfs and rclone calls,
or the pipeline's stages); efficiency: end-to-end MB/s / the slowest of its stages alone; ceiling: the
MB/s at which every usable core would be busy, given the CPU (tree and daemons) the run spent per raw byte,
and "of ceiling": end-to-end MB/s / that ceiling. On a small machine the stages share the same cores, so
efficiency can be far below 1 for a pipeline that keeps every core busy; "of ceiling" near 1 says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from zfsglacier.codec.registry import get_codec

from . import chart, provenance, wan
from .e2e_run import (
    Moved,
    Usage,
    compress_file,
    decompress_file,
    process_cpu,
    run_chain,
    run_zfsglacier,
    stop_all,
    stream_seconds,
)
from .e2e_setup import (
    ZFS,
    E2ESettings,
    Input,
    daemon_pids,
    describe_machine,
    destroy,
    input_for,
    remove,
    rig,
    settings_from_env,
    snapshot_prefix,
    sync_disks,
)

GB = 1e9
PHASES = ("backup", "restore", "verify")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _nothing() -> None:
    pass


@dataclass(frozen=True)
class Variant:
    """A compressed form of the stream: zfsglacier's in-process codec, or the tool a shell pipeline uses."""

    key: str  # its folder on the remotes and its file in the work dir
    label: str
    codec: str  # the zfsglacier codec of that format
    compress: tuple[str, ...] | None = None  # the external tool; None: in-process
    decompress: tuple[str, ...] | None = None
    test: tuple[str, ...] | None = None  # the tool's own integrity check of a stream on stdin

    @property
    def in_process(self) -> bool:
        return self.compress is None


def variants(nproc: int) -> list[Variant]:
    zstd, pigz = get_codec("zstd").default_level, get_codec("pigz").default_level
    return [
        Variant("zg-zstd", f"in-process zstd -{zstd}", "zstd"),
        Variant("zg-pigz", f"in-process pigz -{pigz}", "pigz"),
        Variant("sh-zstd", "zstd -3 -T0", "zstd", ("zstd", "-q", "-3", "-T0"), ("zstd", "-q", "-d"),
                ("zstd", "-q", "-t")),
        Variant("sh-pigz", f"pigz -p {nproc}", "pigz", ("pigz", "-p", str(nproc)), ("pigz", "-d"), ("pigz", "-t")),
    ]


@dataclass
class Case:
    phase: str  # backup | restore | verify
    kind: str  # zfsglacier | shell | stage
    name: str
    run: Callable[[], Moved]
    prepare: Callable[[], None] = _nothing
    cleanup: Callable[[], None] = _nothing
    stages: tuple[str, ...] = ()  # the stage cases it is made of: its efficiency is against the slowest
    remote: str | None = None  # the remote it moves data to or from
    variant: str | None = None  # Variant.key of the stream it moves
    samples: list[dict[str, Any]] = field(default_factory=list)

    def median(self, key: str) -> float | None:
        values = [s[key] for s in self.samples if s.get(key) is not None]
        return statistics.median(values) if values else None


@dataclass
class Bench:
    settings: E2ESettings
    source: Input
    remotes: dict[str, rig.Remote]
    work: Path
    daemons: dict[str, int]
    nproc: int
    files: dict[str, Path] = field(default_factory=dict)  # variant key -> the stream compressed that way

    @property
    def raw_size(self) -> int:
        return self.source.raw_stream.stat().st_size

    # --- preparation (not measured) ---------------------------------------------------------------------

    def prepare(self) -> None:
        for v in variants(self.nproc):
            path = self.files[v.key] = self.work / f"{v.key}.bin"
            with path.open("wb") as out:
                if v.compress is None:
                    compress_file(self.source.raw_stream, v.codec, self.nproc, out)
                else:
                    with self.source.raw_stream.open("rb") as raw:
                        subprocess.run(v.compress, stdin=raw, stdout=out, check=True)
            _say(f"prepared {v.label}: {path.stat().st_size} bytes")

    def config(self, remote: str, v: Variant) -> Path:
        path = self.work / f"{remote}-{v.key}.ini"
        if not path.exists():
            r = self.remotes[remote]
            path.write_text(
                f"[zfs]\ndataset = {self.source.dataset}\nsnapshot_prefix = {snapshot_prefix(self.settings)}\n"
                f"snapshot_retention = 1\n[rclone]\nremote = {r.name}\nbucket_name = {r.bucket}/{v.key}\n"
                f"config_path = {r.config_path}\n[compression]\ncompressor = {v.codec}\nlevel = default\n"
                "threads = auto\n"
            )
        return path

    def zfsglacier_env(self) -> dict[str, str]:
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
        return {**os.environ, "PATH": path, "ZFSGLACIER_LOCK_DIR": str(self.work / "locks")}

    def manifest(self, remote: str, v: Variant) -> dict[str, Any]:
        folder = self.remotes[remote].root / v.key / str(self.source.dataset)
        found = sorted(folder.glob("*.manifest.json"))
        if len(found) != 1:
            raise RuntimeError(f"expected one manifest in {folder}, found {len(found)}")
        manifest: dict[str, Any] = json.loads(found[0].read_text())
        return manifest

    # --- the cases ----------------------------------------------------------------------------------

    def stage_cases(self) -> list[Case]:
        raw, snapshot, target = self.source.raw_stream, self.source.snapshot, self.source.restore_target
        cases: list[Case] = []
        if snapshot:
            cases.append(
                Case(
                    "backup",
                    "stage",
                    "zfs send > pipe",
                    lambda: Moved(run_chain([[ZFS, "send", snapshot]], drain_output=True)),
                )
            )
        for v in variants(self.nproc):
            cases.append(Case("backup", "stage", f"compress: {v.label}", self._compress_alone(v), variant=v.key))
        for remote in self.remotes:
            for v in variants(self.nproc):
                cases.append(self._rcat_alone(remote, v))
        for remote in self.remotes:
            for v in variants(self.nproc):
                cases.append(self._cat_alone(remote, v))
        for v in variants(self.nproc):
            name = f"decompress: {self._decompressor(v)}"
            cases.append(Case("restore", "stage", name, self._decompress_alone(v), variant=v.key))
        if snapshot and target:

            def receive() -> Moved:
                run_chain([[ZFS, "receive", target]], source=raw)
                return Moved(self.raw_size)

            cases.append(Case("restore", "stage", "zfs receive < file", receive, cleanup=lambda: destroy(target)))
        return cases

    @staticmethod
    def _decompressor(v: Variant) -> str:
        return f"in-process {v.codec} reader" if v.decompress is None else " ".join(v.decompress)

    def _compress_alone(self, v: Variant) -> Callable[[], Moved]:
        raw = self.source.raw_stream
        if v.compress is None:

            def run() -> Moved:
                with open(os.devnull, "wb") as null:
                    return Moved(self.raw_size, compress_file(raw, v.codec, self.nproc, null))

            return run
        command = v.compress
        return lambda: Moved(self.raw_size, run_chain([command], source=raw, drain_output=True))

    def _decompress_alone(self, v: Variant) -> Callable[[], Moved]:
        stored = self.files[v.key]
        if v.decompress is None:
            return lambda: Moved(decompress_file(stored, v.codec), stored.stat().st_size)
        command = v.decompress
        return lambda: Moved(run_chain([command], source=stored, drain_output=True), stored.stat().st_size)

    def _rcat_alone(self, remote: str, v: Variant) -> Case:
        r, stored = self.remotes[remote], self.files[v.key]
        argv = r.argv("rcat", r.path(f"stage/{v.key}"))

        def rcat() -> Moved:
            run_chain([argv], source=stored)
            return Moved(self.raw_size, stored.stat().st_size)

        return Case(
            "backup",
            "stage",
            f"rclone rcat -> {remote}: {v.label} output",
            rcat,
            prepare=lambda: remove(r.root / "stage" / v.key),
            remote=remote,
            variant=v.key,
        )

    def _cat_alone(self, remote: str, v: Variant) -> Case:
        r = self.remotes[remote]
        argv = r.argv("cat", r.path(f"stage/{v.key}"))
        return Case(
            "restore",
            "stage",
            f"rclone cat <- {remote}: {v.label} output",
            lambda: Moved(self.raw_size, run_chain([argv], drain_output=True)),
            remote=remote,
            variant=v.key,
        )

    def end_to_end_cases(self) -> list[Case]:
        if not (self.source.snapshot and self.source.restore_target):
            return []
        cases: list[Case] = []
        for remote in self.remotes:
            for v in variants(self.nproc):
                cases += self._zfsglacier_cases(remote, v) if v.in_process else self._shell_cases(remote, v)
        return cases

    def _zfsglacier_cases(self, remote: str, v: Variant) -> list[Case]:
        r, config, env = self.remotes[remote], str(self.config(remote, v)), self.zfsglacier_env()
        target = str(self.source.restore_target)

        def moved(ran: Moved) -> Moved:
            m = self.manifest(remote, v)
            raw = m["raw_bytes"]
            return Moved(
                raw, m["stored_bytes"], ran.peak_rss_kib, stream_seconds(raw, ran.stream_rate), children=ran.children
            )

        def backup() -> Moved:
            return moved(run_zfsglacier(["backup", "--config", config, "--full"], env))

        def restore() -> Moved:
            return moved(run_zfsglacier(["restore", "--config", config, "--target-dataset", target, "--yes"], env))

        def verify() -> Moved:
            return moved(run_zfsglacier(["verify", "--config", config], env))

        codec = get_codec(v.codec)
        return [
            Case(
                "backup",
                "zfsglacier",
                f"zfsglacier backup {v.codec} -{codec.default_level} -> {remote}",
                backup,
                prepare=lambda: remove(r.root / v.key),
                stages=self._backup_stages(remote, v),
                remote=remote,
                variant=v.key,
            ),
            Case(
                "restore",
                "zfsglacier",
                f"zfsglacier restore {v.codec} <- {remote}",
                restore,
                cleanup=lambda: destroy(target),
                stages=self._restore_stages(remote, v),
                remote=remote,
                variant=v.key,
            ),
            Case(
                "verify",
                "zfsglacier",
                f"zfsglacier verify {v.codec} <- {remote}",
                verify,
                stages=self._verify_stages(remote, v),
                remote=remote,
                variant=v.key,
            ),
        ]

    @staticmethod
    def _backup_stages(remote: str, v: Variant) -> tuple[str, ...]:
        """The stage cases an end-to-end backup is compared with (by name)."""
        return ("zfs send > pipe", f"compress: {v.label}", f"rclone rcat -> {remote}: {v.label} output")

    def _restore_stages(self, remote: str, v: Variant) -> tuple[str, ...]:
        return (f"rclone cat <- {remote}: {v.label} output", f"decompress: {self._decompressor(v)}",
                "zfs receive < file")

    def _verify_stages(self, remote: str, v: Variant) -> tuple[str, ...]:
        return (f"rclone cat <- {remote}: {v.label} output", f"decompress: {self._decompressor(v)}")

    def _shell_cases(self, remote: str, v: Variant) -> list[Case]:
        assert v.compress is not None and v.decompress is not None and v.test is not None
        r, snapshot, target = self.remotes[remote], str(self.source.snapshot), str(self.source.restore_target)
        key = f"{v.key}/stream.zfs{get_codec(v.codec).suffix}"
        backup = [[ZFS, "send", snapshot], list(v.compress), r.argv("rcat", r.path(key))]
        restore = [r.argv("cat", r.path(key)), list(v.decompress), [ZFS, "receive", target]]
        verify = [r.argv("cat", r.path(key)), list(v.test)]

        def pipeline(stages: list[list[str]]) -> Callable[[], Moved]:
            def run() -> Moved:
                run_chain(stages)
                return Moved(self.raw_size, (r.root / key).stat().st_size, children=len(stages))

            return run

        return [
            Case(
                "backup",
                "shell",
                f"zfs send | {' '.join(v.compress)} | rclone rcat -> {remote}",
                pipeline(backup),
                prepare=lambda: remove(r.root / v.key),
                stages=self._backup_stages(remote, v),
                remote=remote,
                variant=v.key,
            ),
            Case(
                "restore",
                "shell",
                f"rclone cat <- {remote} | {' '.join(v.decompress)} | zfs receive",
                pipeline(restore),
                cleanup=lambda: destroy(target),
                stages=self._restore_stages(remote, v),
                remote=remote,
                variant=v.key,
            ),
            Case(
                "verify",
                "shell",
                f"rclone cat <- {remote} | {' '.join(v.test)}",
                pipeline(verify),
                stages=self._verify_stages(remote, v),
                remote=remote,
                variant=v.key,
            ),
        ]

    # --- measuring ----------------------------------------------------------------------------------

    def measure(self, case: Case, round_no: int) -> None:
        case.prepare()
        sync_disks()
        pids = list(self.daemons.values())
        each = {name: process_cpu(pid) for name, pid in self.daemons.items()}
        before = Usage.now(pids)
        moved = case.run()
        after = Usage.now(pids)
        each = {name: process_cpu(pid) - each[name] for name, pid in self.daemons.items()}
        case.cleanup()
        wall = after.wall - before.wall
        gb = moved.raw_bytes / GB
        sample = {
            "round": round_no,
            "raw_bytes": moved.raw_bytes,
            "stored_bytes": moved.stored_bytes,
            "wall_s": wall,
            "cpu_s": after.tree_cpu - before.tree_cpu,
            "daemon_cpu_s": after.daemon_cpu - before.daemon_cpu,
            "daemon_cpu_s_by": each,
            "mb_per_s": moved.raw_bytes / 1e6 / wall,
            "cpu_s_per_gb": (after.tree_cpu - before.tree_cpu) / gb,
            "daemon_cpu_s_per_gb": (after.daemon_cpu - before.daemon_cpu) / gb,
            "ratio": moved.raw_bytes / moved.stored_bytes if moved.stored_bytes else None,
            "peak_rss_mib": moved.peak_rss_kib / 1024 if moved.peak_rss_kib is not None else None,
            "children": moved.children,
            "stream_s": moved.stream_s,
            "overhead_s": wall - moved.stream_s if moved.stream_s is not None else None,
            "load1": os.getloadavg()[0],
        }
        case.samples.append(sample)
        _say(
            f"[{round_no + 1}/{self.settings.base.repeat}] {case.name:<58} {sample['mb_per_s']:8.1f} MB/s {wall:7.2f} s"
        )

    def run_all(self, cases: list[Case]) -> None:
        """Phase by phase (restores and verifies need the backups), every case once per round, so that load
        from elsewhere spreads over all cases."""
        for phase in PHASES:
            for round_no in range(self.settings.base.repeat):
                for case in (c for c in cases if c.phase == phase):
                    self.measure(case, round_no)


# --- report -------------------------------------------------------------------------------------------


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


# --- main ---------------------------------------------------------------------------------------------


_interrupted: list[str] = []


def _interrupt(signum: int, frame: FrameType | None) -> None:
    _interrupted.append(signal.Signals(signum).name)
    raise KeyboardInterrupt(_interrupted[-1])


def wan_remote(direct: rig.Remote, server: rig.S3Server, proxy: wan.Proxy, work: Path) -> rig.Remote:
    """`direct`'s bucket on the same server, through the proxy: an rclone config whose endpoint is the proxy."""
    config = work / "wan-rclone.conf"
    config.write_text(
        "[zgtwan]\ntype = s3\nprovider = Rclone\n"
        f"endpoint = {proxy.endpoint}\naccess_key_id = {server.access_key}\nsecret_access_key = {server.secret_key}\n"
    )
    return rig.Remote("wan", config, "zgtwan", direct.bucket, direct.root)


@contextlib.contextmanager
def _remotes(rclone: str, settings: E2ESettings, work: Path) -> Iterator[tuple[dict[str, rig.Remote], dict[str, int]]]:
    """The chosen remotes, in the order local, s3, wan, and the pids of the daemons serving them."""
    remotes: dict[str, rig.Remote] = {}
    daemons: dict[str, int] = {}
    with contextlib.ExitStack() as stack:
        if "local" in settings.remotes:
            remotes["local"] = stack.enter_context(rig.local_remote())
        if {"s3", "wan"} & set(settings.remotes):
            server = stack.enter_context(rig.s3_server(rclone))
            daemons["rclone serve s3"] = server.pid
            if "s3" in settings.remotes:
                remotes["s3"] = stack.enter_context(server.remote())
            if "wan" in settings.remotes:
                # Its log names the run's work dir, so a check for leftovers finds a proxy left running.
                proxy = stack.enter_context(wan.proxy(server.port, settings.wan_link, work / "wan-proxy.log"))
                daemons["wan proxy"] = proxy.pid
                remotes["wan"] = wan_remote(stack.enter_context(server.remote()), server, proxy, work)
        yield remotes, daemons


def run(settings: E2ESettings, stack: contextlib.ExitStack) -> dict[str, Any]:
    started, load_start = time.monotonic(), os.getloadavg()
    rclone = rig.find_tool("rclone")
    if rclone is None:
        raise RuntimeError("rclone not found (run scripts/bootstrap)")
    work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="zgbench-e2e-")))
    source = stack.enter_context(input_for(settings, work, _say))
    remotes, daemons = stack.enter_context(_remotes(rclone, settings, work))
    bench = Bench(settings, source, remotes, work, {**daemon_pids(), **daemons}, settings.base.nproc)
    bench.prepare()
    cases = bench.end_to_end_cases() + bench.stage_cases()
    bench.run_all(cases)
    meta: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "code": provenance.describe(),
        "machine": describe_machine(rclone),
        "settings": {
            "quick": settings.base.quick,
            "size_mib": settings.size_mib,
            "repeat": settings.base.repeat,
            "seed": settings.base.seed,
            "dataset": settings.dataset,
            "stream": str(settings.base.stream) if settings.base.stream else None,
            "nproc": bench.nproc,
            "remotes": list(settings.remotes),
        },
        "input": source.description,
        "snapshot": source.snapshot,
        "raw_stream_bytes": bench.raw_size,
        "repeat": settings.base.repeat,
        "daemons_measured": sorted(bench.daemons),
        "load_start": [round(x, 2) for x in load_start],
        "load_end": [round(x, 2) for x in os.getloadavg()],
        "wan": wan_meta(settings.wan_link, cases) if "wan" in remotes else None,
        "seconds": time.monotonic() - started,
    }
    text = summary(cases, meta)
    print(text)
    return record(cases, {**meta, "summary": text})


def main() -> int:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    settings = settings_from_env()
    stack = contextlib.ExitStack()
    try:
        data = run(settings, stack)
    except BaseException:
        if not _interrupted:
            raise
        # A child hit by the same Ctrl-C may have failed first: the interruption is the news.
        _say(f"interrupted ({_interrupted[0]}): stopping children, destroying what this run made")
        return 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # the cleanup below must finish
        stop_all()
        stack.close()
    kind = "-quick" if settings.base.quick else ""
    out = settings.base.out_dir / f"e2e-{time.strftime('%Y%m%d-%H%M%S')}-{socket.gethostname()}{kind}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {out}")
    if chart.available():
        print(f"wrote {chart.draw_e2e(data, out.with_suffix('.png'))}")
    else:
        print("matplotlib is not installed: no chart")
    return 0


if __name__ == "__main__":
    sys.exit(main())
