"""What the end-to-end benchmark runs on: its settings, the input (a throwaway pool holding a generated
corpus, the user's dataset, or a saved stream), the zfs calls it makes, and the machine."""

from __future__ import annotations

import contextlib
import io
import os
import random
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench import machine, wan
from bench.corpus import write_corpus
from bench.settings import MIB, Settings, from_env
from tests import rig  # the test rig (re-exported): file-backed pools, `rclone serve s3`
from zfsglacier.lock import DatasetLock
from zfsglacier.zfs import cmd as zfs_mod

KIB = 1 << 10
ZFS = rig.find_tool("zfs") or "zfs"
Say = Callable[[str], None]
REMOTES = ("local", "s3", "wan")  # wan: the s3 server through bench.wan's proxy


@dataclass(frozen=True)
class E2ESettings:
    base: Settings  # BENCH_QUICK, BENCH_REPEAT, BENCH_STREAM, BENCH_SEED, BENCH_OUT
    size_mib: int  # BENCH_E2E_SIZE
    dataset: str | None  # BENCH_DATASET
    token: str  # unique to this run: names of snapshots, folders and datasets it makes
    remotes: tuple[str, ...] = REMOTES  # BENCH_E2E_REMOTES
    wan_link: wan.Link = field(default_factory=wan.Link.of)  # BENCH_WAN_MBPS, _RTT_MS, _HANDSHAKE_RTTS


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


def remotes_from_env() -> tuple[str, ...]:
    raw = os.environ.get("BENCH_E2E_REMOTES", "").strip()
    if not raw:
        return REMOTES
    chosen = {name.strip() for name in raw.split(",") if name.strip()}
    if not chosen or chosen - set(REMOTES):
        raise ValueError(f"BENCH_E2E_REMOTES={raw}: a comma-separated list of {', '.join(REMOTES)}")
    return tuple(name for name in REMOTES if name in chosen)


def settings_from_env() -> E2ESettings:
    base = from_env()
    raw_size = os.environ.get("BENCH_E2E_SIZE", "").strip()
    size = int(raw_size) if raw_size else 64 if base.quick else 1024
    if size < 1:
        raise ValueError(f"BENCH_E2E_SIZE must be at least 1, not {size}")
    dataset = os.environ.get("BENCH_DATASET", "").strip() or None
    if dataset and base.stream:
        raise ValueError("give BENCH_DATASET or BENCH_STREAM, not both")
    link = wan.Link.of(
        _float("BENCH_WAN_MBPS", wan.DEFAULT_MBPS),
        _float("BENCH_WAN_RTT_MS", wan.DEFAULT_RTT_MS),
        _float("BENCH_WAN_HANDSHAKE_RTTS", wan.DEFAULT_HANDSHAKE_RTTS),
    )
    return E2ESettings(base, size, dataset, secrets.token_hex(3), remotes_from_env(), link)


@dataclass(frozen=True)
class Input:
    description: str
    raw_stream: Path  # the full `zfs send` stream of `snapshot`, saved once (or BENCH_STREAM)
    snapshot: str | None  # None: a saved stream, no zfs stage runs
    dataset: str | None
    restore_target: str | None  # a dataset name that does not exist; each restore is destroyed after


# --- zfs ---------------------------------------------------------------------------------------------


def zfs(*args: str) -> str:
    done = subprocess.run([ZFS, *args], capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"zfs {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def exists(dataset: str) -> bool:
    return subprocess.run([ZFS, "list", "-H", "-o", "name", dataset], capture_output=True, check=False).returncode == 0


def destroy(name: str, timeout: float = 120) -> None:
    """`zfs destroy -r` a dataset or snapshot this run made; zfs-fuse answers "busy" for a moment after use."""
    deadline = time.monotonic() + timeout
    while exists(name):
        done = subprocess.run([ZFS, "destroy", "-r", name], capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"zfs destroy -r {name}: {done.stderr.strip()}")
        time.sleep(0.5)


def snapshot_prefix(settings: E2ESettings) -> str:
    """zfsglacier's snapshot prefix in this run's configs: unique, so the cleanup touches nothing else."""
    return f"bench-e2e-{settings.token}-"


# --- the generated corpus ----------------------------------------------------------------------------


def write_tree(root: Path, size: int, seed: int) -> int:
    """`size` bytes of files under `root`: 7/8 in big files (4-32 MiB, each bench.corpus's mix of text,
    random and deflated data, zeros and record-like data), 1/8 in many small files (a few KiB each, in
    256 directories). Returns the number of small files."""
    rng = random.Random(seed)
    big = size - size // 8
    (root / "big").mkdir(parents=True)
    written = index = 0
    while written < big:
        with (root / "big" / f"file-{index:04d}.bin").open("wb") as out:
            written += write_corpus(out, min(big - written, rng.randint(4 * MIB, 32 * MIB)), seed + 1 + index)
        index += 1
    blob = io.BytesIO()
    write_corpus(blob, size - big, seed - 1)
    data = blob.getbuffer()
    at = count = 0
    while at < len(data):
        length = min(int(rng.expovariate(1 / (6 * KIB))) + 1, 64 * KIB, len(data) - at)
        folder = root / "small" / f"d{count % 256:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{count:06d}").write_bytes(data[at : at + length])
        at += length
        count += 1
    return count


def _save_stream(snapshot: str, path: Path) -> None:
    with path.open("wb") as out:
        process = subprocess.run([ZFS, "send", snapshot], stdout=out, stderr=subprocess.PIPE, check=False)
    if process.returncode != 0:
        raise RuntimeError(f"zfs send {snapshot} exited {process.returncode}: {process.stderr.decode().strip()}")


@contextlib.contextmanager
def generated_input(settings: E2ESettings, work: Path, say: Say) -> Iterator[Input]:
    size = settings.size_mib * MIB
    with rig.file_pool(max(4 * size, 512 * MIB) + 256 * MIB) as pool:
        dataset = pool.dataset("data")
        zfs("create", dataset)
        started = time.monotonic()
        files = write_tree(pool.path("data"), size, settings.base.seed)
        say(
            f"corpus: {settings.size_mib} MiB, {files} small files, written into {dataset} "
            f"in {time.monotonic() - started:.0f} s"
        )
        snapshot = f"{dataset}@bench-e2e-{time.strftime('%Y%m%dT%H%M%S')}"
        zfs("snapshot", snapshot)
        _save_stream(snapshot, work / "raw.zfs")
        yield Input(
            f"generated corpus, {settings.size_mib} MiB ({files} small files, seed {settings.base.seed}) "
            f"in a file-backed pool",
            work / "raw.zfs",
            snapshot,
            dataset,
            pool.dataset("restored"),
        )


@contextlib.contextmanager
def dataset_input(settings: E2ESettings, work: Path) -> Iterator[Input]:
    """The user's dataset: its newest snapshot, or one made here and destroyed after. zfsglacier's
    snapshots get this run's own prefix and are destroyed after; the real zfsglacier lock on the
    dataset is held throughout, so no real backup runs on it meanwhile."""
    dataset = settings.dataset
    assert dataset is not None
    target = f"{dataset.split('/')[0]}/bench-e2e-restore-{settings.token}"
    if exists(target):
        raise RuntimeError(f"{target} exists: not touching it")
    made: str | None = None
    with DatasetLock(dataset, "benchmark"):
        try:
            snapshots = zfs_mod.list_snapshots(dataset)
            if snapshots:
                snapshot = snapshots[-1].name
            else:
                made = snapshot = f"{dataset}@bench-e2e-{time.strftime('%Y%m%dT%H%M%S')}"
                zfs("snapshot", made)
            _save_stream(snapshot, work / "raw.zfs")
            yield Input(f"dataset {dataset}, snapshot {snapshot}", work / "raw.zfs", snapshot, dataset, target)
        finally:
            destroy(target)
            prefix = f"{dataset}@{snapshot_prefix(settings)}"
            for leftover in zfs_mod.list_snapshots(dataset):
                if leftover.name.startswith(prefix) or leftover.name == made:
                    destroy(leftover.name)


@contextlib.contextmanager
def input_for(settings: E2ESettings, work: Path, say: Say) -> Iterator[Input]:
    if settings.base.stream is not None:
        yield Input(
            f"saved stream {settings.base.stream}: only the stages that need no zfs run",
            settings.base.stream,
            None,
            None,
            None,
        )
    elif settings.dataset is not None:
        with dataset_input(settings, work) as found:
            yield found
    else:
        with generated_input(settings, work, say) as found:
            yield found


# --- the machine -------------------------------------------------------------------------------------


def daemon_pids() -> dict[str, int]:
    """The zfs-fuse daemon, if that is the ZFS here (kernel OpenZFS works in kernel threads instead)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "zfs-fuse":
                    return {"zfs-fuse": int(entry.name)}
    return {}


def zfs_flavour() -> str:
    version = Path("/sys/module/zfs/version")
    if version.exists():
        return f"OpenZFS kernel module {version.read_text().strip()}"
    if daemon_pids():
        done = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "zfs-fuse"], capture_output=True, text=True, check=False
        )
        return f"zfs-fuse {done.stdout.strip() or '(version unknown)'} (userspace ZFS, pool version 23)"
    return "unknown"


def describe_machine(rclone: str) -> dict[str, str | int | float]:
    version = subprocess.run([rclone, "version"], capture_output=True, text=True, check=False).stdout
    return {**machine.describe(), "zfs": zfs_flavour(), "rclone": (version.splitlines() or ["unknown"])[0]}


def remove(path: Path) -> None:
    """Empty a bucket folder or remove one object, on the filesystem behind the remote."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def sync_disks() -> None:
    """Flush dirty pages before a measured run, so that no run pays for the writes of the one before."""
    os.sync()
