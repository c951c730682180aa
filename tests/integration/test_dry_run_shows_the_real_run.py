"""A dry run shows what the real run then does: backup, prune and restore each run with --dry-run, then for
real with every child process recorded, and every command of the real run that changes something (or
moves a stream) must be in the dry run's output, as a person could paste it.

Reads (zfs list and get, rclone lsjson, config and listings, the catalog's own reads) need not be shown.
What a dry run cannot know is normalized on both sides, and only that: the pending mark's value (a new
one per run), rclone's part size (it follows the estimate of a stream whose snapshot does not exist yet),
and ranged reads (the ranges of one object are shown as one `rclone cat` of it). Prune and the removal of
leftovers print through the process layer (proc.dry_run); backup's stream and restore's receives through
their plans, which this test keeps honest."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import rig
from helpers import cli, write_config

from zfsglacier import proc

pytestmark = pytest.mark.integration

# The first words that only read: these need not be in a dry run's output.
ZFS_READS = {"list", "get", "version", "help", "holds"}
RCLONE_READS = {"lsjson", "listremotes", "config", "copy", "lsf", "size"}


class Recorder:
    """Every argv this process starts (zfsglacier runs in-process through main(argv))."""

    def __init__(self) -> None:
        self.argvs: list[list[str]] = []


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    recorded = Recorder()
    original = subprocess.Popen.__init__

    def recording(self: subprocess.Popen[Any], args: Any, *more: Any, **options: Any) -> None:
        recorded.argvs.append([str(arg) for arg in args])
        original(self, args, *more, **options)

    monkeypatch.setattr(subprocess.Popen, "__init__", recording)
    yield recorded


def tool_words(argv: list[str]) -> tuple[str, list[str]]:
    """The program (zfs or rclone) and its words after the global flags (--config FILE, --bwlimit...)."""
    program = Path(argv[0]).name
    words = argv[1:]
    if program == "rclone":
        while words and words[0].startswith("--"):
            words = words[2:] if words[0] in ("--config", "--bwlimit") else words[1:]
    return program, words


def changes(argvs: list[list[str]]) -> list[str]:
    """The commands that change something or move a stream, rendered and normalized."""
    found = []
    for argv in argvs:
        program, words = tool_words(argv)
        if program == "zfs" and (not words or words[0] in ZFS_READS):
            continue
        if program == "rclone":
            if not words or words[0] in RCLONE_READS:
                continue
            if words[0] == "cat" and not re.search(r"\.zfs(\.\w+)?(\.\d+)?$", words[-1]):
                continue  # a manifest, the index, a one-byte probe of a frozen object: reads
            if words[:2] == ["backend", "list-multipart-uploads"]:
                continue
        if program not in ("zfs", "rclone"):
            continue
        found.append(normalize(proc.render(argv)))
    return found


def normalize(line: str) -> str:
    line = re.sub(r"org\.zfsglacier:pending=\S+", "org.zfsglacier:pending=MARK", line)
    line = re.sub(r"--s3-chunk-size \S+", "--s3-chunk-size SIZE", line)
    return re.sub(r" --offset \d+ --count \d+", "", line)


def shown(output: str) -> str:
    return "\n".join(normalize(line) for line in output.splitlines())


def missing_from(dry_output: str, real: list[str]) -> list[str]:
    text = shown(dry_output)
    return [command for command in dict.fromkeys(real) if command not in text]


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> list[datetime]:
    """One time for the dry run and the real run: the same snapshot name."""
    now = [datetime(2026, 3, 1, 3, 0, tzinfo=UTC)]
    monkeypatch.setattr("zfsglacier.commands.backup._now", lambda: now[0])
    monkeypatch.setattr("zfsglacier.commands.prune._now", lambda: now[0])
    return now


def dry_then_real(recorder: Recorder, capsys: pytest.CaptureFixture[str], *argv: str | Path) -> list[str]:
    """The commands of the real run that the dry run of the same command did not show."""
    capsys.readouterr()
    assert cli(*argv, "--dry-run") == 0
    dry_output = capsys.readouterr().out
    recorder.argvs.clear()
    assert cli(*argv) == 0
    real = changes(recorder.argvs)
    assert real, "the real run changed something"
    return missing_from(dry_output, real)


def retention_config(tmp_path: Path, dataset: str, remote: rig.Remote, retention: str) -> Path:
    config = write_config(tmp_path, dataset, remote, retention=1)
    config.write_text(config.read_text().replace("[compression]", f"[chain]\nfull_every = 2\n{retention}[compression]"))
    return config


def test_backups_show_in_their_dry_runs_what_they_then_do(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    recorder: Recorder, fixed_clock: list[datetime],
) -> None:
    """Fulls and incrementals, holds moved, old local snapshots destroyed, old chains pruned on the remote."""
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    rig.populate(zpool.path("data"), seed="dry-real", n_files=6)
    config = retention_config(tmp_path, dataset, local_remote, "[retention]\nkeep_chains = 1\n")
    for day in range(5):  # full, incremental, full (the first chain goes), incremental, full
        fixed_clock[0] += timedelta(days=1)
        rig.mutate(zpool.path("data"), seed=day)
        assert dry_then_real(recorder, capsys, "backup", "--config", config) == [], f"backup {day + 1}"


def test_a_prune_shows_in_its_dry_run_what_it_then_does(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    recorder: Recorder, fixed_clock: list[datetime],
) -> None:
    """Expired chains, the index rewritten without them, and an orphan left by a killed upload."""
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    rig.populate(zpool.path("data"), seed="dry-prune", n_files=6)
    config = retention_config(tmp_path, dataset, local_remote, "")
    for day in range(4):  # two chains of two
        fixed_clock[0] += timedelta(days=1)
        rig.mutate(zpool.path("data"), seed=day)
        assert cli("backup", "--config", config) == 0
    (local_remote.root / dataset / "glacier-backup-20200101T000000Z.full.zfs.zst").write_bytes(b"cut off")
    config.write_text(config.read_text().replace("[compression]", "[retention]\nkeep_chains = 1\n[compression]"))
    assert dry_then_real(recorder, capsys, "prune", "--config", config) == []


def test_a_restore_shows_in_its_dry_run_what_it_then_does(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    recorder: Recorder, fixed_clock: list[datetime],
) -> None:
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    (zpool.path("data") / "big.bin").write_bytes(rig.seeded_random("ranges").randbytes(3 << 20))  # ranged reads
    config = write_config(tmp_path, dataset, local_remote)
    for day in range(3):
        fixed_clock[0] += timedelta(days=1)
        rig.mutate(zpool.path("data"), seed=day)
        assert cli("backup", "--config", config) == 0
    target = zpool.dataset("copy")
    assert dry_then_real(recorder, capsys, "restore", "--config", config, "--target-dataset", target, "--yes") == []
