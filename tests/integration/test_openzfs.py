"""What only kernel OpenZFS shows (zfs-fuse cannot): `zfs list -p`, `zfs send -nP` estimates against the streams
zfsglacier stored, and a round trip on the real module. Run by `make test-openzfs` (a VM with OpenZFS 2.1 and
2.3) or natively by `make test` on a host with kernel OpenZFS; deselected on zfs-fuse.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import rig
from helpers import cli, list_json, snapshots, write_config

pytestmark = [pytest.mark.integration, pytest.mark.openzfs]

# zfs send -nP estimates from the blocks a snapshot references, not from the stream; on small streams the
# per-record overhead it leaves out matters (OpenZFS 2.3: 641 KB estimated for an 833 KB incremental).
ESTIMATE_TOLERANCE = 0.25
ESTIMATE_SLACK_BYTES = 128 * 1024


@pytest.fixture(autouse=True)
def _lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))


def send_estimate(snapshot: str, base: str | None = None) -> int:
    """The size `zfs send -nP` announces: its `size<TAB>N` line."""
    argv = ["zfs", "send", "-nP", *(["-i", base] if base else []), snapshot]
    lines = rig.out(argv).splitlines()
    sizes = [line.split("\t")[1] for line in lines if line.startswith("size\t")]
    assert len(sizes) == 1, f"{' '.join(argv)} printed no single size line: {lines}"
    return int(sizes[0])


def assert_close(estimate: int, actual: int, what: str) -> None:
    allowed = actual * ESTIMATE_TOLERANCE + ESTIMATE_SLACK_BYTES
    assert abs(estimate - actual) <= allowed, f"{what}: zfs send -nP says {estimate}, the stream had {actual} bytes"


def test_zfs_list_p_prints_exact_numbers_matching_zfs_get(zpool: rig.Pool) -> None:
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    rig.populate(zpool.path("data"), seed="list-p")
    rig.run(["zfs", "snapshot", f"{dataset}@one"])
    listed = rig.out(["zfs", "list", "-Hp", "-t", "snapshot", "-o", "name,guid,createtxg,creation,used", "-r", dataset])
    rows = [line.split("\t") for line in listed.splitlines()]
    assert [row[0] for row in rows] == [f"{dataset}@one"]
    for prop, value in zip(("guid", "createtxg", "creation", "used"), rows[0][1:], strict=True):
        assert value.isdigit(), f"zfs list -p printed {prop}={value!r}, not an exact number"
        assert value == rig.out(["zfs", "get", "-Hp", "-o", "value", prop, f"{dataset}@one"])


def test_send_estimates_match_the_streams_zfsglacier_stored_and_the_chain_restores(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    source = zpool.path("data")
    rig.populate(source, seed="estimate", n_files=120)
    config = write_config(tmp_path, dataset, local_remote)
    assert cli("backup", "--config", config) == 0
    rig.mutate(source, seed="estimate")
    rig.populate(source / "more", seed="estimate-more", n_files=60)
    assert cli("backup", "--config", config) == 0

    full, incremental = list_json(config, capsys)
    assert (full["kind"], incremental["kind"]) == ("full", "incremental")
    assert [s.partition("@")[2] for s in snapshots(dataset)] == [full["snapshot"], incremental["snapshot"]]
    full_snap, incr_snap = f"{dataset}@{full['snapshot']}", f"{dataset}@{incremental['snapshot']}"
    assert_close(send_estimate(full_snap), int(str(full["raw_bytes"])), "full")
    assert_close(send_estimate(incr_snap, full_snap), int(str(incremental["raw_bytes"])), "incremental")

    target = zpool.dataset("restored")
    assert cli("restore", "--config", config, "--target-dataset", target, "--yes") == 0
    assert rig.tree_digest(zpool.path("restored")) == rig.tree_digest(source)
    assert [s.partition("@")[2] for s in snapshots(target)] == [full["snapshot"], incremental["snapshot"]]
    state = rig.out(["zfs", "get", "-H", "-o", "value", "mounted,org.zfsglacier:restore", target]).splitlines()
    assert state == ["yes", "-"], f"restored {target}: mounted, restore mark = {state}"
