"""[chain] full_every and differential on real ZFS and rclone: the kinds and bases `list` shows, which
local snapshots stay, and that every chain restores."""

from __future__ import annotations

from pathlib import Path

import pytest
import rig
from helpers import cli, list_json, snapshots, write_config

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))


def chain_config(tmp_path: Path, dataset: str, remote: rig.Remote, chain: str, retention: int = 7) -> Path:
    config = write_config(tmp_path, dataset, remote, retention=retention)
    config.write_text(config.read_text().replace("[compression]", f"[chain]\n{chain}\n[compression]"))
    return config


def test_differential_chains_base_every_incremental_on_the_full_and_keep_it_locally(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    source = zpool.path("data")
    config = chain_config(tmp_path, dataset, local_remote, "differential = yes", retention=2)
    digests = []
    for step in range(4):
        rig.populate(source / f"day{step}", seed=f"diff-{step}", n_files=6)
        if step == 2:
            rig.mutate(source / "day0", seed="diff")
        assert cli("backup", "--config", config) == 0
        digests.append(rig.tree_digest(source))
    records = list_json(config, capsys)
    full = records[0]["snapshot"]
    assert [(r["kind"], r["base"]) for r in records] == [("full", None)] + [("incremental", full)] * 3
    # snapshot_retention = 2 keeps the two newest, and the full, which the next backup is based on.
    assert [s.partition("@")[2] for s in snapshots(dataset)] == [full, records[2]["snapshot"], records[3]["snapshot"]]

    for position in (3, 1):
        target = zpool.dataset(f"restored{position}")
        capsys.readouterr()
        assert cli("restore", "--config", config, "--target-dataset", target, "--yes",
                   "--snapshot", str(records[position]["snapshot"])) == 0
        assert "2 object(s) in order" in capsys.readouterr().err, "a differential restore needs the full and one"
        assert rig.tree_digest(zpool.path(f"restored{position}")) == digests[position]


def test_full_every_starts_a_new_chain_after_that_many_backups(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    source = zpool.path("data")
    config = chain_config(tmp_path, dataset, local_remote, "full_every = 3")
    for step in range(5):
        rig.populate(source / f"day{step}", seed=f"every-{step}", n_files=4)
        capsys.readouterr()
        assert cli("backup", "--config", config) == 0
        if step == 3:
            assert "holds 3 backup(s) ([chain] full_every = 3)" in capsys.readouterr().err
    records = list_json(config, capsys)
    assert [r["kind"] for r in records] == ["full", "incremental", "incremental", "full", "incremental"]
    assert records[4]["base"] == records[3]["snapshot"]
    target = zpool.dataset("restored")
    capsys.readouterr()
    assert cli("restore", "--config", config, "--target-dataset", target, "--yes") == 0
    assert "2 object(s) in order" in capsys.readouterr().err
    assert rig.tree_digest(zpool.path("restored")) == rig.tree_digest(source)
