"""Scheduled restore drills (`verify --drill`, systemd/zfsglacier-verify.timer): the newest chain is checked
(and with [verify] deep = yes received into a scratch dataset on [verify] scratch_pool), the outcome is
written beside the backups and to the textfile, and `status` warns once the last successful drill is
older than [monitoring] verify_warn_after (the clock injected, not slept). A drill never thaws: objects in
Deep Archive (moto's server) are skipped, with what a full drill would cost."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import rig
from helpers import cli, write_config

from zfsglacier.commands import status, status_verdict
from zfsglacier.errors import EXIT_INTEGRITY
from zfsglacier.remote.drill_record import DRILL_NAME

pytestmark = pytest.mark.integration

# Backups may be weeks old here: only the drill's age is judged.
PATIENT = "[monitoring]\nwarn_after = 60d\ncrit_after = 90d\nverify_warn_after = 8d\n"


@pytest.fixture(autouse=True)
def _lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))


def backed_up(zpool: rig.Pool, remote: rig.Remote, tmp_path: Path, extra: str = "", rclone_keys: str = "") -> \
        tuple[str, Path]:
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    config = write_config(tmp_path, dataset, remote, extra=PATIENT + extra)
    config.write_text(config.read_text().replace("[compression]", f"{rclone_keys}[compression]"))
    for step in range(2):
        rig.populate(zpool.path("data") / f"step{step}", seed=f"drill-{step}", n_files=6)
        assert cli("backup", "--config", config) == 0
    return dataset, config


def check(config: Path, now: datetime) -> tuple[int, str]:
    lines: list[str] = []
    code = status.run(config, now=now, out=lines.append)
    return code, "\n".join(lines)


def test_a_deep_drill_on_a_scratch_pool_is_recorded_and_status_watches_its_age(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    textfile = tmp_path / "zfsglacier.prom"
    with rig.file_pool() as scratch_pool:
        drills = f"textfile = {textfile}\n[verify]\ndeep = yes\nscratch_pool = {scratch_pool.name}\n"
        dataset, config = backed_up(zpool, local_remote, tmp_path, drills)
        assert check(config, datetime.now(UTC))[0] == status_verdict.OK  # no drill yet: nothing to judge
        capsys.readouterr()
        assert cli("verify", "--config", config, "--drill") == 0
        out = capsys.readouterr().out
        assert out.count("OK      glacier-backup-") == 2
        assert f"received into {scratch_pool.name}/zfsglacier-verify-" in out
        assert rig.out(["zfs", "list", "-H", "-o", "name", "-r", scratch_pool.name]).split() == [scratch_pool.name]

    record = json.loads((local_remote.root / dataset / DRILL_NAME).read_text())
    assert record["success"] is True and record["deep"] is True and record["verified"] == 2
    assert record["bytes_read"] > 0 and record["last_success"] == record["last_run"]
    samples = textfile.read_text()
    assert f'zfsglacier_verify_last_run_success{{dataset="{dataset}"}} 1' in samples
    assert f'zfsglacier_verify_last_bytes_read{{dataset="{dataset}"}} {record["bytes_read"]}' in samples

    drilled = datetime.fromisoformat(record["last_success"])
    assert check(config, drilled + timedelta(days=7))[0] == status_verdict.OK
    code, line = check(config, drilled + timedelta(days=9))
    assert code == status_verdict.WARNING, line
    assert f"the last successful restore drill was 9d ago ({record['last_success']}): older than " \
           "verify_warn_after 8d" in line


def test_a_failed_drill_keeps_the_last_success_and_fails_loudly(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset, config = backed_up(zpool, local_remote, tmp_path)
    assert cli("verify", "--config", config, "--drill") == 0
    first = json.loads((local_remote.root / dataset / DRILL_NAME).read_text())
    damaged = sorted((local_remote.root / dataset).glob("*.incr.zfs.zst"))[-1]
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    capsys.readouterr()
    assert cli("verify", "--config", config, "--drill") == EXIT_INTEGRITY
    assert "FAILED  glacier-backup-" in capsys.readouterr().out
    record = json.loads((local_remote.root / dataset / DRILL_NAME).read_text())
    assert record["success"] is False and record["last_success"] == first["last_success"]
    code, line = check(config, datetime.fromisoformat(first["last_success"]) + timedelta(days=10))
    assert code == status_verdict.WARNING and "the last successful restore drill was 10d" in line


def test_a_drill_never_thaws_and_says_what_a_full_drill_would_cost(
    zpool: rig.Pool, moto_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset, config = backed_up(zpool, moto_remote, tmp_path, rclone_keys="storage_class = DEEP_ARCHIVE\n")
    capsys.readouterr()
    assert cli("verify", "--config", config, "--drill") == 0
    captured = capsys.readouterr()
    assert captured.out.count("SKIPPED glacier-backup-") == 2, captured.out
    assert "# for a drill of the whole chain: 2 object(s)" in captured.out and "DEEP_ARCHIVE" in captured.out
    assert "the drill verified no backup (all are in cold storage)" in captured.err
    still = rig.run(moto_remote.argv("lsjson", moto_remote.path(dataset)), check=True).stdout
    frozen = [e["Name"] for e in json.loads(still) if e.get("Tier") == "DEEP_ARCHIVE"]
    for name in frozen:  # no thaw was requested: every data object still refuses a read
        refused = rig.run(moto_remote.argv("cat", "--count", "1", moto_remote.path(f"{dataset}/{name}")), check=False)
        assert refused.returncode != 0 and b"restore first" in refused.stderr
    record = json.loads(rig.run(moto_remote.argv("cat", moto_remote.path(f"{dataset}/{DRILL_NAME}"))).stdout)
    assert record["success"] is False and record["skipped"] == 2 and record["verified"] == 0
    code, line = check(config, datetime.now(UTC))
    assert code == status_verdict.WARNING and "no restore drill has succeeded yet" in line
