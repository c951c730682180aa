"""`zfsglacier status` and the Prometheus textfile against a real remote and real backups."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import rig
from helpers import cli, write_config

from zfsglacier.errors import EXIT_USAGE

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))


def status(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = cli("status", "--config", config)
    return code, capsys.readouterr().out


def test_status_follows_the_age_of_the_newest_backup_and_backups_write_the_textfile(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    rig.populate(zpool.path("data"), seed="status")
    textfile = tmp_path / "textfile" / "zfsglacier.prom"
    textfile.parent.mkdir()
    config = write_config(tmp_path, dataset, local_remote,
                          extra=f"[monitoring]\nwarn_after = 1h\ncrit_after = 2h\ntextfile = {textfile}\n")

    code, out = status(config, capsys)
    assert code == 2 and out.startswith("ZFSGLACIER CRITICAL - "), out

    assert cli("backup", "--config", config) == 0
    code, out = status(config, capsys)
    assert code == 0 and out.startswith(f"ZFSGLACIER OK - {dataset}: newest backup "), out
    metrics = textfile.read_text()
    label = f'{{dataset="{dataset}"}}'
    assert re.search(rf"^zfsglacier_last_run_success{re.escape(label)} 1$", metrics, re.MULTILINE), metrics
    success = re.search(rf"^zfsglacier_last_success_timestamp_seconds{re.escape(label)} (\S+)$", metrics,
                        re.MULTILINE)
    assert success is not None and abs(float(success[1]) - time.time()) < 120
    assert re.search(rf"^zfsglacier_last_backup_raw_bytes{re.escape(label)} [1-9]\d*$", metrics, re.MULTILINE)

    later = datetime.now(UTC) + timedelta(minutes=90)  # past warn_after, before crit_after
    monkeypatch.setattr("zfsglacier.commands.status._now", lambda: later)
    code, out = status(config, capsys)
    assert code == 1 and out.startswith("ZFSGLACIER WARNING - "), out

    # A failed run keeps the last success and says it failed.
    config.write_text(config.read_text().replace(f"remote = {local_remote.name}", "remote = nosuchremote"))
    assert cli("backup", "--config", config) == EXIT_USAGE
    metrics = textfile.read_text()
    assert re.search(rf"^zfsglacier_last_run_success{re.escape(label)} 0$", metrics, re.MULTILINE), metrics
    assert f"zfsglacier_last_success_timestamp_seconds{label} {success[1]}" in metrics


def test_status_of_an_unreadable_remote_is_unknown(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, zpool.dataset("data"), local_remote)
    config.write_text(config.read_text().replace(f"remote = {local_remote.name}", "remote = nosuchremote"))
    code, out = status(config, capsys)
    assert code == 3 and out.startswith("ZFSGLACIER UNKNOWN - "), out
