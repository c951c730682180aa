"""The base of the next incremental carries zfsglacier's hold, so another tool (sanoid,
zfs-auto-snapshot, a person) cannot destroy it; the bases it replaces are released and pruned."""

from __future__ import annotations

from pathlib import Path

import pytest
import rig
from helpers import back_up_a_chain, cli, list_json

from zfsglacier.zfs import capabilities

pytestmark = pytest.mark.integration


def userrefs(snapshot: str) -> int:
    return int(rig.out(["zfs", "get", "-Hp", "-o", "value", "userrefs", snapshot]))


def test_only_the_base_of_the_next_incremental_is_held(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))
    assert capabilities.zfs_tools().holds, "zfs-fuse and OpenZFS both have zfs hold"
    dataset, config = back_up_a_chain(zpool, local_remote, tmp_path, seed="holds", n_files=8)
    snapshots = [f"{dataset}@{r['snapshot']}" for r in list_json(config, capsys)]
    assert [userrefs(s) for s in snapshots] == [0, 0, 1]

    # Another tool's destroy of the base fails while zfsglacier holds it ...
    refused = rig.run(["zfs", "destroy", snapshots[-1]], check=False)
    # zfs-fuse says "dataset is busy", OpenZFS 2.3 "it's being held".
    assert refused.returncode != 0 and (b"busy" in refused.stderr or b"held" in refused.stderr), refused.stderr
    # ... so the next backup is still an incremental from it.
    rig.mutate(zpool.path("data"), seed="after")
    capsys.readouterr()
    assert cli("backup", "--config", config) == 0
    assert f"incremental from {snapshots[-1].partition('@')[2]}" in capsys.readouterr().err
    newest = f"{dataset}@{list_json(config, capsys)[-1]['snapshot']}"
    assert userrefs(newest) == 1 and userrefs(snapshots[-1]) == 0, "the hold moved to the new base"

    # Another tool's hold is left alone, and keeps its snapshot from being pruned.
    rig.run(["zfs", "hold", "sanoid", snapshots[0]])
    config.write_text(config.read_text().replace("snapshot_retention = 7", "snapshot_retention = 1"))
    rig.mutate(zpool.path("data"), seed="later")
    capsys.readouterr()
    assert cli("backup", "--config", config) == 0
    assert f"not pruning {snapshots[0]}: another tool holds it" in capsys.readouterr().err
    left = rig.out(["zfs", "list", "-H", "-o", "name", "-t", "snapshot", "-r", dataset]).splitlines()
    assert snapshots[0] in left and userrefs(snapshots[0]) == 1
    assert len(left) == 2 and userrefs(left[-1]) == 1  # the held one, and the new base
    assert cli("restore", "--config", config, "--target-dataset", zpool.dataset("r"), "--yes") == 0
    assert rig.tree_digest(zpool.path("r")) == rig.tree_digest(zpool.path("data"))
