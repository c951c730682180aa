"""Runs at the same time: a second backup of a dataset whose backup is mid-stream is refused by the
dataset's lock and changes nothing; a backup of a dataset while a restore of its backups runs into
another dataset both succeed."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import rig
from helpers import cli, list_json, remote_files, snapshots, start_cli, wait_for_child, write_config

from zfsglacier.errors import EXIT_LOCK_BUSY
from zfsglacier.lock import DatasetLock

pytestmark = pytest.mark.integration


@pytest.fixture
def lock_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))
    return {"ZFSGLACIER_LOCK_DIR": str(tmp_path / "locks")}


def make_dataset(pool: rig.Pool, random_bytes: int) -> tuple[str, Path]:
    dataset = pool.dataset("data")
    rig.run(["zfs", "create", dataset])
    rig.populate(pool.path("data"), seed="concurrency")
    # Random data does not compress: the stream is as long as this, enough to stop a stage mid-stream.
    (pool.path("data") / "big.bin").write_bytes(os.urandom(random_bytes))
    return dataset, pool.path("data")


def finish(process) -> str:  # type: ignore[no-untyped-def]
    """Wait for a started CLI, which must succeed; its stderr."""
    _, err = process.communicate(timeout=300)
    text: str = err.decode()
    assert "Traceback" not in text
    assert process.returncode == 0, text
    return text


def test_a_second_backup_of_a_dataset_being_backed_up_is_refused(
    zpool: rig.Pool, rclone_remote: rig.Remote, tmp_path: Path, lock_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    dataset, files = make_dataset(zpool, 24 << 20)
    config = write_config(tmp_path, dataset, rclone_remote)
    first = start_cli("backup", "--config", config, env=lock_env)
    rcat = wait_for_child(first.pid, " rcat ")
    os.kill(rcat, signal.SIGSTOP)  # the first backup now holds its lock mid-stream
    try:
        during = (snapshots(dataset), remote_files(rclone_remote))
        assert len(during[0]) == 1  # the first run's snapshot, not yet committed
        capsys.readouterr()
        assert cli("backup", "--config", config) == EXIT_LOCK_BUSY
        err = capsys.readouterr().err
        assert "Traceback" not in err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, err
        lock_path = DatasetLock(dataset, "").path
        assert lines[0] == (f"zfsglacier: error: {dataset} is busy: another zfsglacier run holds {lock_path} "
                            f"(pid {first.pid}: backup)")
        assert (snapshots(dataset), remote_files(rclone_remote)) == during
    finally:
        os.kill(rcat, signal.SIGCONT)
    finish(first)

    records = list_json(config, capsys)
    assert [(r["kind"], r["snapshot"]) for r in records] == [("full", during[0][0].partition("@")[2])]
    assert snapshots(dataset) == during[0]
    assert cli("restore", "--config", config, "--target-dataset", zpool.dataset("r"), "--yes") == 0
    assert rig.tree_digest(zpool.path("r")) == rig.tree_digest(files)


def test_backup_while_a_restore_of_its_backups_runs(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, lock_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    dataset, files = make_dataset(zpool, 8 << 20)
    config = write_config(tmp_path, dataset, local_remote)
    assert cli("backup", "--config", config) == 0
    backed_up = rig.tree_digest(files)
    rig.mutate(files, seed="meanwhile")
    (files / "more.bin").write_bytes(os.urandom(1 << 20))

    # The download is slowed (rclone reads RCLONE_BWLIMIT) only so that it is surely still running
    # when it is stopped; stopped, the restore waits mid-stream for as long as the backup takes.
    restore = start_cli("restore", "--config", config, "--target-dataset", zpool.dataset("restored"), "--yes",
                        env={**lock_env, "RCLONE_BWLIMIT": "2M"})
    cat = wait_for_child(restore.pid, " cat ")
    os.kill(cat, signal.SIGSTOP)
    try:
        backup = start_cli("backup", "--config", config, env=lock_env)
        err = finish(backup)
        assert "incremental from" in err
        assert restore.poll() is None, "the restore must still be running while the backup ran"
    finally:
        os.kill(cat, signal.SIGCONT)
    finish(restore)

    assert rig.tree_digest(zpool.path("restored")) == backed_up
    records = list_json(config, capsys)
    assert [r["kind"] for r in records] == ["full", "incremental"]
    assert cli("restore", "--config", config, "--target-dataset", zpool.dataset("newest"), "--yes") == 0
    assert rig.tree_digest(zpool.path("newest")) == rig.tree_digest(files)
