"""A backup whose commit fails leaves no committed backup, no new snapshot and no partial object.

Killed stages, a killed S3 server and a killed zfsglacier, early, mid-stream and late: test_kill_matrix.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import rig
from helpers import cli, list_json, remote_files, snapshots, write_config

from zfsglacier.errors import EXIT_REMOTE

pytestmark = pytest.mark.integration


@pytest.fixture
def lock_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))
    return {"ZFSGLACIER_LOCK_DIR": str(tmp_path / "locks")}


def test_a_failed_manifest_upload_leaves_no_data_object_and_no_snapshot(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, lock_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    rig.populate(zpool.path("data"), seed="manifest")
    config = write_config(tmp_path, dataset, local_remote)
    monkeypatch.setattr("zfsglacier.policy.local_snapshots.new_snapshot_name", lambda prefix, now, taken: "fixed")
    # A directory where the manifest must go: the data upload works, the manifest upload cannot.
    (local_remote.root / dataset / "fixed.manifest.json").mkdir(parents=True)
    capsys.readouterr()
    assert cli("backup", "--config", config) == EXIT_REMOTE
    err = capsys.readouterr().err
    assert "error: rclone rcat:" in err
    assert "removed partial object" in err and "fixed.full.zfs.zst" in err
    assert snapshots(dataset) == []
    assert remote_files(local_remote) == []
    assert list_json(config, capsys) == []
