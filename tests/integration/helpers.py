"""Shared pieces of the integration tests: configs, running the CLI, watching its children."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import rig

from zfsglacier.cli import main


def write_config(tmp_path: Path, dataset: str, remote: rig.Remote, compressor: str = "zstd",
                 retention: int = 7, extra: str = "") -> Path:
    path = tmp_path / f"config-{compressor}.ini"
    path.write_text(
        # The smallest ranges: objects of 2 MiB or more are read as parallel ranges (stream/ranged_reads.py).
        "[restore]\nrange_size = 1M\n"
        f"[zfs]\ndataset = {dataset}\nsnapshot_prefix = glacier-backup-\nsnapshot_retention = {retention}\n"
        f"[rclone]\nremote = {remote.name}\nbucket_name = {remote.bucket}\nconfig_path = {remote.config_path}\n"
        f"[compression]\ncompressor = {compressor}\n{extra}"
    )
    return path


def cli(*argv: str | Path) -> int:
    return main([str(a) for a in argv])


def list_json(config: Path, capsys) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    capsys.readouterr()
    assert cli("list", "--config", config, "--json") == 0
    records: list[dict[str, object]] = json.loads(capsys.readouterr().out)
    return records


def snapshots(dataset: str) -> list[str]:
    out = rig.out(["zfs", "list", "-H", "-o", "name", "-t", "snapshot", "-r", dataset])
    return [line for line in out.splitlines() if line.startswith(dataset + "@")]


def dataset_exists(name: str) -> bool:
    return rig.run(["zfs", "list", "-H", "-o", "name", name], check=False).returncode == 0


def remote_files(remote: rig.Remote) -> list[str]:
    return sorted(str(p.relative_to(remote.root)) for p in remote.root.rglob("*") if p.is_file())


def start_cli(*argv: str | Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "zfsglacier", *map(str, argv)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})


def children(pid: int) -> dict[int, str]:
    """Direct children of a process: pid -> command line."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rpartition(")")[2].split()[1])
            if ppid == pid:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
    return found


def wait_for_child(pid: int, needle: str, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child, cmdline in children(pid).items():
            if needle in cmdline:
                return child
        time.sleep(0.01)
    raise AssertionError(f"no child of {pid} matching {needle!r} within {timeout} s")


def back_up_a_chain(pool: rig.Pool, remote: rig.Remote, workdir: Path, seed: str, n_files: int,
                    backups: int = 3) -> tuple[str, Path]:
    """Dataset `data` of `pool` with a full and `backups - 1` incrementals (files changed between them)
    on `remote`; returns the dataset and its config."""
    dataset = pool.dataset("data")
    rig.run(["zfs", "create", dataset])
    rig.populate(pool.path("data"), seed=seed, n_files=n_files)
    config = write_config(workdir, dataset, remote, "zstd")
    for round_number in range(backups):
        if round_number:
            rig.mutate(pool.path("data"), seed=round_number)
        if cli("backup", "--config", config) != 0:
            raise AssertionError(f"backup {round_number + 1} of {backups} failed")
    return dataset, config


def error_line(capsys) -> str:  # type: ignore[no-untyped-def]
    """The one `zfsglacier: error:` line of what was printed since the last read (no traceback)."""
    err: str = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("zfsglacier: error:")]
    assert len(errors) == 1, err
    return errors[0]


def destroy_snapshot_on_purpose(name: str, timeout: float = 30, keep_bookmark: bool = False) -> None:
    """What an admin does to drop a snapshot zfsglacier uses as its base: release zfsglacier's hold,
    then destroy. zfs-fuse often answers the first destroy with "busy": retry until it is gone.
    On OpenZFS the bookmark zfsglacier made of it would still serve as the base: it goes too, unless
    `keep_bookmark` (zfs-fuse has no bookmarks)."""
    assert "@" in name
    if not keep_bookmark and rig.kernel_openzfs():
        rig.run(["zfs", "destroy", name.replace("@", "#", 1)], check=False)  # there may be none
    rig.run(["zfs", "release", "zfsglacier", name], check=False)  # only the base carries it
    deadline = time.monotonic() + timeout
    while True:
        result = rig.run(["zfs", "destroy", name], check=False)
        if result.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise rig.CommandFailed(["zfs", "destroy", name], result)
        time.sleep(0.2)
