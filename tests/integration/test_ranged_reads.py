"""Restore and verify read each object as parallel ranges (`[restore] streams`): through a proxy that breaks
one range's download mid-way, the range is read again from where it stopped, and the restore is still
bit-identical; a remote gone silent for good ends the run after the retries, naming the object and offset."""

from __future__ import annotations

import dataclasses
import os
import re
import time
from pathlib import Path

import pytest
import rig
from helpers import cli, dataset_exists, write_config
from stall_proxy import StallingProxy, stalling_proxy

from zfsglacier.errors import EXIT_REMOTE

pytestmark = pytest.mark.integration
MIB = 1 << 20
# rclone reopens a broken download by itself, --low-level-retries times: with 1 it gives up at once, so
# the retry seen is zfsglacier's.
RCLONE_GIVES_UP = {"RCLONE_LOW_LEVEL_RETRIES": "1"}


@pytest.fixture(autouse=True)
def _environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))
    for name, value in RCLONE_GIVES_UP.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def s3_remote(s3_server: rig.S3Server) -> rig.Remote:
    with s3_server.remote() as remote:
        yield remote


def through(proxy: StallingProxy, remote: rig.Remote, server: rig.S3Server) -> rig.Remote:
    config = remote.config_path.with_name(f"proxied-{proxy.port}.conf")
    config.write_text(remote.config_path.read_text().replace(server.endpoint, f"http://127.0.0.1:{proxy.port}"))
    return dataclasses.replace(remote, config_path=config)


@pytest.fixture
def backed_up(zpool: rig.Pool, s3_remote: rig.Remote, tmp_path: Path) -> tuple[str, int]:
    """A full of about 6 MiB (random data: stored as big) on S3: six 1 MiB ranges."""
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    (zpool.path("data") / "random.bin").write_bytes(os.urandom(6 * MIB))
    rig.populate(zpool.path("data") / "more", seed="ranged", n_files=6)
    assert cli("backup", "--config", write_config(tmp_path, dataset, s3_remote)) == 0
    (stored,) = [p for p in s3_remote.root.rglob("*.full.zfs.zst")]
    return dataset, stored.stat().st_size


def proxied_config(folder: Path, dataset: str, remote: rig.Remote, streams: int = 4, rclone_keys: str = "") -> Path:
    folder.mkdir(exist_ok=True)
    path = write_config(folder, dataset, remote)
    path.write_text(path.read_text().replace("[restore]\n", f"[restore]\nstreams = {streams}\n")
                    .replace("[rclone]\n", f"[rclone]\n{rclone_keys}"))
    return path


@pytest.mark.parametrize("command", ["restore", "verify"])
def test_a_range_cut_once_is_read_again_and_the_result_is_bit_identical(
    command: str, backed_up: tuple[str, int], zpool: rig.Pool, s3_server: rig.S3Server, s3_remote: rig.Remote,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    dataset, size = backed_up
    assert size > 5 * MIB
    target = zpool.dataset("restored")
    with stalling_proxy(s3_server.port, cut_range_end=3 * MIB - 1, cut_after=300_000, cuts=1) as proxy:
        config = proxied_config(tmp_path / "proxied", dataset, through(proxy, s3_remote, s3_server))
        capsys.readouterr()
        args = ["--target-dataset", target, "--yes"] if command == "restore" else []
        assert cli(command, "--config", config, *args) == 0
        out, err = capsys.readouterr()
        assert proxy.cut == 1, "the proxy broke one download"
    retries = [line for line in err.splitlines() if "reading it again" in line]
    assert len(retries) == 1, err
    assert re.search(r"bytes 2097152-3145727 \(range 3 of \d+\): exited with status \d+: .*; reading it again from "
                     r"byte \d+ in 1s \(attempt 2 of 4\)$", retries[0]), retries[0]
    assert "reading each object with 4 streams of 1.0 MiB ranges (up to 4.0 MiB buffered)" in err or \
        command == "verify"
    if command == "restore":
        assert rig.tree_digest(zpool.path("restored")) == rig.tree_digest(zpool.path("data"))
    else:
        assert out.startswith("OK ")


def test_a_remote_gone_silent_ends_the_restore_after_the_retries_naming_the_range(
    backed_up: tuple[str, int], zpool: rig.Pool, s3_server: rig.S3Server, s3_remote: rig.Remote, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dataset, _ = backed_up
    target = zpool.dataset("restored")
    with stalling_proxy(s3_server.port, stall_download_after=500_000, silent_after_stall=True) as proxy:
        config = proxied_config(tmp_path / "proxied", dataset, through(proxy, s3_remote, s3_server), streams=2,
                                rclone_keys="stall_timeout = 2s\n")
        capsys.readouterr()
        started = time.monotonic()
        assert cli("restore", "--config", config, "--target-dataset", target, "--yes") == EXIT_REMOTE
        seconds = time.monotonic() - started
        err = capsys.readouterr().err
        assert proxy.stalled.is_set()
    assert seconds < 60, "four tries of 2 s and the pauses between them"
    assert len([line for line in err.splitlines() if "reading it again" in line]) >= 3, err
    (error,) = [line for line in err.splitlines() if line.startswith("zfsglacier: error:")]
    assert re.fullmatch(r"zfsglacier: error: rclone cat: reading \S+\.full\.zfs\.zst bytes \d+-\d+ \(range \d+ of "
                        r"\d+\): the remote sent no data for 2s \(\[rclone\] stall_timeout = 2s\)", error), error
    assert not dataset_exists(target)
