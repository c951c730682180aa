"""Names a shell would mangle go through as single arguments: spaces, ':', '.', a component starting
with '-', a snapshot prefix with a space, and restore arguments that look like shell code."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import rig
from helpers import back_up_a_chain, cli, list_json

from zfsglacier.errors import EXIT_CHAIN, EXIT_OK, EXIT_USAGE

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))


def test_odd_but_valid_names_round_trip(zpool: rig.Pool, rclone_remote: rig.Remote, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    parent = zpool.dataset("data set:v1.0")
    dataset = f"{parent}/-odd name"
    rig.run(["zfs", "create", parent])
    rig.run(["zfs", "create", dataset])
    files = zpool.path("data set:v1.0") / "-odd name"
    rig.populate(files, seed="hostile", n_files=8)
    config = tmp_path / "odd.ini"
    config.write_text(
        f"[zfs]\ndataset = {dataset}\nsnapshot_prefix = nightly backup-\n"
        f"[rclone]\nremote = {rclone_remote.name}\nbucket_name = {rclone_remote.bucket}\n"
        f"config_path = {rclone_remote.config_path}\n"
    )
    assert cli("backup", "--config", config, "--dry-run") == EXIT_OK
    plan = capsys.readouterr().out.splitlines()
    snapshot_line = next(line for line in plan if " snapshot " in line)
    argv = shlex.split(snapshot_line)
    assert argv[-1].startswith(f"{dataset}@nightly backup-"), "the rendered command pastes as one argument"

    assert cli("backup", "--config", config) == EXIT_OK
    rig.mutate(files, seed=1)
    assert cli("backup", "--config", config) == EXIT_OK
    records = list_json(config, capsys)
    assert [r["kind"] for r in records] == ["full", "incremental"]
    assert all(str(r["snapshot"]).startswith("nightly backup-") for r in records)
    assert all(f"{dataset}/nightly backup-" in str(r["object"]) for r in records)

    target = zpool.dataset("restored copy:1")
    assert cli("restore", "--config", config, "--target-dataset", target, "--yes") == EXIT_OK
    assert rig.tree_digest(zpool.path("restored copy:1")) == rig.tree_digest(files)
    assert cli("verify", "--config", config, "--all") == EXIT_OK


@pytest.mark.parametrize("snapshot", ["$(touch {canary})", "x; touch {canary}", "`touch {canary}`", "-rf"])
def test_shell_code_in_restore_arguments_is_only_a_name(
    snapshot: str, zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, config = back_up_a_chain(zpool, local_remote, tmp_path, seed="shell", n_files=4, backups=1)
    canary = tmp_path / "canary"
    capsys.readouterr()
    code = cli("restore", "--config", config, "--target-dataset", zpool.dataset("r"), "--yes",
               f"--snapshot={snapshot.format(canary=canary)}")  # with '=', argparse takes "-rf" as the value
    assert code == EXIT_CHAIN
    assert "has no committed backup" in capsys.readouterr().err
    assert not canary.exists()
    assert cli("restore", "--config", config, "--target-dataset", f"{zpool.name}/x; touch {canary}", "--yes") \
        == EXIT_USAGE
    assert "--target-dataset" in capsys.readouterr().err
    assert not canary.exists()
    assert not rig.pool_exists("x")  # nothing created from the hostile name


def test_a_target_too_long_for_the_restored_snapshot_names_is_refused_before_anything_runs(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    _, config = back_up_a_chain(zpool, local_remote, tmp_path, seed="long", n_files=4, backups=1)
    snapshot = str(list_json(config, capsys)[0]["snapshot"])
    # A valid dataset name (under 256 characters) that leaves no room for "@" + the snapshot name.
    target = f"{zpool.name}/" + "t" * (250 - len(zpool.name))
    capsys.readouterr()
    assert cli("restore", "--config", config, "--target-dataset", target, "--yes") == EXIT_USAGE
    lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(lines) == 1 and f"{target}@{snapshot} is longer than 255 characters" in lines[0], lines
    assert rig.run(["zfs", "list", "-H", "-o", "name", target], check=False).returncode != 0
