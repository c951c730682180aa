"""What zfsglacier/zfs/capabilities.py says the installed zfs can do is what it does: each claim is tried for real.
Runs on whatever ZFS the rig has (zfs-fuse here, OpenZFS in the VM of `make test-openzfs`)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import rig
from helpers import cli, list_json, write_config

from zfsglacier.zfs import capabilities

pytestmark = pytest.mark.integration


@pytest.fixture
def snapshot(zpool: rig.Pool) -> str:
    dataset = zpool.dataset("caps")
    rig.run(["zfs", "create", dataset])
    rig.populate(zpool.path("caps"), seed="caps", n_files=4)
    rig.run(["zfs", "snapshot", f"{dataset}@one"])
    return f"{dataset}@one"


def works(argv: list[str]) -> bool:
    return rig.run(argv, check=False).returncode == 0


def test_each_detected_feature_matches_the_real_zfs(snapshot: str, zpool: rig.Pool) -> None:
    tools = capabilities.zfs_tools()
    dataset = snapshot.partition("@")[0]
    assert works(["zfs", "list", "-H", "-p", "-o", "name,used", dataset]) == tools.parsable_list
    assert works(["zfs", "hold", "zgt-test", snapshot]) == tools.holds
    if tools.holds:  # a held snapshot cannot be destroyed (zfs-fuse's `zfs holds` cannot list them)
        assert not works(["zfs", "destroy", snapshot])
        rig.run(["zfs", "release", "zgt-test", snapshot])
    bookmark = works(["zfs", "bookmark", snapshot, f"{dataset}#one"])
    assert bookmark == (tools.bookmarks and capabilities.pool_has_feature(zpool.name, "bookmarks"))
    estimate = rig.run(["zfs", "send", "-n", "-P", snapshot], check=False)
    assert (estimate.returncode == 0 and b"size" in estimate.stdout + estimate.stderr) == tools.send_estimate
    # A flag zfs send does not list is refused (before any stream is written).
    assert works(["zfs", "send", "-L", "-e", "-n", "-P", snapshot]) == (
        tools.large_blocks and tools.embedded_data and tools.send_estimate)
    if tools.receive_unmounted:  # zfs-fuse accepts -u without listing it; zfsglacier uses only listed flags
        assert receives_unmounted(snapshot, f"{zpool.name}/caps-received")


def receives_unmounted(snapshot: str, target: str) -> bool:
    """`zfs send | zfs receive -u`: received, and left unmounted."""
    zfs = rig.find_tool("zfs") or "zfs"
    send = subprocess.Popen([zfs, "send", snapshot], stdout=subprocess.PIPE)
    assert send.stdout is not None
    receive = subprocess.run([zfs, "receive", "-u", target], stdin=send.stdout,
                             capture_output=True, check=False)
    send.stdout.close()
    send.wait()
    if receive.returncode != 0:
        return False
    return rig.out(["zfs", "get", "-H", "-o", "value", "mounted", target]) == "no"


def test_a_dataset_without_encryption_is_not_encrypted(snapshot: str) -> None:
    assert capabilities.dataset_is_encrypted(snapshot.partition("@")[0]) is False


def test_a_backup_uses_the_detected_stream_flags_and_estimates_its_size(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    (zpool.path("data") / "random.bin").write_bytes(os.urandom(4 << 20))
    config = write_config(tmp_path, dataset, local_remote)
    assert cli("backup", "--config", config) == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "the stream will be about" in line]
    [record] = list_json(config, capsys)
    assert record["send_flags"] == capabilities.send_options(capabilities.zfs_tools())
    assert len(said) == 1, said
    estimate_mib = float(said[0].rsplit("about ", 1)[1].split()[0])  # "... about 4.1 MiB"
    raw_mib = int(str(record["raw_bytes"])) / (1 << 20)
    assert 0.5 < raw_mib / estimate_mib < 2, (said, record["raw_bytes"])
