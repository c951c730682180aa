"""Remote faults: an unreachable endpoint, a full disk mid-upload, permission denied, and a missing or
wrong rclone config. Each ends with one error line naming rclone's stage and the remote path (or the
config file), the right exit code, no new snapshot, and the earlier backups still there and restorable."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import rig
from helpers import cli, dataset_exists, list_json, remote_files, snapshots, write_config

from zfsglacier.errors import EXIT_REMOTE, EXIT_USAGE

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    return errors[0]


def rclone_config(path: Path, name: str, options: dict[str, str]) -> Path:
    path.write_text(f"[{name}]\n" + "".join(f"{key} = {value}\n" for key, value in options.items()))
    return path


def s3_options(endpoint: str, access_key: str, secret_key: str) -> dict[str, str]:
    return {"type": "s3", "provider": "Rclone", "endpoint": endpoint, "access_key_id": access_key,
            "secret_access_key": secret_key}


def same_bucket_other_config(remote: rig.Remote, config_path: Path) -> rig.Remote:
    return rig.Remote(remote.kind, config_path, remote.name, remote.bucket, remote.root)


def backed_up_dataset(pool: rig.Pool, remote: rig.Remote, tmp_path: Path,
                      capsys: pytest.CaptureFixture[str]) -> tuple[str, Path, dict[str, str]]:
    """A dataset with one committed backup; returns it, its config and the tree the backup holds."""
    dataset = pool.dataset("data")
    rig.run(["zfs", "create", dataset])
    rig.populate(pool.path("data"), seed="faults")
    config = write_config(tmp_path, dataset, remote)
    assert cli("backup", "--config", config) == 0
    assert len(list_json(config, capsys)) == 1
    return dataset, config, rig.tree_digest(pool.path("data"))


def assert_backup_restorable(pool: rig.Pool, config: Path, tree: dict[str, str],
                             capsys: pytest.CaptureFixture[str]) -> None:
    assert len(list_json(config, capsys)) == 1
    target = pool.dataset("restored")
    assert cli("restore", "--config", config, "--target-dataset", target, "--yes") == 0
    assert rig.tree_digest(pool.path("restored")) == tree


# --- unreachable at start ----------------------------------------------------------------------------


@pytest.fixture
def s3_remote(s3_server: rig.S3Server) -> Iterator[rig.Remote]:
    with s3_server.remote() as remote:
        yield remote


def test_unreachable_s3_endpoint_fails_backup_restore_and_list_before_anything_changes(
    zpool: rig.Pool, s3_server: rig.S3Server, s3_remote: rig.Remote, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dataset, config, tree = backed_up_dataset(zpool, s3_remote, tmp_path, capsys)
    closed_port = rig.free_port()  # bound and closed again: connections to it are refused
    dead = rclone_config(tmp_path / "dead.conf", s3_remote.name,
                         s3_options(f"http://127.0.0.1:{closed_port}", s3_server.access_key, s3_server.secret_key))
    (tmp_path / "dead").mkdir()
    dead_config = write_config(tmp_path / "dead", dataset, same_bucket_other_config(s3_remote, dead))
    rig.mutate(zpool.path("data"), seed="unreachable")
    before = (snapshots(dataset), remote_files(s3_remote))
    remote_path = f"{s3_remote.name}:{s3_remote.bucket}/{dataset}"

    for argv in (["backup"], ["restore", "--target-dataset", zpool.dataset("r"), "--yes"], ["list"]):
        capsys.readouterr()
        assert cli(*argv, "--config", dead_config) == EXIT_REMOTE
        line = error_line(capsys)
        assert f"rclone lsjson: listing {remote_path} failed" in line, line
        assert "connection refused" in line, line
        assert (snapshots(dataset), remote_files(s3_remote)) == before

    assert not dataset_exists(zpool.dataset("r"))
    assert_backup_restorable(zpool, config, tree, capsys)


# --- full mid-upload ---------------------------------------------------------------------------------


@pytest.fixture
def small_local_remote(zpool: rig.Pool, tmp_path: Path) -> rig.Remote:
    """A local remote on a ZFS dataset with a 16 MiB quota: a real filesystem that fills up."""
    store = zpool.dataset("store")
    rig.run(["zfs", "create", "-o", "quota=16M", store])
    (zpool.path("store") / "bucket").mkdir()
    config = rclone_config(tmp_path / "small.conf", "zgtsmall", {"type": "alias", "remote": str(zpool.path("store"))})
    return rig.Remote("local", config, "zgtsmall", "bucket", zpool.path("store") / "bucket")


def test_a_full_disk_mid_upload_fails_the_backup_and_keeps_the_earlier_one(
    zpool: rig.Pool, small_local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    dataset, config, tree = backed_up_dataset(zpool, small_local_remote, tmp_path, capsys)
    # Random data does not compress: the stream is three times the quota.
    (zpool.path("data") / "big.bin").write_bytes(os.urandom(48 << 20))
    before = (snapshots(dataset), remote_files(small_local_remote))

    capsys.readouterr()
    assert cli("backup", "--config", config) == EXIT_REMOTE
    line = error_line(capsys)
    assert "rclone rcat" in line, line
    assert "disk quota exceeded" in line or "no space left on device" in line, line
    assert (snapshots(dataset), remote_files(small_local_remote)) == before  # no manifest, no partial object

    assert_backup_restorable(zpool, config, tree, capsys)


# --- permission denied -------------------------------------------------------------------------------


def test_a_wrong_s3_secret_key_is_refused_before_anything_changes(
    zpool: rig.Pool, s3_server: rig.S3Server, s3_remote: rig.Remote, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dataset, config, tree = backed_up_dataset(zpool, s3_remote, tmp_path, capsys)
    wrong = rclone_config(tmp_path / "wrong.conf", s3_remote.name,
                          s3_options(s3_server.endpoint, s3_server.access_key, "0" * 32))
    (tmp_path / "wrong").mkdir()
    wrong_config = write_config(tmp_path / "wrong", dataset, same_bucket_other_config(s3_remote, wrong))
    rig.mutate(zpool.path("data"), seed="wrong-secret")
    before = (snapshots(dataset), remote_files(s3_remote))
    remote_path = f"{s3_remote.name}:{s3_remote.bucket}/{dataset}"

    for argv in (["backup"], ["list"]):
        capsys.readouterr()
        assert cli(*argv, "--config", wrong_config) == EXIT_REMOTE
        line = error_line(capsys)
        assert f"rclone lsjson: listing {remote_path} failed" in line, line
        assert "403" in line or "SignatureDoesNotMatch" in line or "AccessDenied" in line, line
        assert (snapshots(dataset), remote_files(s3_remote)) == before

    assert_backup_restorable(zpool, config, tree, capsys)


def test_a_read_only_local_remote_fails_the_upload_and_keeps_the_earlier_backup(
    zpool: rig.Pool, small_local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    # root ignores mode bits: a read-only filesystem is what truly refuses it.
    dataset, config, tree = backed_up_dataset(zpool, small_local_remote, tmp_path, capsys)
    rig.mutate(zpool.path("data"), seed="read-only")
    rig.run(["zfs", "set", "readonly=on", zpool.dataset("store")])
    before = (snapshots(dataset), remote_files(small_local_remote))

    capsys.readouterr()
    assert cli("backup", "--config", config) == EXIT_REMOTE
    line = error_line(capsys)
    assert "rclone rcat" in line and "read-only file system" in line, line
    assert (snapshots(dataset), remote_files(small_local_remote)) == before

    rig.run(["zfs", "set", "readonly=off", zpool.dataset("store")])
    assert_backup_restorable(zpool, config, tree, capsys)


# --- rclone config missing or wrong ------------------------------------------------------------------


def test_a_missing_rclone_config_file_is_a_config_error(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    gone = same_bucket_other_config(local_remote, tmp_path / "no-such-rclone.conf")
    config = write_config(tmp_path, dataset, gone)
    for argv in (["backup"], ["list"], ["restore", "--target-dataset", zpool.dataset("r"), "--yes"]):
        capsys.readouterr()
        assert cli(*argv, "--config", config) == EXIT_USAGE
        line = error_line(capsys)
        assert f"[rclone] config_path = '{tmp_path / 'no-such-rclone.conf'}': no such file" in line, line
    assert snapshots(dataset) == []


WRONG_RCLONE_CONFIGS = {
    # what the rclone config file holds -> what the error line must say
    "missing-remote": ("[someoneelse]\ntype = alias\nremote = /nowhere\n",
                       "[rclone] remote = 'zgtlocal': no such remote in rclone config file {path}",
                       "which has remotes someoneelse"),
    "empty": ("", "[rclone] remote = 'zgtlocal': no such remote in rclone config file {path}", "which has no remotes"),
    "unknown-type": ("[zgtlocal]\ntype = nosuchbackend\n",
                     "[rclone] remote: its type 'nosuchbackend' in rclone config file {path}", "rclone help backends"),
    "garbled": ("[zgtlocal\ntype alias\n", "rclone config file {path} ([rclone] config_path): rclone cannot parse it",
                "not shown"),
}


@pytest.mark.parametrize("case", sorted(WRONG_RCLONE_CONFIGS))
def test_a_wrong_rclone_config_is_a_config_error_before_any_snapshot(
    case: str, zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    text, says, hint = WRONG_RCLONE_CONFIGS[case]
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    rig.populate(zpool.path("data"), seed="config")
    local_remote.config_path.write_text(text)
    config = write_config(tmp_path, dataset, local_remote)
    for argv in (["backup"], ["list"], ["restore", "--target-dataset", zpool.dataset("r"), "--yes"]):
        capsys.readouterr()
        assert cli(*argv, "--config", config) == EXIT_USAGE
        line = error_line(capsys)
        assert says.format(path=local_remote.config_path) in line and hint in line, line
    assert snapshots(dataset) == []
    assert remote_files(local_remote) == []
    assert not dataset_exists(zpool.dataset("r"))


def test_without_config_path_the_rclone_config_rclone_picks_is_named(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    rclone_picks = rclone_config(tmp_path / "picked.conf", "someoneelse", {"type": "alias", "remote": "/nowhere"})
    monkeypatch.setenv("RCLONE_CONFIG", str(rclone_picks))
    config = tmp_path / "config.ini"
    config.write_text(f"[zfs]\ndataset = {dataset}\n[rclone]\nremote = zgtmissing\nbucket_name = bucket\n")
    assert cli("backup", "--config", config) == EXIT_USAGE
    line = error_line(capsys)
    assert f"[rclone] remote = 'zgtmissing': no such remote in rclone config file {rclone_picks} (the one rclone " \
           "picks: [rclone] config_path is not set), which has remotes someoneelse" in line, line
    assert snapshots(dataset) == []
