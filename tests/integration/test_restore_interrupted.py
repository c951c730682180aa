"""A restore stopped partway through a chain (SIGTERM from systemd, or SIGKILL) keeps what it received,
marked unfinished and unmounted, and the same restore run again continues from there."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import rig
from helpers import cli, list_json, snapshots, start_cli, wait_for_child, write_config

from zfsglacier.errors import EXIT_SIGNAL_BASE

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))
    return {"ZFSGLACIER_LOCK_DIR": str(tmp_path / "locks")}


def prop(dataset: str, name: str) -> str:
    return rig.out(["zfs", "get", "-H", "-o", "value", name, dataset])


def gone_or_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def stop_in_second_object(config: Path, target: str, second_object: str, env: dict[str, str]):  # type: ignore[no-untyped-def]
    """Start a restore and freeze it in the download of the chain's second object."""
    process = start_cli("restore", "--config", config, "--target-dataset", target, "--yes", env=env)
    cat = wait_for_child(process.pid, second_object, timeout=120)
    os.kill(cat, signal.SIGSTOP)
    return process, cat


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_an_interrupted_restore_is_marked_unfinished_and_continues(
    how: str, zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, lock_dir: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    data = zpool.path("data")
    config = write_config(tmp_path, dataset, local_remote)
    for step in range(3):  # a full and two incrementals, each big enough to be caught mid-stream
        (data / f"part-{step}.bin").write_bytes(os.urandom(8 << 20))
        assert cli("backup", "--config", config) == 0
    records = list_json(config, capsys)
    assert [r["kind"] for r in records] == ["full", "incremental", "incremental"]
    second = str(records[1]["object"]).rpartition("/")[2]
    target = zpool.dataset("restored")

    process, cat = stop_in_second_object(config, target, second, lock_dir)
    process.send_signal(signal.SIGTERM if how == "SIGTERM" else signal.SIGKILL)
    _, err_bytes = process.communicate(timeout=120)
    err = err_bytes.decode()
    assert "Traceback" not in err
    if how == "SIGTERM":
        assert process.returncode == EXIT_SIGNAL_BASE + signal.SIGTERM
        errors = [line for line in err.splitlines() if "error:" in line]
        assert len(errors) == 1, err
        assert f"interrupted by SIGTERM while receiving {records[1]['snapshot']} (2 of 3) into {target}" \
            in errors[0], errors[0]
        assert f"is unfinished: it holds {target}@{records[0]['snapshot']} (1 of 3 backups)" in errors[0]
    else:
        assert process.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while gone_or_zombie(cat) is False and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone_or_zombie(cat), "rclone cat must not outlive the restore"
    # Only the full was committed; the frozen download never reached zfs receive's commit.
    assert [s.partition("@")[2] for s in snapshots(target)] == [records[0]["snapshot"]]
    assert prop(target, "org.zfsglacier:restore") == "incomplete"
    assert prop(target, "mounted") == "no"

    capsys.readouterr()
    assert cli("restore", "--config", config, "--target-dataset", target, "--yes") == 0
    out = capsys.readouterr()
    assert f"continue the unfinished restore into {target}: 1 of 3 object(s) already received" in out.err + out.out
    assert [s.partition("@")[2] for s in snapshots(target)] == [r["snapshot"] for r in records]
    assert prop(target, "org.zfsglacier:restore") == "-"
    assert prop(target, "mounted") == "yes"
    assert rig.tree_digest(zpool.path("restored")) == rig.tree_digest(data)
