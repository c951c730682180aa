"""Remote retention on real ZFS and rclone: `zfsglacier prune` and the prune after each backup delete
whole chains only, newest backup first, index before manifests before data; what is kept restores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import rig
from helpers import cli, list_json, remote_files, write_config

pytestmark = pytest.mark.integration

START = datetime(2026, 1, 5, 3, 15, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """One clock for snapshot names, manifests' `created` and prune's ages."""
    clock = Clock(START)
    monkeypatch.setattr("zfsglacier.commands.backup._now", clock)
    monkeypatch.setattr("zfsglacier.commands.prune._now", clock)
    return clock


def config_with(tmp_path: Path, dataset: str, remote: rig.Remote, sections: str, extra_rclone: str = "") -> Path:
    config = write_config(tmp_path, dataset, remote)
    config.write_text(config.read_text().replace("[compression]", f"{extra_rclone}{sections}[compression]"))
    return config


def daily_backups(zpool: rig.Pool, config: Path, clock: Clock, days: int, source: Path) -> None:
    for _ in range(days):
        rig.populate(source / f"day{clock.now:%j}", seed=f"prune-{clock.now:%j}", n_files=3)
        assert cli("backup", "--config", config) == 0
        clock.now += timedelta(days=1)


def test_keep_chains_after_each_backup_deletes_whole_old_chains_and_the_rest_restores(
    zpool: rig.Pool, rclone_remote: rig.Remote, tmp_path: Path, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    source = zpool.path("data")
    config = config_with(tmp_path, dataset, rclone_remote, "[chain]\nfull_every = 2\n[retention]\nkeep_chains = 2\n")
    daily_backups(zpool, config, clock, 5, source)  # chains: [d1 d2] [d3 d4] [d5]
    records = list_json(config, capsys)
    assert [r["kind"] for r in records] == ["full", "incremental", "full"], "the first chain was pruned"
    kept = {str(r["object"]).rpartition("/")[2] for r in records}
    stored = set(remote_files(rclone_remote)) if rclone_remote.kind == "local" else None
    if stored is not None:
        data = {name.rpartition("/")[2] for name in stored if ".zfs" in name}
        assert data == kept, "the pruned chain's data objects are gone, and only those"

    target = zpool.dataset("restored")
    assert cli("restore", "--config", config, "--target-dataset", target, "--yes") == 0
    assert rig.tree_digest(zpool.path("restored")) == rig.tree_digest(source)
    target = zpool.dataset("older")
    assert cli("restore", "--config", config, "--target-dataset", target, "--yes",
               "--snapshot", str(records[1]["snapshot"])) == 0


def test_max_age_and_dry_run(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    source = zpool.path("data")
    plain = write_config(tmp_path, dataset, local_remote)
    plain.write_text(plain.read_text().replace("[compression]", "[chain]\nfull_every = 2\n[compression]"))
    daily_backups(zpool, plain, clock, 4, source)  # [d1 d2] [d3 d4], no retention yet
    before = remote_files(local_remote)
    aged = tmp_path / "aged.ini"
    aged.write_text(plain.read_text().replace("[compression]", "[retention]\nmax_age = 30d\n[compression]"))

    clock.now += timedelta(days=28)  # the first chain's newest backup (the second day's) is now 31 days old
    capsys.readouterr()
    assert cli("prune", "--config", aged, "--dry-run") == 0
    out, err = capsys.readouterr()
    everything = list_json(plain, capsys)
    first = everything[:2]
    assert remote_files(local_remote) == before, "a dry run changes nothing"
    for record in reversed(first):
        assert f"deletefile {record['object']}" in out
    assert out.index(str(first[1]["snapshot"])) < out.index(str(first[0]["snapshot"])), "newest backup first"
    assert "its newest backup is 31 days old ([retention] max_age = 30d)" in err

    assert cli("prune", "--config", aged) == 0
    remaining = list_json(plain, capsys)
    assert [r["snapshot"] for r in remaining] == [r["snapshot"] for r in everything[2:]]
    assert remaining[0]["kind"] == "full"
    index = (local_remote.root / dataset / "zfsglacier.index.json").read_text()
    assert str(first[0]["snapshot"]) not in index, "the index no longer copies the pruned manifests"

    # Much later, the remaining chain is old too, but the newest chain is never deleted.
    clock.now += timedelta(days=400)
    assert cli("prune", "--config", aged) == 0
    assert len(list_json(plain, capsys)) == 2


def test_prune_removes_orphans_and_warns_about_early_deletion_in_deep_archive(
    zpool: rig.Pool, moto_remote: rig.Remote, tmp_path: Path, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    config = config_with(tmp_path, dataset, moto_remote, "[chain]\nfull_every = 1\n",
                         extra_rclone="storage_class = DEEP_ARCHIVE\n")
    daily_backups(zpool, config, clock, 2, zpool.path("data"))
    orphan = moto_remote.path(f"{dataset}/glacier-backup-20260101T000000Z.full.zfs.zst")
    rig.run(moto_remote.argv("rcat", orphan), input=b"left by a killed upload")
    keep_one = tmp_path / "keep-one.ini"
    keep_one.write_text(config.read_text().replace("[compression]", "[retention]\nkeep_chains = 1\n[compression]"))
    first = list_json(config, capsys)[0]

    capsys.readouterr()
    assert cli("prune", "--config", keep_one) == 0
    err = capsys.readouterr().err
    assert "removing" in err and "a data object without a manifest is not a backup" in err
    assert f"{first['object']} is in DEEP_ARCHIVE, stored 2 days ago: it is billed for 178 more days" in err
    assert len(list_json(config, capsys)) == 1
    listed = rig.out(moto_remote.argv("lsf", moto_remote.path(dataset)))
    assert "20260101T000000Z" not in listed and str(first["snapshot"]) not in listed


def test_a_prune_cut_off_midway_leaves_restorable_backups_and_the_next_prune_finishes(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, clock: Clock, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from zfsglacier.errors import EXIT_REMOTE, RemoteError
    from zfsglacier.remote.rclone import Rclone

    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    source = zpool.path("data")
    plain = write_config(tmp_path, dataset, local_remote)
    plain.write_text(plain.read_text().replace("[compression]", "[chain]\nfull_every = 3\n[compression]"))
    daily_backups(zpool, plain, clock, 4, source)  # [d1 d2 d3] [d4]
    everything = list_json(plain, capsys)
    keep_one = tmp_path / "keep-one.ini"
    keep_one.write_text(plain.read_text().replace("[compression]", "[retention]\nkeep_chains = 1\n[compression]"))

    real_delete = Rclone.delete
    deleted: list[str] = []

    def delete_twice_then_fail(self: Rclone, path: str, why: str = "") -> None:
        if len(deleted) == 2:
            raise RemoteError("rclone deletefile", f"deleting {path} failed (exit 1)", "connection reset")
        deleted.append(path)
        real_delete(self, path, why)

    monkeypatch.setattr(Rclone, "delete", delete_twice_then_fail)
    assert cli("prune", "--config", keep_one) == EXIT_REMOTE
    # The newest backup of the doomed chain went (manifest, then data); what is left is a prefix of it.
    assert [p.rpartition("/")[2] for p in deleted] == [f"{everything[2]['snapshot']}.manifest.json",
                                                        str(everything[2]["object"]).rpartition("/")[2]]
    left = list_json(plain, capsys)
    assert [r["snapshot"] for r in left] == [everything[i]["snapshot"] for i in (0, 1, 3)]
    older = zpool.dataset("older")
    assert cli("restore", "--config", plain, "--target-dataset", older, "--yes",
               "--snapshot", str(everything[1]["snapshot"])) == 0

    monkeypatch.setattr(Rclone, "delete", real_delete)
    assert cli("prune", "--config", keep_one) == 0
    assert [r["snapshot"] for r in list_json(plain, capsys)] == [everything[3]["snapshot"]]
    assert sorted(p.name for p in (local_remote.root / dataset).iterdir()) == sorted(
        [f"{everything[3]['snapshot']}.manifest.json", str(everything[3]["object"]).rpartition("/")[2],
         "zfsglacier.index.json"])
