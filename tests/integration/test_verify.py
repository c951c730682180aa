"""`zfsglacier verify`: every stored backup checked against its manifest; --deep receives the chain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import rig
from helpers import back_up_a_chain, cli, list_json, write_config

from zfsglacier.commands.verify import SCRATCH_PREFIX
from zfsglacier.errors import EXIT_CHAIN, EXIT_INTEGRITY, EXIT_OK
from zfsglacier.remote.manifest import SELF_CHECK, content_sha256

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))


@pytest.fixture
def three_backups(zpool: rig.Pool, rclone_remote: rig.Remote, tmp_path: Path,
                  capsys: pytest.CaptureFixture[str]) -> tuple[rig.Remote, Path, list[dict[str, object]]]:
    """A full and two incrementals."""
    _, config = back_up_a_chain(zpool, rclone_remote, tmp_path, seed="verify", n_files=20)
    records = list_json(config, capsys)
    assert [r["kind"] for r in records] == ["full", "incremental", "incremental"]
    capsys.readouterr()
    return rclone_remote, config, records


def stored(remote: rig.Remote, record: dict[str, object]) -> Path:
    return remote.root / str(record["object"]).split(":", 1)[1].split("/", 1)[1]


def verify_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().out.splitlines()


def test_verify_checks_the_newest_chain_and_says_so_per_backup(three_backups, capsys) -> None:  # type: ignore[no-untyped-def]
    _, config, records = three_backups
    assert cli("verify", "--config", config) == EXIT_OK
    lines = verify_lines(capsys)
    assert [line.split()[:2] for line in lines] == [["OK", str(r["snapshot"])] for r in records]


def test_verify_snapshot_checks_only_the_chain_it_needs(three_backups, capsys) -> None:  # type: ignore[no-untyped-def]
    _, config, records = three_backups
    assert cli("verify", "--config", config, "--snapshot", str(records[0]["snapshot"])) == EXIT_OK
    assert [line.split()[1] for line in verify_lines(capsys)] == [records[0]["snapshot"]]


def test_a_flipped_byte_fails_verification_and_names_the_object(three_backups, capsys) -> None:  # type: ignore[no-untyped-def]
    remote, config, records = three_backups
    middle = stored(remote, records[1])
    data = bytearray(middle.read_bytes())
    data[len(data) // 2] ^= 0x01
    middle.write_bytes(bytes(data))
    assert cli("verify", "--config", config, "--all") == EXIT_INTEGRITY
    lines = verify_lines(capsys)
    status = {line.split()[1]: line.split()[0] for line in lines if line.startswith(("OK", "FAILED"))}
    assert status == {records[0]["snapshot"]: "OK", records[1]["snapshot"]: "FAILED", records[2]["snapshot"]: "OK"}
    failed = next(line for line in lines if line.startswith("FAILED"))
    assert str(records[1]["object"]) in failed
    # zstd's own frame checksum may catch it before the whole object's sha256 does.
    assert "does not match its manifest" in failed or "doesn't match checksum" in failed
    assert "zfs receive" not in failed  # verify never receives outside --deep
    assert lines[-1] == "1 of 3 backup(s) failed verification"


def test_a_truncated_object_fails_and_a_missing_one_is_a_chain_error(three_backups, capsys) -> None:  # type: ignore[no-untyped-def]
    remote, config, records = three_backups
    newest = stored(remote, records[2])
    newest.write_bytes(newest.read_bytes()[:-100])
    assert cli("verify", "--config", config) == EXIT_INTEGRITY
    assert "bytes on the remote, its manifest says" in verify_lines(capsys)[-2]
    stored(remote, records[0]).unlink()
    assert cli("verify", "--config", config, "--snapshot", str(records[0]["snapshot"])) == EXIT_CHAIN
    assert "the data object of" in verify_lines(capsys)[0]


def test_deep_receives_the_chain_and_leaves_no_dataset(three_backups, zpool, capsys) -> None:  # type: ignore[no-untyped-def]
    _, config, records = three_backups
    assert cli("verify", "--config", config, "--deep") == EXIT_OK
    lines = verify_lines(capsys)
    assert lines[-1].startswith("OK      chain of 3 backup(s) up to " + str(records[-1]["snapshot"]))
    assert "guid matches" in lines[-1]
    left = rig.out(["zfs", "list", "-H", "-o", "name", "-r", zpool.name])
    assert SCRATCH_PREFIX not in left


def test_deep_is_not_attempted_when_an_object_is_damaged(three_backups, zpool, capsys) -> None:  # type: ignore[no-untyped-def]
    remote, config, records = three_backups
    stored(remote, records[0]).write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 100)
    assert cli("verify", "--config", config, "--deep") != EXIT_OK
    assert not any("received into" in line for line in verify_lines(capsys))
    assert SCRATCH_PREFIX not in rig.out(["zfs", "list", "-H", "-o", "name", "-r", zpool.name])


def test_nothing_to_verify_is_an_error_not_a_pass(zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    dataset = zpool.dataset("empty")
    rig.run(["zfs", "create", dataset])
    config = write_config(tmp_path, dataset, local_remote, "zstd")
    for flags in ([], ["--all"]):
        assert cli("verify", "--config", config, *flags) == EXIT_CHAIN
        assert "no committed backups" in capsys.readouterr().err


def test_a_rewritten_manifest_that_still_checks_out_differs_from_the_index(three_backups, capsys) -> None:  # type: ignore[no-untyped-def]
    """Same size as the index's copy, so list and restore use the copy; verify reads the object itself."""
    remote, config, records = three_backups
    path = stored(remote, records[1]).parent / f"{records[1]['snapshot']}.manifest.json"
    doc = json.loads(path.read_bytes())
    doc["created"] = "1999" + doc["created"][4:]  # a change of the same length, sealed again
    doc[SELF_CHECK] = content_sha256(doc)
    size = path.stat().st_size
    path.write_bytes((json.dumps(doc, indent=2) + "\n").encode())
    assert path.stat().st_size == size
    assert cli("verify", "--config", config, "--all") == EXIT_INTEGRITY
    lines = verify_lines(capsys)
    assert [line for line in lines if line.startswith("FAILED")] == [
        f"FAILED  manifest {remote.path(f'{path.parent.relative_to(remote.root)}/{path.name}')}: differs from its "
        f"committed copy in zfsglacier.index.json ({size} bytes, the copy {size}): the stored manifest was changed "
        "after the commit"
    ]
