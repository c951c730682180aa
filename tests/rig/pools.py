"""File-backed ZFS pools, uniquely named, in a temp dir, destroyed after."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .tools import POOL_PREFIX, CommandFailed, run

VDEV_SIZE = 512 * 1024 * 1024


@dataclass(frozen=True)
class Pool:
    name: str
    mountpoint: Path

    def dataset(self, child: str) -> str:
        return f"{self.name}/{child}"

    def path(self, child: str) -> Path:
        """Where a child dataset is mounted (children inherit the pool's mountpoint)."""
        return self.mountpoint / child


def pool_exists(name: str) -> bool:
    return run(["zpool", "list", "-H", "-o", "name", name], check=False).returncode == 0


def _mounts_under(folder: Path) -> list[str]:
    prefix = str(folder) + "/"
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        points = [line.split()[1].replace("\\040", " ") for line in mounts]
    return [point for point in points if point.startswith(prefix)]


def destroy_pool(name: str, timeout: float = 30) -> None:
    # zfs-fuse often answers "pool is busy" to the first destroy of a pool that was just used (always
    # when it has child datasets: it is still unmounting them); a retry a moment later succeeds.
    deadline = time.monotonic() + timeout
    while True:
        result = run(["zpool", "destroy", "-f", name], check=False)
        if result.returncode == 0 or not pool_exists(name):
            return
        if time.monotonic() > deadline:
            raise CommandFailed(["zpool", "destroy", "-f", name], result)
        time.sleep(0.2)


@contextlib.contextmanager
def file_pool(size: int = VDEV_SIZE) -> Iterator[Pool]:
    """A new pool on a sparse file in a temp dir, mounted there; destroyed with its files afterwards."""
    name = POOL_PREFIX + secrets.token_hex(4)
    if pool_exists(name):  # someone else's pool: never touch it
        raise RuntimeError(f"pool {name} already exists")
    workdir = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    vdev, mountpoint = workdir / "vdev", workdir / "mnt"
    try:
        with open(vdev, "wb") as file:
            file.truncate(size)
        run(["zpool", "create", "-m", mountpoint, name, vdev])
        yield Pool(name, mountpoint)
    finally:
        try:
            if pool_exists(name):
                destroy_pool(name)
        finally:
            # Never delete through a live mount: that would empty a pool, not remove files.
            leftover = _mounts_under(workdir)
            if leftover:
                raise RuntimeError(f"pool {name}: still mounted, not removing {workdir}: {leftover}")
            shutil.rmtree(workdir, ignore_errors=True)
