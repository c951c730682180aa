"""Streams fit the remote's part limit: rclone's parts are sized from the stream's estimate. On moto's S3
server the stored object's ETag tells how many parts its multipart upload had (`<md5>-<parts>`)."""

from __future__ import annotations

import http.client
import os
from pathlib import Path

import pytest
import rig
from helpers import cli, list_json, write_config

pytestmark = pytest.mark.integration

MIB = 1 << 20


@pytest.fixture(autouse=True)
def _lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))


def parts_of(server: rig.MotoServer, remote: rig.Remote, key: str) -> int:
    """moto answers without credentials (it checks none); the ETag of a multipart upload ends in -N."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("HEAD", f"/{remote.bucket}/{key}")
        response = connection.getresponse()
        assert response.status == 200, f"HEAD {key}: {response.status}"
        etag = (response.getheader("ETag") or "").strip('"')
    finally:
        connection.close()
    return int(etag.rpartition("-")[2]) if "-" in etag else 1


def test_a_low_part_limit_gets_parts_large_enough_for_the_stream(
    zpool: rig.Pool, moto_server: rig.MotoServer, moto_remote: rig.Remote, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    (zpool.path("data") / "random.bin").write_bytes(os.urandom(30 * MIB))  # does not compress
    limit = 4
    assert limit * 5 * MIB < 30 * MIB, "with rclone's default 5 MiB parts this stream needs more than the limit"
    config = write_config(tmp_path, dataset, moto_remote)
    config.write_text(config.read_text().replace(
        "[compression]", f"max_upload_parts = {limit}\nupload_concurrency = 2\nupload_memory = 64M\n[compression]"))
    capsys.readouterr()
    assert cli("backup", "--config", config) == 0
    said = capsys.readouterr().err
    assert f"at most {limit} parts" in said and "2 at a time" in said, said

    (record,) = list_json(config, capsys)
    assert int(str(record["stored_bytes"])) > 30 * MIB
    parts = parts_of(moto_server, moto_remote, f"{dataset}/{str(record['object']).rpartition('/')[2]}")
    assert 1 < parts <= limit, f"the upload used {parts} parts; the limit is {limit}"

    target = zpool.dataset("restored")
    assert cli("restore", "--config", config, "--target-dataset", target, "--yes") == 0
    assert rig.tree_digest(zpool.path("restored")) == rig.tree_digest(zpool.path("data"))
