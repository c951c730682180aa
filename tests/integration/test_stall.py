"""A remote that accepts the connection and then goes silent stops the run after `[rclone]
stall_timeout`, with the usual cleanup, instead of hanging an unattended run for most of an hour. A
download that stalls is read again a few times first (tests/integration/test_ranged_reads.py)."""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import rig
from helpers import cli, dataset_exists, list_json, remote_files, snapshots, write_config
from stall_proxy import StallingProxy, stalling_proxy

from zfsglacier.errors import EXIT_REMOTE

pytestmark = pytest.mark.integration
# Random data, more than rclone buffers for an S3 multipart upload (4 parts of 5 MiB in flight), so
# that a silent remote makes rclone stop reading its input.
STREAM_BYTES = 64 << 20
# rclone's own give-up time for a silent server is --timeout 5m, retried: anything near this bound
# means our watch did not fire.
HANG_BOUND = 90


@pytest.fixture
def s3_remote(s3_server: rig.S3Server) -> Iterator[rig.Remote]:
    with s3_server.remote() as remote:
        yield remote


@pytest.fixture(autouse=True)
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))


def through(proxy: StallingProxy, remote: rig.Remote, server: rig.S3Server) -> rig.Remote:
    """The same bucket, reached through the proxy."""
    config = remote.config_path.with_name(f"proxied-{proxy.port}.conf")
    config.write_text(remote.config_path.read_text().replace(server.endpoint, f"http://127.0.0.1:{proxy.port}"))
    return dataclasses.replace(remote, config_path=config)


def stall_config(folder: Path, dataset: str, remote: rig.Remote) -> Path:
    """A config for `remote` with `[rclone] stall_timeout = 2s`."""
    folder.mkdir(exist_ok=True)
    path = write_config(folder, dataset, remote)
    path.write_text(path.read_text().replace("[rclone]\n", "[rclone]\nstall_timeout = 2s\n"))
    return path


def error_lines(text: str) -> list[str]:
    assert "Traceback" not in text
    return [line for line in text.splitlines() if "error:" in line]


def run_with_a_silent_remote(command: str, config_dir: Path, dataset: str, server: rig.S3Server,
                             remote: rig.Remote, capsys: pytest.CaptureFixture[str], *args: str,
                             **stall: int | bool) -> tuple[int, str, str]:
    """Run `command` against `remote` through a proxy that goes silent as `stall` says; the run must
    have met the silence, and must end well before rclone's own timeouts would."""
    with stalling_proxy(server.port, **stall) as proxy:
        config = stall_config(config_dir, dataset, through(proxy, remote, server))
        capsys.readouterr()
        started = time.monotonic()
        code = cli(command, "--config", config, *args)
        seconds = time.monotonic() - started
        out, err = capsys.readouterr()
        assert proxy.stalled.is_set(), err
    assert seconds < HANG_BOUND
    return code, out, err


@pytest.fixture
def dataset(zpool: rig.Pool) -> str:
    name = zpool.dataset("data")
    rig.run(["zfs", "create", name])
    rig.populate(zpool.path("data"), seed="stall")
    return name


def test_a_silent_remote_mid_upload_stops_the_backup_and_cleans_up(
    dataset: str, zpool: rig.Pool, s3_server: rig.S3Server, s3_remote: rig.Remote, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    direct = write_config(tmp_path, dataset, s3_remote)
    assert cli("backup", "--config", direct) == 0
    (zpool.path("data") / "big.bin").write_bytes(os.urandom(STREAM_BYTES))
    before = (snapshots(dataset), remote_files(s3_remote), list_json(direct, capsys))

    code, _, err = run_with_a_silent_remote("backup", tmp_path / "proxied", dataset, s3_server, s3_remote, capsys,
                                            stall_upload_after=1 << 20)
    assert code == EXIT_REMOTE
    assert error_lines(err) == [
        "zfsglacier: error: rclone rcat: the remote accepted no data for 2s ([rclone] stall_timeout = 2s)"
    ], err
    assert "destroyed snapshot" in err
    assert (snapshots(dataset), remote_files(s3_remote), list_json(direct, capsys)) == before


def test_a_silent_remote_mid_download_stops_the_restore_before_anything_is_committed(
    dataset: str, zpool: rig.Pool, s3_server: rig.S3Server, s3_remote: rig.Remote, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (zpool.path("data") / "big.bin").write_bytes(os.urandom(8 << 20))
    assert cli("backup", "--config", write_config(tmp_path, dataset, s3_remote)) == 0
    target = zpool.dataset("restored")

    code, _, err = run_with_a_silent_remote("restore", tmp_path / "proxied", dataset, s3_server, s3_remote, capsys,
                                            "--target-dataset", target, "--yes", "--streams", "1",
                                            stall_download_after=2 << 20, silent_after_stall=True)
    assert code == EXIT_REMOTE
    (line,) = error_lines(err)
    assert re.fullmatch(r"zfsglacier: error: rclone cat: reading \S+\.full\.zfs\.zst from byte \d+: the remote sent "
                        r"no data for 2s \(\[rclone\] stall_timeout = 2s\)", line), err
    assert err.count("reading it again") == 3, "read again 3 times before the run gives up"
    assert not dataset_exists(target)


def test_a_silent_remote_stops_verify(
    dataset: str, zpool: rig.Pool, s3_server: rig.S3Server, s3_remote: rig.Remote, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (zpool.path("data") / "big.bin").write_bytes(os.urandom(8 << 20))
    assert cli("backup", "--config", write_config(tmp_path, dataset, s3_remote)) == 0

    code, out, _ = run_with_a_silent_remote("verify", tmp_path / "proxied", dataset, s3_server, s3_remote, capsys,
                                            "--streams", "1", stall_download_after=2 << 20, silent_after_stall=True)
    assert code == EXIT_REMOTE
    assert re.search(r"rclone cat: reading \S+ from byte \d+: the remote sent no data for 2s \(\[rclone\] "
                     r"stall_timeout = 2s\)", out), out


def test_a_remote_silent_from_the_first_byte_stops_the_backup_before_any_snapshot(
    dataset: str, s3_server: rig.S3Server, s3_remote: rig.Remote, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run_with_a_silent_remote("backup", tmp_path / "proxied", dataset, s3_server, s3_remote, capsys,
                                            stall_upload_after=0)
    assert code == EXIT_REMOTE
    lines = error_lines(err)
    assert len(lines) == 1 and "rclone lsjson: no answer within 2 s ([rclone] stall_timeout)" in lines[0], err
    assert snapshots(dataset) == []
    assert remote_files(s3_remote) == []
