"""A backup killed mid-stream leaves no committed backup, no new snapshot and no partial object;
after a SIGKILL of zfsglacier itself, the next run cleans up and succeeds."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import rig
from helpers import cli, list_json, remote_files, snapshots, start_cli, wait_for_child, write_config

from zfsglacier.errors import EXIT_REMOTE, EXIT_SIGNAL_BASE, EXIT_ZFS

pytestmark = pytest.mark.integration
STREAM_BYTES = 24 << 20  # several times the pipes and buffers between the stages


@pytest.fixture
def lock_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))
    return {"ZFSGLACIER_LOCK_DIR": str(tmp_path / "locks")}


def prepare(pool: rig.Pool, remote: rig.Remote, tmp_path: Path, kind: str,
            stream_bytes: int = STREAM_BYTES) -> tuple[str, Path]:
    dataset = pool.dataset("data")
    rig.run(["zfs", "create", dataset])
    rig.populate(pool.path("data"), seed="kill")
    config = write_config(tmp_path, dataset, remote, "zstd")
    if kind == "incremental":
        assert cli("backup", "--config", config) == 0
    # Random data: the compressed stream is as big as the raw one, so the stages are truly mid-stream.
    (pool.path("data") / "big.bin").write_bytes(os.urandom(stream_bytes))
    return dataset, config


def stalled_backup(config: Path, env: dict[str, str]):  # type: ignore[no-untyped-def]
    """Start a backup and freeze its upload once the stream runs: every stage is then mid-stream."""
    process = start_cli("backup", "--config", config, env=env)
    rcat = wait_for_child(process.pid, " rcat ")
    os.kill(rcat, signal.SIGSTOP)
    send = wait_for_child(process.pid, "zfs send")
    time.sleep(0.5)  # let the pipes between the stages fill
    assert process.poll() is None, process.communicate()
    return process, rcat, send


def assert_nothing_left(dataset: str, remote: rig.Remote, before_snapshots: list[str],
                        before_files: list[str]) -> None:
    assert snapshots(dataset) == before_snapshots
    assert remote_files(remote) == before_files


def alive(pid: int) -> bool:
    """Running or stopped; a zombie (dead, not yet reaped by its new parent) does not count."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def finish(process) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    _, err = process.communicate(timeout=120)
    text = err.decode()
    assert "Traceback" not in text
    return process.returncode, text


@pytest.mark.parametrize("kind", ["full", "incremental"])
def test_sigterm_of_zfsglacier(kind: str, zpool: rig.Pool, rclone_remote: rig.Remote, tmp_path: Path,
                               lock_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    dataset, config = prepare(zpool, rclone_remote, tmp_path, kind)
    before = (snapshots(dataset), remote_files(rclone_remote))
    process, _, _ = stalled_backup(config, lock_env)
    process.send_signal(signal.SIGTERM)
    code, err = finish(process)
    assert code == EXIT_SIGNAL_BASE + signal.SIGTERM
    assert "error: interrupted by SIGTERM" in err
    assert_nothing_left(dataset, rclone_remote, *before)
    assert len(list_json(config, capsys)) == (1 if kind == "incremental" else 0)


@pytest.mark.parametrize("kind", ["full", "incremental"])
def test_rclone_killed_mid_upload(kind: str, zpool: rig.Pool, rclone_remote: rig.Remote, tmp_path: Path,
                                  lock_env: dict[str, str]) -> None:
    dataset, config = prepare(zpool, rclone_remote, tmp_path, kind)
    before = (snapshots(dataset), remote_files(rclone_remote))
    process, rcat, _ = stalled_backup(config, lock_env)
    os.kill(rcat, signal.SIGKILL)
    code, err = finish(process)
    assert code == EXIT_REMOTE
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "rclone rcat: killed by signal SIGKILL" in errors[0], err
    assert_nothing_left(dataset, rclone_remote, *before)


@pytest.mark.parametrize("kind", ["full", "incremental"])
def test_zfs_send_killed_mid_stream(kind: str, zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path,
                                    lock_env: dict[str, str]) -> None:
    # Bigger than everything the stages buffer between them (pipes, zstd's multithreaded jobs, rclone's
    # upload buffer), so that zfs send is still writing when the upload freezes.
    dataset, config = prepare(zpool, local_remote, tmp_path, kind, stream_bytes=96 << 20)
    before = (snapshots(dataset), remote_files(local_remote))
    process, rcat, send = stalled_backup(config, lock_env)
    assert alive(send), "zfs send finished before it could be killed: the stream is too small for this test"
    os.kill(send, signal.SIGKILL)
    os.kill(rcat, signal.SIGCONT)  # the upload would happily finish what it got: it must not
    code, err = finish(process)
    assert code == EXIT_ZFS
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "zfs send: killed by signal SIGKILL" in errors[0], err
    assert_nothing_left(dataset, local_remote, *before)


@pytest.mark.parametrize("kind", ["full", "incremental"])
def test_sigkill_of_zfsglacier_is_cleaned_up_by_the_next_run(
    kind: str, zpool: rig.Pool, rclone_remote: rig.Remote, tmp_path: Path, lock_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    dataset, config = prepare(zpool, rclone_remote, tmp_path, kind)
    committed_before = len(list_json(config, capsys))
    process, rcat, _ = stalled_backup(config, lock_env)
    process.kill()
    process.wait(timeout=60)
    time.sleep(0.5)  # the children die with their parent (PR_SET_PDEATHSIG)
    assert not alive(rcat), "rclone must not outlive zfsglacier: it would finish a truncated upload"
    leftover = [s for s in snapshots(dataset) if s.partition("@")[2] not in
                {str(r["snapshot"]) for r in list_json(config, capsys)}]
    assert len(leftover) == 1, "the killed run's snapshot is still there for the next run to find"
    assert len(list_json(config, capsys)) == committed_before  # nothing committed

    capsys.readouterr()
    assert cli("backup", "--config", config) == 0
    err = capsys.readouterr().err
    assert f"destroying {leftover[0]}: left uncommitted by an interrupted run" in err
    assert leftover[0] not in snapshots(dataset)
    records = list_json(config, capsys)
    assert len(records) == committed_before + 1
    assert len(remote_files(rclone_remote)) == 2 * len(records) + 1  # + the index; the partial object is gone
    assert cli("restore", "--config", config, "--target-dataset", zpool.dataset("r"), "--yes") == 0
    assert rig.tree_digest(zpool.path("r")) == rig.tree_digest(zpool.path("data"))


def test_a_failed_manifest_upload_leaves_no_data_object_and_no_snapshot(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, lock_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    rig.populate(zpool.path("data"), seed="manifest")
    config = write_config(tmp_path, dataset, local_remote)
    monkeypatch.setattr("zfsglacier.backup.new_snapshot_name", lambda prefix, now, taken: "fixed")
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
