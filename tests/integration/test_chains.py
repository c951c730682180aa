"""Chains under changes made behind zfsglacier's back: the base snapshot destroyed locally, snapshots
with our prefix made by hand, two backups in one second, a clock set back. Every chain still restores,
compared file by file with what was backed up."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import rig
from helpers import cli, destroy_snapshot_on_purpose, list_json, snapshots, write_config

from zfsglacier.errors import EXIT_CHAIN
from zfsglacier.zfs.cmd import PENDING_PROPERTY, new_pending_mark

pytestmark = pytest.mark.integration
PREFIX = "glacier-backup-"


@pytest.fixture(autouse=True)
def _lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))


def make_dataset(pool: rig.Pool, seed: str) -> tuple[str, Path]:
    dataset = pool.dataset("data")
    rig.run(["zfs", "create", dataset])
    rig.populate(pool.path("data"), seed=seed, n_files=16)
    return dataset, pool.path("data")


def short_names(dataset: str) -> list[str]:
    """The dataset's snapshots, oldest first by creation txg."""
    out = rig.out(["zfs", "get", "-Hp", "-d", "1", "-o", "name,value", "createtxg", dataset])
    txgs = {name: int(value) for name, value in (line.split("\t") for line in out.splitlines())
            if name.startswith(dataset + "@")}
    assert sorted(txgs) == sorted(snapshots(dataset))
    return [name.partition("@")[2] for name in sorted(txgs, key=txgs.__getitem__)]


def backup_logged(config: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    """Run a backup that must succeed; its log (stderr)."""
    capsys.readouterr()
    assert cli("backup", "--config", config, *extra) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error:" not in err, err
    return err


def restored_digest(pool: rig.Pool, config: Path, target: str, snapshot: str | None = None) -> dict[str, str]:
    argv = ["restore", "--config", config, "--target-dataset", pool.dataset(target), "--yes"]
    assert cli(*argv, *(["--snapshot", snapshot] if snapshot else [])) == 0
    return rig.tree_digest(pool.path(target))


class FrozenClock:
    """Stands in for zfsglacier.commands.backup._now: returns whatever time the test sets."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def freeze_clock(monkeypatch: pytest.MonkeyPatch, now: datetime) -> FrozenClock:
    clock = FrozenClock(now)
    monkeypatch.setattr("zfsglacier.commands.backup._now", clock)
    return clock


def test_base_destroyed_locally(zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    dataset, files = make_dataset(zpool, "base-gone")
    config = write_config(tmp_path, dataset, local_remote)
    digests = []
    for round_number in range(2):
        rig.mutate(files, seed=round_number)
        backup_logged(config, capsys)
        digests.append(rig.tree_digest(files))
    s1, s2 = (str(r["snapshot"]) for r in list_json(config, capsys))

    # The newest base is gone: an older committed snapshot still serves as base, and the log says why.
    destroy_snapshot_on_purpose(f"{dataset}@{s2}")
    rig.mutate(files, seed=2)
    err = backup_logged(config, capsys)
    assert f"incremental from {s1} ({s2}, the newest backed-up snapshot, no longer exists locally)" in err
    digests.append(rig.tree_digest(files))
    third = list_json(config, capsys)[2]
    assert (third["kind"], third["base"]) == ("incremental", s1)

    # Every committed snapshot is gone: the next backup is a full, and says so as a warning.
    for name in short_names(dataset):
        destroy_snapshot_on_purpose(f"{dataset}@{name}")
    rig.mutate(files, seed=3)
    err = backup_logged(config, capsys)
    assert f"full: the snapshot of the newest committed backup, {third['snapshot']}, no longer exists " \
           "locally, nor any other of the 3 backed up" in err
    digests.append(rig.tree_digest(files))
    records = list_json(config, capsys)
    assert [(r["kind"], r["base"]) for r in records] == [
        ("full", None), ("incremental", s1), ("incremental", s1), ("full", None)]
    assert short_names(dataset) == [records[3]["snapshot"]]

    assert restored_digest(zpool, config, "newest") == digests[3]
    for position in (1, 2):  # both branches from s1 still restore
        assert restored_digest(zpool, config, f"r{position}", str(records[position]["snapshot"])) \
            == digests[position]


def test_foreign_snapshots_with_our_prefix(zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    dataset, files = make_dataset(zpool, "foreign")
    config = write_config(tmp_path, dataset, local_remote, retention=1)
    backup_logged(config, capsys)
    first = list_json(config, capsys)[0]
    # Made by hand after the backup, so newer than it: a plain name with our prefix, and two in our exact
    # timestamp form, one dated before any backup and one dated far after.
    rig.mutate(files, seed="hand")
    foreign = [f"{PREFIX}manual", f"{PREFIX}20200101T000000Z", f"{PREFIX}29991231T235959Z"]
    for name in foreign:
        rig.run(["zfs", "snapshot", f"{dataset}@{name}"])

    capsys.readouterr()
    assert cli("backup", "--config", config, "--dry-run") == 0
    plan = capsys.readouterr().out
    assert f"# incremental from {first['snapshot']}" in plan
    assert not any(name in line for line in plan.splitlines() if " destroy " in line for name in foreign)

    for round_number in range(3):
        rig.mutate(files, seed=round_number)
        backup_logged(config, capsys)
    records = list_json(config, capsys)
    # Never a base: each incremental builds on the previous committed backup, by guid.
    assert [r["base"] for r in records] == [None] + [r["snapshot"] for r in records[:-1]]
    assert records[1]["base"] == first["snapshot"]
    # Never pruned (retention 1 kept only the newest of ours), never listed as a backup.
    assert short_names(dataset) == [*foreign, records[-1]["snapshot"]]
    assert not {str(r["snapshot"]) for r in records} & set(foreign)
    for name in foreign:
        capsys.readouterr()
        assert cli("restore", "--config", config, "--target-dataset", zpool.dataset("x"), "--yes",
                   "--snapshot", name) == EXIT_CHAIN
        assert f"snapshot {name!r} has no committed backup on the remote" in capsys.readouterr().err
    assert restored_digest(zpool, config, "r") == rig.tree_digest(files)


def test_two_backups_in_the_same_second(zpool: rig.Pool, rclone_remote: rig.Remote, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    dataset, files = make_dataset(zpool, "same-second")
    config = write_config(tmp_path, dataset, rclone_remote)
    freeze_clock(monkeypatch, datetime(2026, 11, 26, 7, 5, 9, tzinfo=UTC))
    digests = []
    for round_number, extra in enumerate([(), (), ("--full",)]):
        rig.mutate(files, seed=round_number)
        backup_logged(config, capsys, *extra)
        digests.append(rig.tree_digest(files))
    records = list_json(config, capsys)
    names = [f"{PREFIX}20261126T070509Z", f"{PREFIX}20261126T070509Z-1", f"{PREFIX}20261126T070509Z-2"]
    assert [r["snapshot"] for r in records] == names
    assert [r["base"] for r in records] == [None, names[0], None]
    assert short_names(dataset) == names
    assert restored_digest(zpool, config, "r0", names[0]) == digests[0]
    assert restored_digest(zpool, config, "r1", names[1]) == digests[1]
    assert restored_digest(zpool, config, "r2") == digests[2]


def test_clock_set_back(zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path,
                        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    dataset, files = make_dataset(zpool, "clock")
    config = write_config(tmp_path, dataset, local_remote, retention=2)
    clock = freeze_clock(monkeypatch, datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC))
    digests = []
    # In run order: noon, then the clock jumps back to 11:00 and runs on to 11:30.
    for round_number, hour_minute in enumerate([(12, 0), (11, 0), (11, 30)]):
        clock.now = clock.now.replace(hour=hour_minute[0], minute=hour_minute[1])
        rig.mutate(files, seed=round_number)
        backup_logged(config, capsys)
        digests.append(rig.tree_digest(files))
    records = list_json(config, capsys)
    names = [f"{PREFIX}20261126T120000Z", f"{PREFIX}20261126T110000Z", f"{PREFIX}20261126T113000Z"]
    # Listed in the order they were made (creation txg), each based on the one made before it.
    assert [r["snapshot"] for r in records] == names
    assert [r["base"] for r in records] == [None, names[0], names[1]]
    assert [r["created"] for r in records] == [
        "2026-11-26T12:00:00+00:00", "2026-11-26T11:00:00+00:00", "2026-11-26T11:30:00+00:00"]
    # Retention 2 pruned the truly oldest, although its name sorts last.
    assert short_names(dataset) == names[1:]

    clock.now = clock.now.replace(hour=10)  # further back still: the base is the newest by txg
    rig.mutate(files, seed=3)
    backup_logged(config, capsys)
    digests.append(rig.tree_digest(files))
    newest = list_json(config, capsys)[-1]
    assert (newest["snapshot"], newest["base"]) == (f"{PREFIX}20261126T103000Z", names[2])
    assert short_names(dataset) == [names[2], newest["snapshot"]]

    # Back to noon: that name is pruned locally but still a backup on the remote, which must stay intact.
    clock.now = clock.now.replace(hour=12, minute=0)
    rig.mutate(files, seed=4)
    backup_logged(config, capsys)
    digests.append(rig.tree_digest(files))
    assert list_json(config, capsys)[-1]["snapshot"] == f"{names[0]}-1"
    assert restored_digest(zpool, config, "newest") == digests[4]
    assert restored_digest(zpool, config, "first", names[0]) == digests[0]
    assert restored_digest(zpool, config, "second", names[1]) == digests[1]


def test_a_pending_mark_set_by_hand_is_warned_about_never_destroyed(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset, files = make_dataset(zpool, "marked")
    config = write_config(tmp_path, dataset, local_remote)
    backup_logged(config, capsys)
    # Named as zfsglacier names its own, and marked pending, but with a value zfsglacier never writes; beside
    # it a true leftover of a killed run, with a mark as a backup writes it.
    by_hand, leftover = f"{dataset}@{PREFIX}20200101T000000Z", f"{dataset}@{PREFIX}20200102T000000Z"
    rig.run(["zfs", "snapshot", "-o", f"{PENDING_PROPERTY}=yes", by_hand])
    rig.run(["zfs", "snapshot", "-o", f"{PENDING_PROPERTY}={new_pending_mark()}", leftover])

    rig.mutate(files, seed="marked")
    said = backup_logged(config, capsys)
    assert f"{by_hand} carries {PENDING_PROPERTY}=yes, a value zfsglacier never writes: not taking it for a " \
           "leftover" in said
    assert f"destroying {leftover}: left uncommitted by an interrupted run" in said
    assert by_hand in snapshots(dataset) and leftover not in snapshots(dataset)
    records = list_json(config, capsys)
    assert [r["kind"] for r in records] == ["full", "incremental"]
