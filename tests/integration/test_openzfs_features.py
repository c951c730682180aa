"""The OpenZFS send features zfsglacier uses where the installed zfs has them: raw sends of natively
encrypted datasets, bookmarks as the base of the next incremental, compressed sends (-c), and restores
that find the partial state of an interrupted `zfs receive -s` in their target. Each needs kernel
OpenZFS: run by `make test-openzfs` (OpenZFS 2.1 and 2.3 in a VM), deselected on zfs-fuse.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import rig
from helpers import cli, destroy_snapshot_on_purpose, list_json, remote_files, snapshots, write_config

pytestmark = [pytest.mark.integration, pytest.mark.openzfs]

MARKER = b"PLAINTEXT-THAT-MUST-NOT-LEAVE-THE-HOST "


@pytest.fixture(autouse=True)
def _lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))


def prop(dataset: str, name: str) -> str:
    return rig.out(["zfs", "get", "-H", "-o", "value", name, dataset])


def bookmarks(dataset: str) -> list[str]:
    out = rig.out(["zfs", "list", "-H", "-o", "name", "-t", "bookmark", "-d", "1", dataset])
    return out.splitlines()


def short(snapshot: str) -> str:
    return snapshot.partition("@")[2]


def test_an_encrypted_dataset_is_sent_raw_without_its_key_and_restores_encrypted(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "key"
    key.write_bytes(os.urandom(32))
    dataset = zpool.dataset("secret")
    rig.run(["zfs", "create", "-o", "encryption=on", "-o", "keyformat=raw", "-o", f"keylocation=file://{key}",
             "-o", "compression=off", dataset])
    source = zpool.path("secret")
    (source / "plain.txt").write_bytes(MARKER * 20_000)
    rig.populate(source, seed="raw", n_files=40)
    config = write_config(tmp_path, dataset, local_remote)
    capsys.readouterr()
    assert cli("backup", "--config", config) == 0
    assert "raw send (zfs send -w)" in capsys.readouterr().err

    # The key is not needed for a backup: the incremental is made with it unloaded.
    rig.mutate(source, seed="raw")
    expected = rig.tree_digest(source)
    rig.run(["zfs", "unmount", dataset])
    rig.run(["zfs", "unload-key", dataset])
    assert prop(dataset, "keystatus") == "unavailable"
    assert cli("backup", "--config", config) == 0

    full, incremental = list_json(config, capsys)
    assert (full["kind"], incremental["kind"]) == ("full", "incremental")
    for record in (full, incremental):
        assert record["raw_send"] is True and "-w" in record["send_flags"], record
        assert record["compressor"] == "none" and str(record["object"]).endswith(".zfs"), record
    capsys.readouterr()
    assert cli("list", "--config", config) == 0
    assert capsys.readouterr().out.count("none (raw encrypted send)") == 2

    # What is stored is ciphertext: the marker is nowhere in it, yet a decrypted send shows it plainly.
    stored = b"".join((local_remote.root / name).read_bytes() for name in remote_files(local_remote))
    assert MARKER not in stored
    rig.run(["zfs", "load-key", dataset])
    assert MARKER in rig.run(["zfs", "send", f"{dataset}@{full['snapshot']}"]).stdout

    assert cli("verify", "--config", config, "--all") == 0
    target = zpool.dataset("restored")
    capsys.readouterr()
    assert cli("restore", "--config", config, "--target-dataset", target, "--yes") == 0
    said = capsys.readouterr().err
    assert [short(s) for s in snapshots(target)] == [full["snapshot"], incremental["snapshot"]]
    assert prop(target, "encryption") == prop(dataset, "encryption") != "off"
    assert (prop(target, "keystatus"), prop(target, "mounted")) == ("unavailable", "no")
    assert f"zfs load-key {target}" in said
    rig.run(["zfs", "load-key", "-L", f"file://{key}", target])
    rig.run(["zfs", "mount", target])
    assert rig.tree_digest(zpool.path("restored")) == expected


def test_send_raw_no_sends_an_encrypted_dataset_decrypted_and_compressed(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "key"
    key.write_bytes(os.urandom(32))
    dataset = zpool.dataset("secret")
    rig.run(["zfs", "create", "-o", "encryption=on", "-o", "keyformat=raw", "-o", f"keylocation=file://{key}",
             dataset])
    rig.populate(zpool.path("secret"), seed="decrypted", n_files=30)
    config = write_config(tmp_path, dataset, local_remote)
    config.write_text(config.read_text().replace("[rclone]", "send_raw = no\n[rclone]"))
    assert cli("backup", "--config", config) == 0
    (record,) = list_json(config, capsys)
    assert record["raw_send"] is False and record["compressor"] == "zstd", record
    target = zpool.dataset("restored")
    assert cli("restore", "--config", config, "--target-dataset", target, "--yes") == 0
    assert prop(target, "encryption") == "off"  # received as plain data: encrypt it again on the target's side
    assert rig.tree_digest(zpool.path("restored")) == rig.tree_digest(zpool.path("secret"))


def test_the_bookmark_of_the_last_backup_keeps_the_chain_incremental_when_its_snapshot_is_destroyed(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    source = zpool.path("data")
    rig.populate(source, seed="bookmark", n_files=40)
    config = write_config(tmp_path, dataset, local_remote)
    assert cli("backup", "--config", config) == 0
    (first,) = snapshots(dataset)
    assert bookmarks(dataset) == [f"{dataset}#{short(first)}"]

    # Another tool (or an admin) destroys the base snapshot: the bookmark still serves as the base.
    destroy_snapshot_on_purpose(first, keep_bookmark=True)
    rig.mutate(source, seed="bookmark")
    capsys.readouterr()
    assert cli("backup", "--config", config) == 0
    assert f"incremental from bookmark {dataset}#{short(first)}" in capsys.readouterr().err
    (second,) = snapshots(dataset)
    assert bookmarks(dataset) == [f"{dataset}#{short(second)}"], "the superseded bookmark is destroyed"

    rig.populate(source / "more", seed="bookmark-more", n_files=10)
    assert cli("backup", "--config", config) == 0
    records = list_json(config, capsys)
    assert [(r["kind"], r["base"]) for r in records] == [
        ("full", None), ("incremental", short(first)), ("incremental", short(second))]

    target = zpool.dataset("restored")
    assert cli("restore", "--config", config, "--target-dataset", target, "--yes") == 0
    assert rig.tree_digest(zpool.path("restored")) == rig.tree_digest(source)
    assert [short(s) for s in snapshots(target)] == [r["snapshot"] for r in records]


def test_send_compressed_stores_a_compressed_send_that_restores(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", "-o", "compression=lz4", dataset])
    source = zpool.path("data")
    rig.populate(source, seed="compressed", n_files=40)
    (source / "log.txt").write_bytes(b"2026-11-26 03:15:00 backup ran, all well\n" * 200_000)
    config = write_config(tmp_path, dataset, local_remote)
    config.write_text(config.read_text().replace("[rclone]", "send_compressed = yes\n[rclone]"))
    assert cli("backup", "--config", config) == 0
    rig.mutate(source, seed="compressed")
    assert cli("backup", "--config", config) == 0
    records = list_json(config, capsys)
    assert all("-c" in r["send_flags"] for r in records), records
    # The stream carries the lz4 blocks as stored: far smaller than the same snapshot sent plainly.
    full = f"{dataset}@{records[0]['snapshot']}"
    plain = len(rig.run(["zfs", "send", full]).stdout)
    assert int(str(records[0]["raw_bytes"])) < plain // 2, f"zfs send -c: {records[0]['raw_bytes']}, plain: {plain}"
    target = zpool.dataset("restored")
    assert cli("restore", "--config", config, "--target-dataset", target, "--yes") == 0
    assert rig.tree_digest(zpool.path("restored")) == rig.tree_digest(source)


def test_a_restore_aborts_the_partial_state_of_an_interrupted_receive_s_and_continues(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    source = zpool.path("data")
    rig.populate(source, seed="resume", n_files=30)
    config = write_config(tmp_path, dataset, local_remote)
    assert cli("backup", "--config", config) == 0
    (source / "big.bin").write_bytes(os.urandom(6 << 20))
    assert cli("backup", "--config", config) == 0
    first, second = list_json(config, capsys)

    # A restore stopped at the second object (damaged in transit, say) keeps the first, marked unfinished.
    second_path = local_remote.root / str(second["object"]).partition(f"{local_remote.bucket}/")[2]
    good = second_path.read_bytes()
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0x01
    second_path.write_bytes(bytes(damaged))
    target = zpool.dataset("restored")
    assert cli("restore", "--config", config, "--target-dataset", target, "--yes") != 0
    assert [short(s) for s in snapshots(target)] == [first["snapshot"]]
    second_path.write_bytes(good)

    # Then someone tries the next stream by hand with zfs receive -s, and that is cut off too.
    stream = rig.run(["zfs", "send", "-i", f"{dataset}@{first['snapshot']}",
                      f"{dataset}@{second['snapshot']}"]).stdout
    cut = rig.run(["zfs", "receive", "-s", "-F", target], input=stream[: len(stream) // 2], check=False)
    assert cut.returncode != 0
    assert prop(target, "receive_resume_token") != "-"

    capsys.readouterr()
    assert cli("restore", "--config", config, "--target-dataset", target, "--yes") == 0
    assert "aborted it (zfs receive -A)" in capsys.readouterr().err
    assert prop(target, "receive_resume_token") == "-"
    assert [short(s) for s in snapshots(target)] == [first["snapshot"], second["snapshot"]]
    assert (prop(target, "org.zfsglacier:restore"), prop(target, "mounted")) == ("-", "yes")
    assert rig.tree_digest(zpool.path("restored")) == rig.tree_digest(source)
