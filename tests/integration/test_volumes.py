"""Streams cut into volumes ([rclone] max_object_size), and backups of several volumes that were
interrupted and resumed: the volumes already stored are compared, not uploaded again."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import rig
from helpers import cli, list_json, remote_files, snapshots, start_cli, write_config

from zfsglacier.errors import EXIT_INTEGRITY, EXIT_SIGNAL_BASE
from zfsglacier.zfs.cmd import PENDING_PROPERTY

pytestmark = pytest.mark.integration

VOLUME = 1 << 20
RANDOM_MIB = 12  # does not compress: about 12 volumes of 1 MiB


@pytest.fixture(autouse=True)
def _lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))


def volumes_config(tmp_path: Path, dataset: str, remote: rig.Remote, rclone_keys: str = "",
                   compressor: str = "zstd") -> Path:
    config = write_config(tmp_path, dataset, remote, compressor)
    config.write_text(config.read_text().replace(
        "[compression]", f"max_object_size = 1M\n{rclone_keys}[compression]"))
    return config


def big_dataset(pool: rig.Pool, seed: str) -> str:
    dataset = pool.dataset("data")
    rig.run(["zfs", "create", dataset])
    rig.populate(pool.path("data"), seed=seed)
    (pool.path("data") / "random.bin").write_bytes(rig.seeded_random(seed).randbytes(RANDOM_MIB << 20))
    return dataset


def test_a_backup_in_volumes_restores_and_verifies(
    zpool: rig.Pool, rclone_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = big_dataset(zpool, "volumes")
    config = volumes_config(tmp_path, dataset, rclone_remote)
    assert cli("backup", "--config", config) == 0
    rig.mutate(zpool.path("data"), seed="volumes-2")
    (zpool.path("data") / "more.bin").write_bytes(os.urandom(3 << 20))
    assert cli("backup", "--config", config) == 0
    source = rig.tree_digest(zpool.path("data"))

    records = list_json(config, capsys)
    assert [r["kind"] for r in records] == ["full", "incremental"]
    for record in records:
        volumes = record["volumes"]
        assert isinstance(volumes, list) and len(volumes) >= 3
        assert volumes[0]["object"] == record["object"]
        assert [v["object"] for v in volumes[1:]] == [f"{record['object']}.{n:04d}" for n in range(2, len(volumes) + 1)]
        assert sum(v["stored_bytes"] for v in volumes) == record["stored_bytes"]
        assert all(v["stored_bytes"] == VOLUME for v in volumes[:-1])
    full_volumes = len(records[0]["volumes"])  # type: ignore[arg-type]
    assert full_volumes >= RANDOM_MIB
    files = remote_files(rclone_remote)
    assert len(files) == sum(len(r["volumes"]) for r in records) + len(records) + 1  # type: ignore[arg-type,misc]
    manifest = json.loads((rclone_remote.root / dataset / f"{records[0]['snapshot']}.manifest.json").read_text())
    assert manifest["version"] == 3

    assert cli("restore", "--config", config, "--target-dataset", zpool.dataset("copy"), "--yes") == 0
    assert rig.tree_digest(zpool.path("copy")) == source
    capsys.readouterr()
    assert cli("verify", "--config", config) == 0

    # The README's recipe by hand: each backup's volumes, in its manifest's order, into one decompressor.
    for record in records:
        stored = b"".join(rig.run(rclone_remote.argv("cat", str(v["object"]))).stdout
                          for v in record["volumes"])  # type: ignore[attr-defined]
        raw = rig.run(["zstd", "-d", "-q"], input=stored).stdout
        rig.run(["zfs", "receive", "-F", zpool.dataset("byhand")], input=raw)
    assert rig.tree_digest(zpool.path("byhand")) == source

    second = rclone_remote.root / dataset / f"{records[0]['object'].rpartition('/')[2]}.0002"  # type: ignore[union-attr]
    data = bytearray(second.read_bytes())
    data[1000] ^= 0x01
    second.write_bytes(bytes(data))
    capsys.readouterr()
    assert cli("verify", "--config", config) == EXIT_INTEGRITY
    out = capsys.readouterr().out
    assert f"volume 2 of {full_volumes} does not match its manifest" in out


def _enter(request: pytest.FixtureRequest, server: rig.S3Server) -> rig.Remote:
    """A bucket on the session's S3 server, removed after the test."""
    context = server.remote()
    remote = context.__enter__()
    request.addfinalizer(lambda: context.__exit__(None, None, None))
    return remote


def interrupt_after_volumes(config: Path, directory: Path, signum: int, volumes: int = 3) -> tuple[int, str]:
    """Start a backup and send `signum` once its record holds `volumes` volumes; its exit code and stderr."""
    process = start_cli("backup", "--config", config)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        records = list(directory.glob("*.partial.json")) if directory.exists() else []
        try:
            if records and len(json.loads(records[0].read_text())["volumes"]) >= volumes:
                break
        except (ValueError, OSError):
            pass  # being written
        time.sleep(0.01)
    assert process.poll() is None, "the backup ended before it could be interrupted"
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    return process.returncode, err.decode()


def stored_volumes(directory: Path) -> dict[str, tuple[int, int]]:
    """Volume name -> (inode, mtime_ns): an object uploaded again is a new file."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in directory.iterdir() if ".zfs" in p.name}


@pytest.mark.parametrize(("signum", "where"), [(signal.SIGTERM, "local"), (signal.SIGKILL, "local"),
                                               (signal.SIGTERM, "s3")],
                         ids=["SIGTERM-local", "SIGKILL-local", "SIGTERM-s3"])
def test_an_interrupted_backup_in_volumes_resumes_without_uploading_them_again(
    signum: int, where: str, zpool: rig.Pool, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    if where == "local":
        remote: rig.Remote = request.getfixturevalue("local_remote")
    else:
        server: rig.S3Server = request.getfixturevalue("s3_server")
        remote = _enter(request, server)
    dataset = big_dataset(zpool, "resume")
    source = rig.tree_digest(zpool.path("data"))
    # Slow enough to be stopped in the middle: about 4 s for the whole stream.
    config = volumes_config(tmp_path, dataset, remote, "bwlimit = 3M\n")
    directory = remote.root / dataset
    code, err = interrupt_after_volumes(config, directory, signum)
    if signum == signal.SIGTERM:
        assert code == EXIT_SIGNAL_BASE + signum, err
        assert "the next backup resumes after them" in err
    else:
        assert code == -signal.SIGKILL
    (snapshot,) = snapshots(dataset)
    assert rig.out(["zfs", "get", "-H", "-o", "value", PENDING_PROPERTY, snapshot]).strip() not in ("-", "")
    short = snapshot.partition("@")[2]
    record = json.loads((directory / f"{short}.partial.json").read_text())
    kept = {v["object"] for v in record["volumes"]}
    assert len(kept) >= 3
    assert not (directory / f"{short}.manifest.json").exists()
    assert list_json(config, capsys) == []
    before = stored_volumes(directory)
    assert cli("prune", "--config", config) == 0
    assert stored_volumes(directory) == before, "prune leaves an interrupted backup to the next backup"

    capsys.readouterr()
    assert cli("backup", "--config", config) == 0
    err = capsys.readouterr().err
    assert f"resuming the interrupted full: {len(kept)} volume(s)" in err
    after = stored_volumes(directory)
    assert {name: after[name] for name in kept} == {name: before[name] for name in kept}, \
        "the stored volumes were compared, not uploaded again"
    assert len(after) > len(kept)
    (committed,) = list_json(config, capsys)
    assert committed["snapshot"] == short and committed["kind"] == "full"
    names = [str(v["object"]).rpartition("/")[2] for v in committed["volumes"]]  # type: ignore[attr-defined]
    assert names[: len(kept)] == [v["object"] for v in record["volumes"]]
    assert not (directory / f"{short}.partial.json").exists()
    assert rig.out(["zfs", "get", "-H", "-o", "value", PENDING_PROPERTY, snapshot]).strip() in ("-", "")

    assert cli("restore", "--config", config, "--target-dataset", zpool.dataset("copy"), "--yes") == 0
    assert rig.tree_digest(zpool.path("copy")) == source


@pytest.mark.parametrize("change", ["stream differs", "compressor changed"])
def test_an_interrupted_backup_that_cannot_be_resumed_starts_over_and_says_why(
    change: str, zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = big_dataset(zpool, "over")
    source = rig.tree_digest(zpool.path("data"))
    config = volumes_config(tmp_path, dataset, local_remote, "bwlimit = 3M\n")
    directory = local_remote.root / dataset
    code, err = interrupt_after_volumes(config, directory, signal.SIGTERM, volumes=2)
    assert code == EXIT_SIGNAL_BASE + signal.SIGTERM, err
    (snapshot,) = snapshots(dataset)
    short = snapshot.partition("@")[2]
    record_path = directory / f"{short}.partial.json"
    if change == "stream differs":
        # What a zfs that sends the same snapshot differently looks like: volume 2 does not compare.
        record = json.loads(record_path.read_text())
        record["volumes"][1]["sha256"] = "0" * 64
        record_path.write_text(json.dumps(record))
    else:
        config = volumes_config(tmp_path, dataset, local_remote, compressor="pigz")

    capsys.readouterr()
    assert cli("backup", "--config", config) == 0
    err = capsys.readouterr().err
    (committed,) = list_json(config, capsys)
    if change == "stream differs":
        assert "volume 2 (" in err and "is not byte-identical" in err
        assert committed["snapshot"] == short, "the same snapshot, sent again from the start"
    else:
        assert "the interrupted backup is not resumed (the compressor, level or send flags changed since)" in err
        assert committed["snapshot"] != short, "its snapshot was destroyed and a new one made"
        assert snapshots(dataset) == [f"{dataset}@{committed['snapshot']}"]
    assert not record_path.exists()
    # Nothing is left of the interrupted run: only the committed backup's volumes, its manifest, the index.
    assert len(remote_files(local_remote)) == len(committed["volumes"]) + 2  # type: ignore[arg-type]

    assert cli("restore", "--config", config, "--target-dataset", zpool.dataset("copy"), "--yes") == 0
    assert rig.tree_digest(zpool.path("copy")) == source
