"""Running zfsglacier as a non-root user, with permissions delegated by `zfs allow` (OpenZFS).

Each test creates a system user of its own (useradd, removed again afterwards) and runs the CLI as that
user in a child process (setpriv). On zfs-fuse, whose daemon answers root only, the user is told to run
as root; on OpenZFS the missing permissions are listed before anything changes, and with them delegated
a backup, an incremental and a restore run as the user end to end.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import rig
from helpers import cli, dataset_exists, remote_files, snapshots, write_config

from zfsglacier.errors import EXIT_OK, EXIT_USAGE, EXIT_ZFS
from zfsglacier.zfs import capabilities, delegation

pytestmark = pytest.mark.integration


@pytest.fixture
def user() -> Iterator[str]:
    for tool in ("useradd", "userdel", "setpriv"):
        rig.need_tool(tool)
    name = f"zgt{secrets.token_hex(3)}"
    rig.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name])
    try:
        yield name
    finally:
        rig.run(["userdel", name], check=False)


@pytest.fixture
def shared(local_remote: rig.Remote) -> rig.Remote:
    """The local remote, opened up so that another user can read its config and write its objects."""
    workdir = local_remote.config_path.parent
    workdir.chmod(0o755)
    for folder in (workdir / "store", local_remote.root):
        folder.chmod(0o777)
    local_remote.config_path.chmod(0o644)
    return local_remote


@pytest.fixture
def home() -> Iterator[Path]:
    """A world-writable folder outside pytest's root-only temp tree: config, HOME and locks of the user."""
    folder = Path(tempfile.mkdtemp(prefix="zgt-user-"))
    folder.chmod(0o777)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def as_user(user: str, home: Path, *argv: str | Path) -> subprocess.CompletedProcess[str]:
    """`python -m zfsglacier ARGV` run as `user`, with this test run's PATH and PYTHONPATH."""
    env = {**os.environ, "HOME": str(home), "ZFSGLACIER_LOCK_DIR": str(home / "locks"),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), *sys.path[1:]])}
    return subprocess.run(
        [rig.need_tool("setpriv"), f"--reuid={user}", f"--regid={user}", "--init-groups",
         sys.executable, "-m", "zfsglacier", *map(str, argv)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=300, check=False)


def user_config(home: Path, dataset: str, remote: rig.Remote) -> Path:
    config = write_config(home, dataset, remote)
    config.chmod(0o644)
    return config


def test_a_user_without_delegated_permissions_is_refused_before_anything_changes(
    zpool: rig.Pool, shared: rig.Remote, user: str, home: Path,
) -> None:
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    rig.populate(zpool.path("data"), seed="nobody")
    config = user_config(home, dataset, shared)

    done = as_user(user, home, "backup", "--config", config)

    if rig.kernel_openzfs():
        assert done.returncode == EXIT_USAGE, done.stderr
        tools = capabilities.zfs_tools()
        needs = sorted(delegation.backup_needs(
            holds=tools.holds, bookmarks=tools.bookmarks and capabilities.pool_has_feature(zpool.name, "bookmarks")))
        assert (f"zfsglacier: error: user {user} lacks zfs permissions on {dataset} that backup needs: "
                f"{', '.join(needs)}; as root, delegate them with: zfs allow -u {user} {','.join(needs)} {dataset}"
                ) in done.stderr
    else:  # zfs-fuse's daemon refuses every client but root
        assert done.returncode == EXIT_ZFS, done.stderr
        assert f"zfsglacier: error: zfs allow: cannot read the permissions delegated on {dataset} as user {user} " \
               "(run zfsglacier as root" in done.stderr
    assert "Traceback" not in done.stderr
    assert snapshots(dataset) == []
    assert remote_files(shared) == []


def grant(user: str, permissions: str, dataset: str) -> None:
    rig.run(["zfs", "allow", "-u", user, permissions, dataset])


@dataclass(frozen=True)
class Layout:
    dataset: str  # backed up
    restores: str  # the parent of restore targets
    config: Path


@pytest.fixture
def layout(zpool: rig.Pool, shared: rig.Remote, home: Path) -> Layout:
    dataset, restores = zpool.dataset("data"), zpool.dataset("restores")
    for name in (dataset, restores):
        rig.run(["zfs", "create", name])
    rig.populate(zpool.path("data"), seed="delegated")
    return Layout(dataset, restores, user_config(home, dataset, shared))


@pytest.mark.openzfs
def test_a_delegated_user_backs_up_and_restores_and_is_told_to_mount_as_root(
    zpool: rig.Pool, layout: Layout, user: str, home: Path,
) -> None:
    dataset, restores, config = layout.dataset, layout.restores, layout.config
    grant(user, "snapshot,send,userprop,destroy,mount,hold,release,bookmark", dataset)
    grant(user, "create,mount,receive,rollback,userprop,destroy", restores)

    first = as_user(user, home, "backup", "--config", config)
    assert first.returncode == EXIT_OK, first.stderr
    rig.mutate(zpool.path("data"), seed="delegated-2")
    second = as_user(user, home, "backup", "--config", config)
    assert second.returncode == EXIT_OK, second.stderr
    assert ": incremental," in second.stderr
    taken = [s.partition("@")[2] for s in snapshots(dataset)]

    target = f"{restores}/copy"
    done = as_user(user, home, "restore", "--config", config, "--target-dataset", target, "--yes")

    assert done.returncode == EXIT_OK, done.stderr
    assert f"{target} is not mounted: mounting needs root: zfs mount {target}" in done.stderr
    assert [s.partition("@")[2] for s in snapshots(target)] == taken[-2:]
    assert rig.out(["zfs", "get", "-H", "-o", "value", "mounted", target]) == "no"
    rig.run(["zfs", "mount", target])
    mountpoint = Path(rig.out(["zfs", "get", "-H", "-o", "value", "mountpoint", target]))
    assert rig.tree_digest(mountpoint) == rig.tree_digest(zpool.path("data"))


@pytest.mark.openzfs
def test_a_restore_lists_the_permissions_missing_on_the_target_parent(layout: Layout, user: str, home: Path) -> None:
    restores, config = layout.restores, layout.config
    assert cli("backup", "--config", config) == EXIT_OK
    grant(user, "create,receive", restores)

    done = as_user(user, home, "restore", "--config", config, "--target-dataset", f"{restores}/copy", "--yes")

    assert done.returncode == EXIT_USAGE, done.stderr
    assert (f"user {user} lacks zfs permissions on {restores} that restore into {restores}/copy needs: "
            f"destroy, mount, rollback, userprop; as root, delegate them with: "
            f"zfs allow -u {user} destroy,mount,rollback,userprop {restores}") in done.stderr
    assert not dataset_exists(f"{restores}/copy")


def test_a_restore_by_a_user_without_permissions_says_what_to_do_before_anything_changes(
    layout: Layout, user: str, home: Path,
) -> None:
    restores, config = layout.restores, layout.config
    assert cli("backup", "--config", config) == EXIT_OK

    done = as_user(user, home, "restore", "--config", config, "--target-dataset", f"{restores}/copy", "--yes")

    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("zfsglacier: error:")]
    assert len(errors) == 1, done.stderr
    if rig.kernel_openzfs():
        assert done.returncode == EXIT_USAGE, done.stderr
        assert f"user {user} lacks zfs permissions on {restores} that restore into {restores}/copy needs" \
            in errors[0]
    else:  # zfs-fuse's daemon refuses every client but root, from the first zfs command on
        assert done.returncode == EXIT_ZFS, done.stderr
        assert "(zfs-fuse's daemon answers root only: run zfsglacier as root)" in errors[0], errors[0]
    assert not dataset_exists(f"{restores}/copy")
