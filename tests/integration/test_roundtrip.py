"""Full and incremental backups restored bit-identically, for every compressor, on both remotes."""

from __future__ import annotations

from pathlib import Path

import pytest
import rig
from helpers import cli, dataset_exists, destroy_snapshot_on_purpose, list_json, remote_files, snapshots, write_config

from zfsglacier.codec.registry import CODECS
from zfsglacier.errors import EXIT_LOCK_BUSY
from zfsglacier.lock import DatasetLock
from zfsglacier.remote.manifest_index import INDEX_NAME
from zfsglacier.remote.manifest_index import decode as index_decode
from zfsglacier.zfs import capabilities

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))


@pytest.mark.parametrize("compressor", sorted(CODECS))
def test_full_and_incrementals_round_trip(
    compressor: str, zpool: rig.Pool, rclone_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    source = zpool.path("data")
    rig.populate(source, seed=compressor)
    config = write_config(tmp_path, dataset, rclone_remote, compressor)

    states: list[dict[str, str]] = []
    for round_number in range(4):
        if round_number:
            rig.mutate(source, seed=f"{compressor}-{round_number}")
        assert cli("backup", "--config", config) == 0
        states.append(rig.tree_digest(source))  # nothing changes the tree between snapshot and here
    assert len({tuple(sorted(s.items())) for s in states}) == 4, "every round changed the tree"

    records = list_json(config, capsys)
    assert [r["kind"] for r in records] == ["full", "incremental", "incremental", "incremental"]
    assert [r["base"] for r in records] == [None] + [r["snapshot"] for r in records[:-1]]
    assert {r["compressor"] for r in records} == {compressor}
    for record in records:
        for key in ("dataset", "snapshot", "guid", "raw_bytes", "stored_bytes", "sha256", "created", "object"):
            assert key in record
        assert record["dataset"] == dataset
        assert str(record["object"]).endswith(".zfs" + CODECS[compressor].suffix)
    local = snapshots(dataset)
    assert [s.partition("@")[2] for s in local] == [r["snapshot"] for r in records]

    assert cli("restore", "--config", config, "--target-dataset", zpool.dataset("newest"), "--yes") == 0
    assert rig.tree_digest(zpool.path("newest")) == states[-1]
    assert [s.partition("@")[2] for s in snapshots(zpool.dataset("newest"))] == [r["snapshot"] for r in records]

    middle = str(records[1]["snapshot"])
    assert cli("restore", "--config", config, "--target-dataset", zpool.dataset("middle"),
               "--snapshot", middle, "--yes") == 0
    assert rig.tree_digest(zpool.path("middle")) == states[1]
    assert [s.partition("@")[2] for s in snapshots(zpool.dataset("middle"))] == [
        r["snapshot"] for r in records[:2]
    ]

    # Every object on the remote belongs to a committed backup (data and manifest), plus the index
    # that copies those manifests, nothing else.
    files = remote_files(rclone_remote)
    assert len(files) == 2 * len(records) + 1
    assert f"{dataset}/{INDEX_NAME}" in files
    indexed = index_decode((rclone_remote.root / dataset / INDEX_NAME).read_bytes())
    assert sorted(indexed) == sorted(f"{r['snapshot']}.manifest.json" for r in records)
    for name, text in indexed.items():
        assert (rclone_remote.root / dataset / name).read_bytes() == text


def test_retention_prunes_only_own_snapshots_and_keeps_the_base(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    rig.populate(zpool.path("data"), seed="retention")
    rig.run(["zfs", "snapshot", f"{dataset}@glacier-backup-manual"])  # someone else's, same prefix
    config = write_config(tmp_path, dataset, local_remote, retention=2)
    for round_number in range(4):
        rig.mutate(zpool.path("data"), seed=round_number)
        assert cli("backup", "--config", config) == 0
    records = list_json(config, capsys)
    kept = [s.partition("@")[2] for s in snapshots(dataset)]
    assert kept == ["glacier-backup-manual", str(records[-2]["snapshot"]), str(records[-1]["snapshot"])]
    assert [r["kind"] for r in records] == ["full", "incremental", "incremental", "incremental"]
    # The remote keeps every backup: retention here is about local snapshots only.
    assert cli("restore", "--config", config, "--target-dataset", zpool.dataset("r"), "--yes") == 0
    assert rig.tree_digest(zpool.path("r")) == rig.tree_digest(zpool.path("data"))


def test_full_flag_and_a_lost_base_start_a_new_chain(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    rig.populate(zpool.path("data"), seed="chains")
    config = write_config(tmp_path, dataset, local_remote, retention=0)
    assert cli("backup", "--config", config) == 0
    assert cli("backup", "--config", config, "--full") == 0
    first, second = list_json(config, capsys)
    assert (first["kind"], second["kind"]) == ("full", "full")
    # The base snapshot disappears locally: the next backup cannot be an incremental on it.
    destroy_snapshot_on_purpose(f"{dataset}@{second['snapshot']}")
    rig.mutate(zpool.path("data"), seed="after-loss")
    assert cli("backup", "--config", config) == 0
    third = list_json(config, capsys)[-1]
    assert third["kind"] == "incremental" and third["base"] == first["snapshot"]
    destroy_snapshot_on_purpose(f"{dataset}@{first['snapshot']}")
    destroy_snapshot_on_purpose(f"{dataset}@{third['snapshot']}")
    assert cli("backup", "--config", config) == 0
    assert list_json(config, capsys)[-1]["kind"] == "full"


def test_dry_run_changes_nothing_and_prints_the_pipeline(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    config = write_config(tmp_path, dataset, local_remote)
    capsys.readouterr()
    assert cli("backup", "--config", config, "--dry-run") == 0
    out = capsys.readouterr().out
    assert f"zfs snapshot -o org.zfsglacier:pending=DRY-RUN {dataset}@glacier-backup-" in out
    flags = "".join(f"{flag} " for flag in capabilities.send_options(capabilities.zfs_tools()))  # -L -e on OpenZFS
    assert f"zfs send {flags}{dataset}@glacier-backup-" in out and "| zstd -q -3 -T" in out and " rcat " in out
    assert snapshots(dataset) == []
    assert remote_files(local_remote) == []
    assert not dataset_exists(zpool.dataset("nothing"))


def test_a_second_backup_of_a_busy_dataset_exits_with_lock_busy(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    config = write_config(tmp_path, dataset, local_remote)
    with DatasetLock(dataset, "backup"):
        capsys.readouterr()
        assert cli("backup", "--config", config) == EXIT_LOCK_BUSY
        err = capsys.readouterr().err
        assert f"error: {dataset} is busy: another zfsglacier run holds" in err
    assert snapshots(dataset) == []
    assert cli("backup", "--config", config) == 0


def test_names_with_spaces_and_punctuation_go_through_argv_untouched(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = zpool.dataset("my data.v1:x")
    rig.run(["zfs", "create", dataset])
    rig.populate(zpool.path("my data.v1:x"), seed="names")
    config = tmp_path / "odd.ini"
    config.write_text(
        f"[zfs]\ndataset = {dataset}\nsnapshot_prefix = nightly backup.\n"
        f"[rclone]\nremote = {local_remote.name}\nbucket_name = {local_remote.bucket}/sub dir\n"
        f"config_path = {local_remote.config_path}\n"
    )
    assert cli("backup", "--config", config) == 0
    rig.mutate(zpool.path("my data.v1:x"), seed="names")
    assert cli("backup", "--config", config) == 0
    records = list_json(config, capsys)
    assert [r["kind"] for r in records] == ["full", "incremental"]
    assert str(records[0]["snapshot"]).startswith("nightly backup.")
    assert cli("restore", "--config", config, "--target-dataset", zpool.dataset("re stored"), "--yes") == 0
    assert rig.tree_digest(zpool.path("re stored")) == rig.tree_digest(zpool.path("my data.v1:x"))


def test_adaptive_level_round_trip(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    rig.populate(zpool.path("data"), seed="auto", n_files=60)
    config = write_config(tmp_path, dataset, local_remote, "zstd", extra="level = auto\n")
    assert cli("backup", "--config", config) == 0
    rig.mutate(zpool.path("data"), seed="auto")
    assert cli("backup", "--config", config) == 0
    records = list_json(config, capsys)
    assert [r["level"] for r in records] == ["auto", "auto"]
    assert cli("restore", "--config", config, "--target-dataset", zpool.dataset("r"), "--yes") == 0
    assert rig.tree_digest(zpool.path("r")) == rig.tree_digest(zpool.path("data"))
