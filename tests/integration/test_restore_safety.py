"""Restore refuses what could hurt, and never commits a stream that does not match its manifest."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
import rig
from helpers import back_up_a_chain, cli, dataset_exists, error_line, list_json, snapshots, write_config

from zfsglacier.errors import EXIT_CHAIN, EXIT_INTEGRITY, EXIT_REFUSED, EXIT_USAGE, EXIT_ZFS
from zfsglacier.lock import DatasetLock

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))


@pytest.fixture
def backed_up(zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path) -> tuple[rig.Pool, rig.Remote, Path]:
    """A dataset with a full and two incrementals on a local remote (about 1 MiB of mixed data)."""
    _, config = back_up_a_chain(zpool, local_remote, tmp_path, seed="safety", n_files=40)
    return zpool, local_remote, config


def object_path(remote: rig.Remote, record: dict[str, object]) -> Path:
    return remote.root / str(record["object"]).split(":", 1)[1].split("/", 1)[1]


def test_existing_target_is_refused_without_force(backed_up, capsys) -> None:  # type: ignore[no-untyped-def]
    pool, _, config = backed_up
    rig.run(["zfs", "create", pool.dataset("existing")])
    (pool.path("existing") / "precious.txt").write_text("keep me")
    assert cli("restore", "--config", config, "--target-dataset", pool.dataset("existing"), "--yes") == EXIT_REFUSED
    assert "already exists" in error_line(capsys)
    assert (pool.path("existing") / "precious.txt").read_text() == "keep me"


def test_force_overwrites_an_existing_target_without_snapshots(backed_up, capsys) -> None:  # type: ignore[no-untyped-def]
    pool, _, config = backed_up
    rig.run(["zfs", "create", pool.dataset("scratch")])
    assert cli("restore", "--config", config, "--target-dataset", pool.dataset("scratch"), "--yes", "--force") == 0
    assert rig.tree_digest(pool.path("scratch")) == rig.tree_digest(pool.path("data"))


def test_no_terminal_and_no_yes_refuses(backed_up, capsys) -> None:  # type: ignore[no-untyped-def]
    pool, _, config = backed_up
    assert cli("restore", "--config", config, "--target-dataset", pool.dataset("r")) == EXIT_REFUSED
    assert "--yes" in error_line(capsys)
    assert not dataset_exists(pool.dataset("r"))


def test_wrong_confirmation_refuses(backed_up, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pool, _, config = backed_up
    monkeypatch.setattr("zfsglacier.cli._ask", lambda prompt: "pool/typo")
    assert cli("restore", "--config", config, "--target-dataset", pool.dataset("r")) == EXIT_REFUSED
    assert "not confirmed" in error_line(capsys)
    assert not dataset_exists(pool.dataset("r"))
    monkeypatch.setattr("zfsglacier.cli._ask", lambda prompt: pool.dataset("r"))
    assert cli("restore", "--config", config, "--target-dataset", pool.dataset("r")) == 0


@pytest.mark.parametrize("damage", ["flip-middle", "flip-last-byte", "truncate", "append"])
@pytest.mark.parametrize("which", [0, 2])  # the full, then the newest incremental
def test_damaged_object_is_named_and_nothing_of_it_is_committed(  # type: ignore[no-untyped-def]
    backed_up, capsys, damage: str, which: int
) -> None:
    pool, remote, config = backed_up
    records = list_json(config, capsys)
    path = object_path(remote, records[which])
    data = bytearray(path.read_bytes())
    if damage == "flip-middle":
        data[len(data) // 2] ^= 0x01
    elif damage == "flip-last-byte":
        data[-1] ^= 0x01
    elif damage == "truncate":
        del data[len(data) * 3 // 4:]
    else:
        data += b"\0" * 16
    path.write_bytes(bytes(data))
    target = pool.dataset("r")
    assert cli("restore", "--config", config, "--target-dataset", target, "--yes") == EXIT_INTEGRITY
    assert path.name in error_line(capsys)
    if which == 0 or damage in ("truncate", "append"):
        # Damage to the full, or a size that differs from the manifest (seen before anything starts).
        assert not dataset_exists(target)
    else:
        # The earlier snapshots are complete and verified; the damaged one is not there, and the target
        # says it is unfinished.
        assert [s.partition("@")[2] for s in snapshots(target)] == [r["snapshot"] for r in records[:which]]
        state = rig.out(["zfs", "get", "-H", "-o", "value", "org.zfsglacier:restore,mounted", target])
        assert state.split() == ["incomplete", "no"]


def test_damaged_payload_with_a_valid_compressed_stream_is_caught_by_the_hash(  # type: ignore[no-untyped-def]
    backed_up, capsys
) -> None:
    """A stream that decompresses cleanly but is not what was stored: only the sha256 can tell."""
    import zstandard

    pool, remote, config = backed_up
    records = list_json(config, capsys)
    path = object_path(remote, records[0])
    raw = bytearray(zstandard.ZstdDecompressor().stream_reader(path.read_bytes(), read_across_frames=True).read())
    raw[len(raw) // 3] ^= 0x01  # inside the stream's data, before its END record
    forged = zstandard.ZstdCompressor(level=19, write_checksum=True).compress(bytes(raw))
    padding = len(path.read_bytes()) - len(forged) - 8
    assert padding >= 0
    # A skippable frame makes the forged object exactly as long as the real one: only the hash differs.
    path.write_bytes(forged + struct.pack("<II", 0x184D2A50, padding) + bytes(padding))
    target = pool.dataset("r")
    assert cli("restore", "--config", config, "--target-dataset", target, "--yes") == EXIT_INTEGRITY
    assert "does not match its manifest" in error_line(capsys)
    assert not dataset_exists(target)


def test_missing_incremental_names_the_gap_and_earlier_snapshots_still_restore(  # type: ignore[no-untyped-def]
    backed_up, capsys
) -> None:
    pool, remote, config = backed_up
    records = list_json(config, capsys)
    (remote.root / str(object_path(remote, records[1]))).unlink()
    (object_path(remote, records[1]).parent / f"{records[1]['snapshot']}.manifest.json").unlink()
    assert cli("restore", "--config", config, "--target-dataset", pool.dataset("r"), "--yes") == EXIT_CHAIN
    line = error_line(capsys)
    assert f"{records[2]['snapshot']} is an incremental from {records[1]['snapshot']}" in line
    assert cli("restore", "--config", config, "--target-dataset", pool.dataset("r"), "--yes",
               "--snapshot", str(records[0]["snapshot"])) == 0


def test_missing_data_object_is_named_before_anything_starts(backed_up, capsys) -> None:  # type: ignore[no-untyped-def]
    pool, remote, config = backed_up
    records = list_json(config, capsys)
    object_path(remote, records[2]).unlink()
    assert cli("restore", "--config", config, "--target-dataset", pool.dataset("r"), "--yes") == EXIT_CHAIN
    assert "is missing" in error_line(capsys)
    assert not dataset_exists(pool.dataset("r"))


def test_manual_restore_recipe_from_the_readme(backed_up, capsys) -> None:  # type: ignore[no-untyped-def]
    """rclone cat | zstd -d | zfs receive, object by object in name order: no zfsglacier needed."""
    pool, remote, config = backed_up
    records = list_json(config, capsys)
    for record in records:
        stored = rig.run(remote.argv("cat", str(record["object"]))).stdout
        raw = rig.run(["zstd", "-d", "-q"], input=stored).stdout
        rig.run(["zfs", "receive", "-F", pool.dataset("byhand")], input=raw)
    assert rig.tree_digest(pool.path("byhand")) == rig.tree_digest(pool.path("data"))


def test_a_restore_into_a_locked_target_is_refused(backed_up, capsys) -> None:  # type: ignore[no-untyped-def]
    pool, _, config = backed_up
    with DatasetLock(pool.dataset("r"), "test"):
        assert cli("restore", "--config", config, "--target-dataset", pool.dataset("r"), "--yes") == 6
    assert "busy" in error_line(capsys)


def test_the_plan_warns_before_any_download_when_the_chain_may_not_fit_the_target(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    (zpool.path("data") / "random.bin").write_bytes(os.urandom(12 << 20))
    config = write_config(tmp_path, dataset, local_remote)
    assert cli("backup", "--config", config) == 0
    small = zpool.dataset("small")
    rig.run(["zfs", "create", "-o", "quota=6M", small])  # its available space: 6 MiB at most

    capsys.readouterr()
    assert cli("restore", "--config", config, "--target-dataset", f"{small}/copy", "--yes", "--dry-run") == 0
    plan = capsys.readouterr().out
    assert "WARNING: the chain's streams are 12." in plan and f"MiB raw and {small} has " in plan, plan
    assert "the restore may not fit" in plan
    assert plan.index("WARNING") < plan.index("rclone"), "the warning comes before any command"

    assert cli("restore", "--config", config, "--target-dataset", zpool.dataset("roomy"), "--yes", "--dry-run") == 0
    plan = capsys.readouterr().out
    assert "WARNING" not in plan and "MiB raw to receive, " in plan and f"available in {zpool.name}" in plan

    assert cli("restore", "--config", config, "--target-dataset", f"{small}/copy", "--yes") == EXIT_ZFS
    said = capsys.readouterr().err
    assert said.index("the restore may not fit") < said.index("zfsglacier: error: zfs receive"), said


def test_a_target_whose_parent_does_not_exist_is_refused_before_anything_runs(backed_up, capsys) -> None:  # type: ignore[no-untyped-def]
    pool, _, config = backed_up
    target = pool.dataset("missing/parent/copy")
    assert cli("restore", "--config", config, "--target-dataset", target, "--yes") == EXIT_USAGE
    assert f"--target-dataset {target}: its parent {pool.dataset('missing/parent')} does not exist" \
        in error_line(capsys)
    assert not dataset_exists(pool.dataset("missing"))
