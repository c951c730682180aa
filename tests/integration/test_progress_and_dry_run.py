"""What an admin sees: progress on a terminal (a bar) and in a log (plain lines, no carriage returns),
the summary line of each backup and restore, and `restore --dry-run`, whose commands restore the
dataset when pasted into a shell."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest
import rig
from helpers import back_up_a_chain, cli, dataset_exists, write_config

pytestmark = pytest.mark.integration

PROGRESS_LINE = re.compile(
    r"zfsglacier: (backup|restore) \S+: [\d.]+ \w+ of about [\d.]+ \w+ raw \(\d+%\), [\d.]+ \w+ stored, "
    r"ratio [\d.-]+, [\d.]+ \w+/s(, about \d+:\d\d:\d\d left)?$")
SUMMARY = r"[\d.]+ \w+ raw, [\d.]+ \w+ stored, ratio [\d.]+, \d+:\d\d:\d\d, [\d.]+ \w+/s"


@pytest.fixture(autouse=True)
def _lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))


def slow_backup_config(pool: rig.Pool, remote: rig.Remote, tmp_path: Path) -> tuple[str, Path]:
    """A dataset whose backup takes a few seconds: 40 MiB that does not compress, uploaded at 12 MiB/s (more than
    the pipeline and rclone buffer, so that the stream keeps moving while the upload is under way)."""
    dataset = pool.dataset("data")
    rig.run(["zfs", "create", dataset])
    rig.populate(pool.path("data"), seed="progress")
    (pool.path("data") / "random.bin").write_bytes(os.urandom(40 << 20))
    config = write_config(tmp_path, dataset, remote)
    config.write_text(config.read_text().replace("[compression]", "bwlimit = 12M\n[compression]"))
    return dataset, config


def run_zfsglacier(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zfsglacier", *map(str, argv)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=300, check=False)


def test_without_a_terminal_progress_is_logged_in_plain_lines_and_each_run_ends_with_a_summary(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path
) -> None:
    dataset, config = slow_backup_config(zpool, local_remote, tmp_path)
    backup = run_zfsglacier("--progress-interval", "0.3", "backup", "--config", config)
    assert backup.returncode == 0, backup.stderr
    assert "\r" not in backup.stderr
    lines = backup.stderr.splitlines()
    progress = [line for line in lines if PROGRESS_LINE.match(line)]
    assert len(progress) >= 3, backup.stderr
    assert all(line.startswith(f"zfsglacier: backup {dataset}@") for line in progress)
    assert re.search(rf"^zfsglacier: backed up {re.escape(dataset)}@\S+: full, {SUMMARY} -> \S+\.full\.zfs\.zst$",
                     backup.stderr, re.MULTILINE), backup.stderr

    restore = run_zfsglacier("--progress-interval", "0.3", "restore", "--config", config,
                             "--target-dataset", zpool.dataset("copy"), "--yes")
    assert restore.returncode == 0, restore.stderr
    assert "\r" not in restore.stderr
    assert any(PROGRESS_LINE.match(line) and " restore " in line for line in restore.stderr.splitlines())
    assert re.search(rf"^zfsglacier: received \S+: full, {SUMMARY}, guid \d+ verified$", restore.stderr,
                     re.MULTILINE), restore.stderr
    assert re.search(rf"^zfsglacier: restored {re.escape(zpool.dataset('copy'))}@\S+: 1 backup\(s\), {SUMMARY}$",
                     restore.stderr, re.MULTILINE), restore.stderr


def test_on_a_terminal_progress_is_a_bar_with_stored_bytes_and_ratio(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path
) -> None:
    _, config = slow_backup_config(zpool, local_remote, tmp_path)
    controller, terminal = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "zfsglacier", "--progress-interval", "0.3", "backup",
                                "--config", str(config)], stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    seen = bytearray()
    while True:
        ready, _, _ = select.select([controller], [], [], 1.0)
        if ready:
            try:
                data = os.read(controller, 65536)
            except OSError:  # the terminal closed: the process is gone
                break
            if not data:
                break
            seen += data
        elif process.poll() is not None:
            break
    os.close(controller)
    assert process.wait(timeout=60) == 0, seen.decode(errors="replace")
    text = seen.decode(errors="replace")
    assert "\r" in text, "a bar redraws its line"
    bars = [part for part in text.split("\r") if "stored, ratio" in part and "B/s" in part]
    assert bars, text
    assert not any(PROGRESS_LINE.match(line.strip()) for line in text.splitlines()), \
        "no log lines of progress on a terminal"
    assert "backed up " in text


def test_restore_dry_run_changes_nothing_and_its_commands_restore_when_pasted(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, config = back_up_a_chain(zpool, local_remote, tmp_path, seed="dry", n_files=8, backups=3)
    target = zpool.dataset("pasted")
    capsys.readouterr()
    assert cli("restore", "--config", config, "--target-dataset", target, "--dry-run") == 0
    out = capsys.readouterr().out.splitlines()
    assert not dataset_exists(target)
    commands = out[out.index("# dry run: nothing is changed; these are the commands the restore would run") + 1:]
    pipelines = [line for line in commands if " | " in line]
    assert len(pipelines) == 3  # a pipeline per backup
    assert all(" | zstd -q -d | zfs receive" in line for line in pipelines)
    assert pipelines[0].endswith(f"zfs receive {target}") and pipelines[1].endswith(f"zfs receive -F {target}")
    # After the full: the target marked unfinished (and unmounted, if receiving mounted it); at the end the
    # mark cleared and the target mounted, if it is not.
    assert commands[1:3] == [f"zfs set org.zfsglacier:restore=incomplete {target}  # unfinished until the last "
                             "backup is received", f"zfs unmount {target}  # if receiving mounted it"]
    assert commands[-2:] == [f"zfs inherit org.zfsglacier:restore {target}  # the restore is complete",
                             f"zfs mount {target}  # if not mounted (as root; a raw backup: after zfs load-key)"]
    for command in commands:
        if not command.startswith(("zfs mount", "zfs unmount")):  # each depends on the state it finds
            rig.run(["bash", "-o", "pipefail", "-c", command])
    assert rig.tree_digest(zpool.path("pasted")) == rig.tree_digest(zpool.path("data"))
