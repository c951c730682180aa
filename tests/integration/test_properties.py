"""Dataset properties come back with a restore: each backup records the properties set on the dataset
itself, and a restore of a full and an incremental sets the newest backup's on the target (with
`zfs receive -o` where zfs has it, else `zfs set` after the chain). The mountpoint only with
--keep-mountpoint, so that a restore never mounts over the live dataset. Runs on zfs-fuse and, in
make test-openzfs, on OpenZFS (where acltype is one of the properties too)."""

from __future__ import annotations

from pathlib import Path

import pytest
import rig
from helpers import cli, list_json, write_config

pytestmark = pytest.mark.integration

# Set on the dataset before the full; the incremental then changes and drops some of them.
BEFORE_FULL = {"compression": "gzip", "recordsize": "32768", "atime": "off", "xattr": "off", "quota": "104857600",
               "com.example:owner": "alice", "com.example:keep": "yes"}
BEFORE_INCREMENTAL = {"com.example:owner": "bob", "compression": "gzip-9"}
DROPPED = ("atime", "com.example:keep")  # inherited again before the incremental


@pytest.fixture(autouse=True)
def _lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))


def knows(dataset: str, prop: str) -> bool:
    return rig.run(["zfs", "get", "-H", "-o", "value", prop, dataset], check=False).returncode == 0


def own(dataset: str) -> dict[str, str]:
    out = rig.out(["zfs", "get", "-H", "-p", "-s", "local,received", "-o", "property,value", "all", dataset])
    return {name: value for name, _, value in (line.partition("\t") for line in out.splitlines())
            if not name.startswith("org.zfsglacier:")}


def test_properties_survive_a_full_and_incremental_restore_and_the_mountpoint_stays_put(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    dataset = zpool.dataset("data")
    live_mount = tmp_path / "live-mount"
    rig.run(["zfs", "create", "-o", f"mountpoint={live_mount}", dataset])
    wanted = dict(BEFORE_FULL)
    if knows(dataset, "acltype"):  # OpenZFS on Linux: POSIX ACLs are enforced only with acltype=posix
        wanted["acltype"] = "posix"
    for name, value in wanted.items():
        rig.run(["zfs", "set", f"{name}={value}", dataset])
    config = write_config(tmp_path, dataset, local_remote)
    rig.populate(live_mount / "one", seed="props-1", n_files=6)
    assert cli("backup", "--config", config) == 0
    for name, value in BEFORE_INCREMENTAL.items():
        rig.run(["zfs", "set", f"{name}={value}", dataset])
    for name in DROPPED:
        rig.run(["zfs", "inherit", name, dataset])
    rig.populate(live_mount / "two", seed="props-2", n_files=6)
    assert cli("backup", "--config", config) == 0
    expected = own(dataset)
    assert expected["mountpoint"] == str(live_mount) and "atime" not in expected

    records = list_json(config, capsys)
    assert records[-1]["properties"] == expected
    assert {k: v for k, v in records[0]["properties"].items() if k != "mountpoint"} == \
        {k: v for k, v in wanted.items()}  # type: ignore[union-attr]

    target = zpool.dataset("restored")
    capsys.readouterr()
    assert cli("restore", "--config", config, "--target-dataset", target, "--yes") == 0
    said = capsys.readouterr().err
    assert f"properties set on {target}, as {records[-1]['snapshot']} recorded them: " in said
    assert f"not set: mountpoint={live_mount}  (--keep-mountpoint sets mountpoint too)" in said
    restored = own(target)
    assert {k: v for k, v in restored.items() if k != "mountpoint"} == \
        {k: v for k, v in expected.items() if k != "mountpoint"}
    assert rig.out(["zfs", "get", "-H", "-o", "value", "mountpoint", target]).strip() != str(live_mount)
    mounted = Path(rig.out(["zfs", "get", "-H", "-o", "value", "mountpoint", target]).strip())
    assert rig.tree_digest(mounted) == rig.tree_digest(live_mount)

    # --keep-mountpoint: the path the backup recorded (the live dataset has moved away from it).
    rig.run(["zfs", "set", f"mountpoint={tmp_path / 'moved'}", dataset])
    again = zpool.dataset("again")
    assert cli("restore", "--config", config, "--target-dataset", again, "--yes", "--keep-mountpoint") == 0
    assert own(again)["mountpoint"] == str(live_mount)
    assert rig.tree_digest(live_mount) == rig.tree_digest(tmp_path / "moved")


def test_the_dry_run_shows_how_the_properties_are_set(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", "-o", "compression=gzip", "-o", "com.example:owner=alice", dataset])
    config = write_config(tmp_path, dataset, local_remote)
    assert cli("backup", "--config", config) == 0
    capsys.readouterr()
    assert cli("restore", "--config", config, "--target-dataset", zpool.dataset("r"), "--dry-run") == 0
    out = capsys.readouterr().out
    if "-o compression=gzip" in out:  # zfs receive -o (OpenZFS)
        assert "-o com.example:owner=alice" in out
    else:  # zfs-fuse: zfs set once the chain is received
        assert f"zfs set compression=gzip {zpool.dataset('r')}" in out
        assert f"zfs set com.example:owner=alice {zpool.dataset('r')}" in out
