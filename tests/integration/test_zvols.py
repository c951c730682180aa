"""zvols, as Proxmox VE keeps every VM disk (`rpool/data/vm-100-disk-0`): a tree of a filesystem and two
zvols (one sparse, one with volmode=dev) written with random bytes, backed up recursively (one atomic
snapshot), full and incremental; one zvol restored alone, the whole tree restored, every restored block
device compared byte for byte with the original, and verify --deep. zfs-fuse has no zvols: this runs in
make test-openzfs (the VMs with OpenZFS 2.1 and 2.3), or natively on a host with kernel OpenZFS."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import rig
from helpers import cli, list_json, write_config

pytestmark = [pytest.mark.integration, pytest.mark.openzfs]

MiB = 1 << 20


@pytest.fixture(autouse=True)
def _lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))


def device(zvol: str, timeout: float = 60) -> Path:
    """The zvol's block device: udev's /dev/zvol link, else the /dev/zdN that zvol_id (the helper udev's rule
    runs) names. The zfs module makes a zvol's minor asynchronously: wait for it."""
    link = Path("/dev/zvol") / zvol
    helper = next((p for p in (Path("/lib/udev/zvol_id"), Path("/usr/lib/udev/zvol_id")) if p.exists()), None)
    deadline = time.monotonic() + timeout
    while True:
        rig.run(["udevadm", "settle"], check=False)
        if link.exists():
            return link
        for node in sorted(Path("/dev").glob("zd*")):
            if helper is not None and node.name[2:].isdigit():
                named = rig.run([str(helper), str(node)], check=False).stdout.decode(errors="replace").strip()
                if named == zvol:
                    return node
        if time.monotonic() > deadline:
            nodes = sorted(p.name for p in Path("/dev").glob("zd*"))
            raise AssertionError(f"no block device for {zvol} after {timeout:g} s: /dev/zvol "
                                 f"{'exists' if Path('/dev/zvol').exists() else 'is missing'}, /dev/zd*: {nodes}, "
                                 f"zvol_id: {helper}")
        time.sleep(0.5)


def write_at(zvol: str, offset: int, size: int) -> None:
    with open(device(zvol), "r+b") as disk:
        disk.seek(offset)
        disk.write(os.urandom(size))
        disk.flush()
        os.fsync(disk.fileno())


def device_bytes(zvol: str) -> bytes:
    return device(zvol).read_bytes()


def newest_snapshot(dataset: str) -> str:
    return rig.out(["zfs", "list", "-H", "-o", "name", "-t", "snapshot", "-s", "createtxg", "-d", "1",
                    dataset]).split()[-1]


def prop(dataset: str, name: str) -> str:
    return rig.out(["zfs", "get", "-H", "-p", "-o", "value", name, dataset]).strip()


def test_a_tree_of_zvols_backs_up_and_restores_byte_for_byte(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    top = zpool.dataset("vms")
    rig.run(["zfs", "create", top])
    rig.populate(zpool.path("vms"), seed="vm-config", n_files=4)
    disk0, disk1 = f"{top}/vm-100-disk-0", f"{top}/vm-100-disk-1"
    rig.run(["zfs", "create", "-V", "8M", "-o", "volmode=dev", disk0])
    rig.run(["zfs", "create", "-s", "-V", "16M", disk1])  # sparse: no refreservation
    write_at(disk0, 0, 3 * MiB)
    write_at(disk1, 8 * MiB, 1 * MiB)
    config = write_config(tmp_path, top, local_remote)
    config.write_text(config.read_text().replace(f"dataset = {top}\n", f"dataset = {top}\nrecursive = yes\n"))
    assert cli("backup", "--config", config) == 0
    write_at(disk0, 4 * MiB, 1 * MiB)
    write_at(disk1, 0, 512 * 1024)
    assert cli("backup", "--config", config) == 0

    kinds: dict[str, list[str]] = {}
    for record in list_json(config, capsys):
        kinds.setdefault(str(record["dataset"]), []).append(str(record["kind"]))
    assert kinds == {name: ["full", "incremental"] for name in (top, disk0, disk1)}
    txgs = {prop(newest_snapshot(name), "createtxg") for name in (top, disk0, disk1)}
    assert len(txgs) == 1, f"the tree's newest snapshots share one txg: {txgs}"

    # One VM disk alone.
    alone = zpool.dataset("disk-copy")
    assert cli("restore", "--config", config, "--dataset", disk0, "--target-dataset", alone, "--yes") == 0
    assert device_bytes(alone) == device_bytes(disk0)
    assert prop(alone, "volsize") == prop(disk0, "volsize") == str(8 * MiB)
    assert prop(alone, "volmode") == "dev"
    assert prop(alone, "refreservation") == prop(disk0, "refreservation") != "0", "not sparse, as the original"

    # The whole tree: the filesystem, then each disk below it.
    copy = zpool.dataset("vms-copy")
    assert cli("restore", "--config", config, "--dataset", top, "--target-dataset", copy, "--yes") == 0
    for disk in (disk0, disk1):
        leaf = disk.rpartition("/")[2]
        assert cli("restore", "--config", config, "--dataset", disk, "--target-dataset", f"{copy}/{leaf}",
                   "--yes") == 0
        assert device_bytes(f"{copy}/{leaf}") == device_bytes(disk)
    assert rig.tree_digest(Path(prop(copy, "mountpoint"))) == rig.tree_digest(zpool.path("vms"))
    assert prop(f"{copy}/vm-100-disk-1", "refreservation") == prop(disk1, "refreservation"), "sparse, as the original"

    capsys.readouterr()
    assert cli("verify", "--config", config, "--dataset", disk1, "--deep") == 0
    assert "received into" in capsys.readouterr().out
