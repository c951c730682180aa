"""Several datasets in one config, and recursive backups: each dataset its own chain, restorable alone;
one dataset failing does not stop the others, and the exit code says so."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import rig
from helpers import cli, error_line, list_json, snapshots, write_config

from zfsglacier import cli as cli_module
from zfsglacier import proc
from zfsglacier.commands import status
from zfsglacier.errors import EXIT_REMOTE, EXIT_USAGE, EXIT_ZFS

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))


def config_for(tmp_path: Path, datasets: list[str], remote: rig.Remote, extra_zfs: str = "") -> Path:
    config = write_config(tmp_path, datasets[0], remote)
    listed = "\n    ".join(datasets)
    config.write_text(config.read_text().replace(f"dataset = {datasets[0]}\n", f"dataset = {listed}\n{extra_zfs}"))
    return config


def make(pool: rig.Pool, name: str, seed: str) -> str:
    dataset = pool.dataset(name)
    rig.run(["zfs", "create", dataset])
    rig.populate(pool.path(name), seed=seed, n_files=6)
    return dataset


def test_a_failing_dataset_does_not_stop_the_others_and_each_restores_alone(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = make(zpool, "first", "one"), make(zpool, "second", "two")
    missing = zpool.dataset("missing")
    config = config_for(tmp_path, [first, missing, second], local_remote)
    capsys.readouterr()
    assert cli("backup", "--config", config) == EXIT_ZFS
    err = capsys.readouterr().err
    assert f"zfsglacier: error: {missing}: zfs get: dataset {missing} does not exist" in err
    assert f"zfsglacier: error: 1 of 3 datasets failed: {missing} (exit 3: a zfs command failed)" in err
    assert len(snapshots(first)) == len(snapshots(second)) == 1

    records = list_json(config, capsys)
    assert sorted(str(r["dataset"]) for r in records) == [first, second]

    target = zpool.dataset("restored")
    assert cli("restore", "--config", config, "--target-dataset", target, "--yes") == EXIT_USAGE
    assert "choose one with --dataset" in error_line(capsys)
    assert cli("restore", "--config", config, "--dataset", zpool.dataset("other"), "--target-dataset", target,
               "--yes") == EXIT_USAGE
    assert "--dataset" in error_line(capsys)
    assert cli("restore", "--config", config, "--dataset", second, "--target-dataset", target, "--yes") == 0
    assert rig.tree_digest(zpool.path("restored")) == rig.tree_digest(zpool.path("second"))

    capsys.readouterr()
    assert cli("list", "--config", config, "--dataset", first, "--json") == 0


def test_recursive_backs_up_each_child_as_its_own_chain(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    top = make(zpool, "data", "top")
    left = make(zpool, "data/left", "left")
    right = make(zpool, "data/right", "right")
    deep = make(zpool, "data/right/deep", "deep")
    config = config_for(tmp_path, [top], local_remote, "recursive = yes\n")
    assert cli("backup", "--config", config) == 0
    rig.mutate(zpool.path("data/left"), seed="left-2")
    assert cli("backup", "--config", config) == 0

    records = list_json(config, capsys)
    by_dataset: dict[str, list[str]] = {}
    for record in records:
        by_dataset.setdefault(str(record["dataset"]), []).append(str(record["kind"]))
    assert by_dataset == {name: ["full", "incremental"] for name in (top, left, right, deep)}

    capsys.readouterr()
    assert cli("verify", "--config", config) == 0
    out = capsys.readouterr().out
    assert out.count("OK ") >= 4, out

    # Each child restores alone, from its own chain.
    assert cli("restore", "--config", config, "--dataset", left, "--target-dataset", zpool.dataset("left-copy"),
               "--yes") == 0
    assert rig.tree_digest(zpool.path("left-copy")) == rig.tree_digest(zpool.path("data/left"))
    assert cli("restore", "--config", config, "--dataset", deep, "--target-dataset", zpool.dataset("deep-copy"),
               "--yes") == 0
    assert rig.tree_digest(zpool.path("deep-copy")) == rig.tree_digest(zpool.path("data/right/deep"))
    assert len(snapshots(right)) == 2


def createtxgs(datasets: list[str]) -> dict[str, set[str]]:
    """Each dataset's snapshots' creation txgs (zfs get -Hp createtxg)."""
    found: dict[str, set[str]] = {}
    for dataset in datasets:
        for snapshot in snapshots(dataset):
            txg = rig.out(["zfs", "get", "-Hp", "-o", "value", "createtxg", snapshot]).strip()
            found.setdefault(snapshot.partition("@")[2], set()).add(txg)
    return found


def test_a_tree_is_snapshotted_at_one_instant_and_a_failing_child_leaves_the_others_committed(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    top = make(zpool, "vm", "top")
    disks = [make(zpool, f"vm/disk-{n}", f"disk-{n}") for n in range(3)]
    tree = [top, *disks]
    config = config_for(tmp_path, [top], local_remote, "recursive = yes\n")
    capsys.readouterr()
    assert cli("backup", "--config", config, "--dry-run") == 0
    out = capsys.readouterr().out
    assert f"# one atomic snapshot of the tree under {top} (4 dataset(s)), each then sent alone:" in out
    taken = [line for line in out.splitlines() if "zfs snapshot" in line]
    assert len(taken) == 1 and taken[0].startswith("zfs snapshot -r ") and f"{top}@" in taken[0]
    assert all(snapshots(d) == [] for d in tree)

    assert cli("backup", "--config", config) == 0
    by_name = createtxgs(tree)
    assert len(by_name) == 1 and len(next(iter(by_name.values()))) == 1, f"one name, one txg: {by_name}"

    # The remote refuses one child's object: a file where its folder would be.
    blocked = local_remote.root / disks[1]
    shutil.move(blocked, tmp_path / "set-aside")
    blocked.write_text("not a folder")
    for n in range(3):
        rig.mutate(zpool.path(f"vm/disk-{n}"), seed=f"disk-{n}-2")
    capsys.readouterr()
    assert cli("backup", "--config", config) == EXIT_REMOTE
    err = capsys.readouterr().err
    assert f"zfsglacier: error: 1 of 4 datasets failed: {disks[1]} (exit 4: " in err.splitlines()[-1]
    assert len(snapshots(disks[1])) == 1, "the failed child's new snapshot is destroyed"
    second = createtxgs([top, disks[0], disks[2]])
    assert len(second) == 2 and all(len(txgs) == 1 for txgs in second.values()), second
    blocked.unlink()
    shutil.move(tmp_path / "set-aside", blocked)
    records = list_json(config, capsys)
    kinds: dict[str, list[str]] = {}
    for record in records:
        kinds.setdefault(str(record["dataset"]), []).append(str(record["kind"]))
    assert kinds == {top: ["full", "incremental"], disks[0]: ["full", "incremental"], disks[1]: ["full"],
                     disks[2]: ["full", "incremental"]}


def test_atomic_no_snapshots_each_dataset_on_its_own(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    top = make(zpool, "db", "top")
    log_dataset = make(zpool, "db/log", "log")
    config = config_for(tmp_path, [top], local_remote, "recursive = yes\natomic = no\n")
    capsys.readouterr()
    assert cli("backup", "--config", config, "--dry-run") == 0
    out = capsys.readouterr().out
    assert "atomic snapshot" not in out and out.count("zfs snapshot -o") == 2
    assert cli("backup", "--config", config) == 0
    assert len(snapshots(top)) == len(snapshots(log_dataset)) == 1


def test_list_and_status_of_a_tree_read_the_remote_once_not_once_per_dataset(
    zpool: rig.Pool, rclone_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    top = make(zpool, "tree", "top")
    config = config_for(tmp_path, [top], rclone_remote, "recursive = yes\n")

    def rclone_calls(*argv: str) -> int:
        calls: list[str] = []
        real = proc.run

        def counting(stage: str, command: Sequence[str], **kwargs: Any) -> proc.Result:
            if Path(command[0]).name == "rclone":
                calls.append(" ".join(command[1:4]))
            return real(stage, command, **kwargs)

        monkeypatch.setattr(proc, "run", counting)
        capsys.readouterr()
        try:
            code = status.run(config, out=lambda line: None) if argv[0] == "status" else cli(*argv, "--config", config)
        finally:
            monkeypatch.setattr(proc, "run", real)
        assert code == 0, capsys.readouterr()
        return len(calls)

    counts = {}
    for size in (3, 6):
        while len(zfs_tree(top)) < size:
            make(zpool, f"tree/child-{len(zfs_tree(top))}", f"child-{len(zfs_tree(top))}")
        assert cli("backup", "--config", config) == 0
        counts[size] = (rclone_calls("list", "--json"), rclone_calls("status"))
    assert counts[3] == counts[6], f"rclone calls for 3 and 6 datasets: {counts}"
    assert max(counts[6]) <= 4, counts

    # What the tree's one listing gives is what each dataset's own listing gives.
    records = list_json(config, capsys)
    monkeypatch.setattr(cli_module, "load_catalogs", lambda targets, tops, rclone: {})  # each loaded alone
    assert list_json(config, capsys) == records


def zfs_tree(top: str) -> list[str]:
    return rig.out(["zfs", "list", "-H", "-o", "name", "-r", top]).split()
