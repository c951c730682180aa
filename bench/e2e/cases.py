"""The cases of `python -m bench.e2e` (zfsglacier, the shell pipelines it replaces, each stage alone)
and how one is measured: wall time, CPU of the process tree and of the daemons, what it moved. Over 300
lines: one class holds every case of a run, since they share its remotes, its stream and the stream's
compressed forms."""


from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.wan import process_cpu
from zfsglacier.codec.registry import get_codec

from .run import (
    Moved,
    Usage,
    compress_file,
    decompress_file,
    run_chain,
    run_zfsglacier,
    stream_seconds,
)
from .setup import (
    ZFS,
    E2ESettings,
    Input,
    destroy,
    remove,
    rig,
    snapshot_prefix,
    sync_disks,
)

GB = 1e9
PHASES = ("backup", "restore", "verify")


def say(line: str) -> None:
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
            say(f"prepared {v.label}: {path.stat().st_size} bytes")

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
        config, env = str(self.config(remote, v)), self.zfsglacier_env()
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
        names = (f"zfsglacier backup {v.codec} -{codec.default_level} -> {remote}",
                 f"zfsglacier restore {v.codec} <- {remote}", f"zfsglacier verify {v.codec} <- {remote}")
        return self._phase_cases("zfsglacier", remote, v, names, (backup, restore, verify))

    def _phase_cases(self, kind: str, remote: str, v: Variant, names: tuple[str, str, str],
                     runs: tuple[Callable[[], Moved], Callable[[], Moved], Callable[[], Moved]]) -> list[Case]:
        """The backup, restore and verify of `v` on `remote` by `kind` (zfsglacier or shell): the backup
        starts from an empty folder, the restored dataset is destroyed after each restore, and each case
        is compared with its stages alone."""
        r, target = self.remotes[remote], str(self.source.restore_target)
        stages = (self._backup_stages(remote, v), self._restore_stages(remote, v), self._verify_stages(remote, v))
        return [
            Case("backup", kind, names[0], runs[0], prepare=lambda: remove(r.root / v.key), stages=stages[0],
                 remote=remote, variant=v.key),
            Case("restore", kind, names[1], runs[1], cleanup=lambda: destroy(target), stages=stages[1],
                 remote=remote, variant=v.key),
            Case("verify", kind, names[2], runs[2], stages=stages[2], remote=remote, variant=v.key),
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

        names = (f"zfs send | {' '.join(v.compress)} | rclone rcat -> {remote}",
                 f"rclone cat <- {remote} | {' '.join(v.decompress)} | zfs receive",
                 f"rclone cat <- {remote} | {' '.join(v.test)}")
        return self._phase_cases("shell", remote, v, names, (pipeline(backup), pipeline(restore), pipeline(verify)))

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
        say(
            f"[{round_no + 1}/{self.settings.base.repeat}] {case.name:<58} {sample['mb_per_s']:8.1f} MB/s {wall:7.2f} s"
        )

    def run_all(self, cases: list[Case]) -> None:
        """Phase by phase (restores and verifies need the backups), every case once per round, so that load
        from elsewhere spreads over all cases."""
        for phase in PHASES:
            for round_no in range(self.settings.base.repeat):
                for case in (c for c in cases if c.phase == phase):
                    self.measure(case, round_no)
