"""Hostile and broken config files through main(argv): each is exit 2 with one `error:` line naming
the file, or the section, key and value, and nothing runs: no process is started, no lock taken,
no file touched. The last test checks names.py's rules against what zfs-fuse itself accepts."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import rig
from config_text import MINIMAL, render, with_value

from zfsglacier import names
from zfsglacier.cli import main
from zfsglacier.commands.status_verdict import UNKNOWN as EXIT_UNKNOWN
from zfsglacier.errors import EXIT_LOCK_BUSY, EXIT_USAGE, LockBusyError
from zfsglacier.lock import DatasetLock

COMMANDS = {
    "backup": ["backup"],
    "backup-dry-run": ["backup", "--dry-run"],
    "list": ["list"],
    "restore": ["restore", "--target-dataset", "tank/restored", "--yes", "--force"],
    "verify": ["verify", "--all", "--deep"],
    "prune": ["prune"],
    "prune-dry-run": ["prune", "--dry-run"],
    "status": ["status"],
}
GOOD = MINIMAL


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Every way a process could be started fails the run and is recorded: the list must stay empty."""
    calls: list[str] = []

    def forbidden(name: str) -> Callable[..., object]:
        def refuse(*args: object, **kwargs: object) -> object:
            calls.append(f"{name}{args!r}")
            raise AssertionError(f"{name} called with a config that must be refused: {args!r}")
        return refuse

    import zfsglacier.proc

    monkeypatch.setattr(zfsglacier.proc.subprocess, "Popen", forbidden("subprocess.Popen"))
    monkeypatch.setattr(zfsglacier.proc.subprocess, "run", forbidden("subprocess.run"))
    for name in ("system", "fork", "execv", "execvp", "execve", "posix_spawn", "posix_spawnp"):
        monkeypatch.setattr(os, name, forbidden(f"os.{name}"))
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))
    return calls


def refused(argv: list[str], capsys: pytest.CaptureFixture[str], started: list[str], tmp_path: Path) -> str:
    """Run main(argv): exit 2, one `error:` line (returned), nothing started, no lock taken. `status`, a
    monitoring plugin, says it the plugins' way: exit 3 (UNKNOWN), its one line on stdout, nothing on stderr."""
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err + out
    if argv[0] == "status":
        assert (code, err) == (EXIT_UNKNOWN, ""), (code, err)
        assert out.endswith("\n") and out.count("\n") == 1, out
        assert out.startswith("ZFSGLACIER UNKNOWN - config: "), out
        assert started == []
        assert not (tmp_path / "locks").exists()
        return out.strip()
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("zfsglacier: error: "), lines[0]
    assert code == EXIT_USAGE, lines[0]
    assert out == ""
    assert started == []
    assert not (tmp_path / "locks").exists()
    return lines[0]


# (id, config text, what the error line must name). {canary} is a file a shell would create.
BAD_TEXT = [
    ("empty", "", ["is empty"]),
    ("blank-lines", " \n\t\n", ["is empty"]),
    ("only-comments", "# nothing here\n; nor here\n", ["missing required key [zfs] dataset"]),
    ("garbage", "\x7fELF\x02\x01 not an ini file at all {}\n", ["File contains no section headers"]),
    ("key-outside-section", "dataset = tank/data\n[zfs]\n", ["File contains no section headers"]),
    ("unclosed-section", "[zfs\ndataset = tank/data\n", ["File contains no section headers"]),
    ("unknown-key", with_value("zfs", "datset", "tank/x"), ["unknown key [zfs] datset"]),
    ("unknown-key-case", with_value("zfs", "Dataset", "tank/x"), ["unknown key [zfs] Dataset"]),
    ("unknown-section", with_value("s3", "bucket", "b"), ["unknown section [s3]"]),
    ("unknown-section-case", render({"ZFS": {"dataset": "tank/x"}, **GOOD}), ["unknown section [ZFS]"]),
    ("default-section", "[DEFAULT]\nsnapshot_retention = 3\n" + render(GOOD), ["unknown key", "snapshot_retention"]),
    ("duplicate-section", render(GOOD) + "[zfs]\nsnapshot_retention = 3\n", ["section 'zfs' already exists"]),
    ("duplicate-key", "[zfs]\ndataset = tank/data\ndataset = tank/other\n[rclone]\nremote = r\nbucket_name = b\n",
     ["option 'dataset' in section 'zfs' already exists"]),
    ("missing-dataset", render({"rclone": GOOD["rclone"]}), ["missing required key [zfs] dataset"]),
    ("missing-remote", render({"zfs": GOOD["zfs"], "rclone": {"bucket_name": "b"}}),
     ["missing required key [rclone] remote"]),
    ("empty-dataset", with_value("zfs", "dataset", ""), ["[zfs] dataset = ''", "is empty"]),
    # garbage values and wrong types
    ("retention-word", with_value("zfs", "snapshot_retention", "seven"), ["[zfs] snapshot_retention = 'seven'"]),
    ("retention-float", with_value("zfs", "snapshot_retention", "3.5"), ["[zfs] snapshot_retention = '3.5'"]),
    ("retention-bool", with_value("zfs", "snapshot_retention", "true"), ["[zfs] snapshot_retention = 'true'"]),
    ("retention-hex", with_value("zfs", "snapshot_retention", "0x10"), ["[zfs] snapshot_retention = '0x10'"]),
    ("retention-quoted", with_value("zfs", "snapshot_retention", '"7"'), ["[zfs] snapshot_retention = '\"7\"'"]),
    ("retention-huge-negative", with_value("zfs", "snapshot_retention", "-" + "9" * 40),
     ["[zfs] snapshot_retention = '-999"]),
    ("threads-list", with_value("compression", "threads", "[4]"), ["[compression] threads = '[4]'"]),
    ("threads-zero", with_value("compression", "threads", "0"), ["[compression] threads = '0'"]),
    ("level-float", with_value("compression", "level", "3.0"), ["[compression] level = '3.0'"]),
    ("level-out-of-range", with_value("compression", "level", "99"), ["[compression] level = '99'"]),
    ("compressor-shell", with_value("compression", "compressor", "zstd; touch {canary}"),
     ["[compression] compressor = 'zstd; touch"]),
    ("compressor-program", with_value("compression", "compressor", "/usr/bin/xz"),
     ["[compression] compressor = '/usr/bin/xz'"]),
    # hostile dataset names
    ("dataset-semicolon", with_value("zfs", "dataset", "tank/a; touch {canary}"), ["[zfs] dataset = 'tank/a; touch"]),
    ("dataset-subshell", with_value("zfs", "dataset", "tank/$(touch {canary})"), ["[zfs] dataset = 'tank/$(touch"]),
    ("dataset-backticks", with_value("zfs", "dataset", "tank/`touch {canary}`"), ["[zfs] dataset = 'tank/`touch"]),
    ("dataset-double-quote", with_value("zfs", "dataset", 'tank/"data"'), ["[zfs] dataset = 'tank/\"data\"'"]),
    ("dataset-single-quote", with_value("zfs", "dataset", "tank/it's"), ["[zfs] dataset = \"tank/it's\""]),
    ("dataset-leading-dash", with_value("zfs", "dataset", "-rf"), ["[zfs] dataset = '-rf'", "start with a letter"]),
    ("dataset-option", with_value("zfs", "dataset", "--help"), ["[zfs] dataset = '--help'"]),
    ("dataset-unicode", with_value("zfs", "dataset", "tank/dätä"), ["[zfs] dataset = 'tank/dätä'"]),
    ("dataset-unicode-space", with_value("zfs", "dataset", "tank/a\u00a0b"), ["[zfs] dataset = 'tank/a\\xa0b'"]),
    ("dataset-too-long", with_value("zfs", "dataset", "tank/" + "x" * 251), ["[zfs] dataset", "longer than 255"]),
    ("dataset-snapshot", with_value("zfs", "dataset", "tank/data@snap"), ["[zfs] dataset = 'tank/data@snap'"]),
    ("dataset-parent", with_value("zfs", "dataset", "tank/../other"), ["[zfs] dataset = 'tank/../other'"]),
    ("dataset-inline-comment", with_value("zfs", "dataset", "tank/data ; the main one"),
     ["[zfs] dataset = 'tank/data ; the main one'"]),
    # A continuation line is a second dataset (the list form), checked like the first.
    ("dataset-continuation-line", with_value("zfs", "dataset", "tank/data\n  $(touch {canary})"),
     ["[zfs] dataset = '$(touch"]),
    ("dataset-listed-twice", with_value("zfs", "dataset", "tank/data\n  tank/data"),
     ["[zfs] dataset = 'tank/data': listed more than once"]),
    ("prefix-subshell", with_value("zfs", "snapshot_prefix", "$(touch {canary})"),
     ["[zfs] snapshot_prefix = '$(touch"]),
    ("prefix-at", with_value("zfs", "snapshot_prefix", "a@b"), ["[zfs] snapshot_prefix = 'a@b'"]),
    ("prefix-slash", with_value("zfs", "snapshot_prefix", "../x"), ["[zfs] snapshot_prefix = '../x'"]),
    # rclone flags smuggled in as names
    ("remote-config-flag", with_value("rclone", "remote", "--config=/etc/passwd"),
     ["[rclone] remote = '--config=/etc/passwd'"]),
    ("remote-verbose-flag", with_value("rclone", "remote", "-vv"), ["[rclone] remote = '-vv'"]),
    ("remote-on-the-fly-backend", with_value("rclone", "remote", ":local"), ["[rclone] remote = ':local'"]),
    ("remote-connection-string", with_value("rclone", "remote", "s3,endpoint=http://evil"),
     ["[rclone] remote = 's3,endpoint=http://evil'"]),
    ("remote-path", with_value("rclone", "remote", "r:b/../etc"), ["[rclone] remote = 'r:b/../etc'"]),
    ("remote-subshell", with_value("rclone", "remote", "$(touch {canary})"), ["[rclone] remote = '$(touch"]),
    ("bucket-flag", with_value("rclone", "bucket_name", "--dry-run"), ["[rclone] bucket_name = '--dry-run'"]),
    ("bucket-short-flag", with_value("rclone", "bucket_name", "-vv"), ["[rclone] bucket_name = '-vv'"]),
    ("bucket-parent", with_value("rclone", "bucket_name", "b/../../etc"), ["[rclone] bucket_name = 'b/../../etc'"]),
    ("config-path-flag", with_value("rclone", "config_path", "--config=/etc/passwd"),
     ["[rclone] config_path = '--config=/etc/passwd'", "no such file"]),
    ("config-path-directory", with_value("rclone", "config_path", "/etc"), ["[rclone] config_path = '/etc'"]),
]


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
@pytest.mark.parametrize(("text", "expected"), [case[1:] for case in BAD_TEXT], ids=[case[0] for case in BAD_TEXT])
def test_bad_config_is_refused_before_anything_runs(
    text: str, expected: list[str], command: list[str], tmp_path: Path, started: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    canary = tmp_path / "canary"
    config = tmp_path / "config.ini"
    config.write_text(text.format(canary=canary) if "{canary}" in text else text, encoding="utf-8")
    before = config.read_bytes()
    line = refused([*command, "--config", str(config)], capsys, started, tmp_path)
    for part in expected:
        assert part.format(canary=canary) in line, line
    if "[" not in expected[0]:  # a file-level or structural error names the file
        assert str(config) in line
    assert not canary.exists()
    assert config.read_bytes() == before


def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "config.fifo"
    os.mkfifo(path)
    return path


def latin1(tmp_path: Path) -> Path:
    path = tmp_path / "latin1.ini"
    path.write_bytes("[zfs]\ndataset = tank/dätä\n".encode("latin-1"))
    return path


@contextlib.contextmanager
def watchdog(seconds: int) -> Iterator[None]:
    """Turn a read that blocks into an error (main() reports it as an internal error, exit 1)."""
    def fire(signum: int, frame: object) -> None:
        raise TimeoutError(f"still reading the config after {seconds} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda tmp: tmp / "missing.ini", "missing.ini: not found"),
        (lambda tmp: tmp, "is a directory"),
        # Root reads every file whatever its mode; these are what root cannot read as a config.
        (latin1, "not UTF-8 text"),
        (fifo, "not a regular file"),  # a FIFO nobody writes to: reading it would wait forever
    ],
    ids=["missing", "directory", "not-utf8", "fifo"],
)
def test_unreadable_config_file(make: Callable[[Path], Path], expected: str, tmp_path: Path, started: list[str],
                                capsys: pytest.CaptureFixture[str]) -> None:
    path = make(tmp_path)
    with watchdog(20):
        line = refused(["backup", "--config", str(path)], capsys, started, tmp_path)
    assert str(path) in line and expected in line, line


def limit_memory() -> None:  # pragma: no cover - runs in the child between fork and exec
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def test_a_device_as_config_is_refused_not_read(tmp_path: Path) -> None:
    """/dev/zero never ends: read whole, it would fill the memory. In a child whose memory is capped,
    so that a regression is a failed test and not a machine out of memory."""
    done = subprocess.run(
        [sys.executable, "-m", "zfsglacier", "backup", "--config", "/dev/zero"], capture_output=True, text=True,
        timeout=120, check=False, preexec_fn=limit_memory,
        env={**os.environ, "ZFSGLACIER_LOCK_DIR": str(tmp_path / "locks")},
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == ["zfsglacier: error: config file /dev/zero: not a regular file (a FIFO, socket or device): "
                     "give a file"], done.stderr
    assert done.returncode == EXIT_USAGE
    assert not (tmp_path / "locks").exists()


def test_snapshot_names_longer_than_zfs_allows_are_refused_before_anything_runs(
    tmp_path: Path, started: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = "tank/" + "d" * 220  # a valid dataset name, but @<prefix><timestamp> makes 255+
    config = tmp_path / "config.ini"
    config.write_text(with_value("zfs", "dataset", dataset))
    for argv in (["backup"], ["backup", "--dry-run"]):
        line = refused([*argv, "--config", str(config)], capsys, started, tmp_path)
        assert f"[zfs] dataset '{dataset}' with [zfs] snapshot_prefix 'glacier-backup-'" in line
        assert "shorten the prefix" in line


COMPONENTS = ["plain", "a b:c.d_e-f", "-leading-dash", "dätä", "a;b", 'a"b', "a'b", "a$(x)", "a`x`", "a%b",
              "a+b", "a,b", "a\\b", "a*b", "a\u00a0b", "a\tb", ".", ".."]


def zfs_accepts(argv: list[str]) -> bool:
    return rig.run(argv, check=False).returncode == 0


def test_name_rules_match_zfs(zpool: rig.Pool) -> None:
    """What names.py lets through zfs accepts, and what zfs refuses names.py refuses, with its reason."""
    longest = "x" * (names.ZFS_MAX_NAME - len(zpool.name) - 1)
    for component in [*COMPONENTS, longest, longest + "x"]:
        dataset = zpool.dataset(component)
        ours, theirs = names.dataset_problem(dataset) is None, zfs_accepts(["zfs", "create", dataset])
        assert ours == theirs, (component[:40], names.dataset_problem(dataset))
    rig.run(["zfs", "create", zpool.dataset("s")])
    for component in COMPONENTS:
        ours = names.snapshot_component_problem(component) is None
        theirs = zfs_accepts(["zfs", "snapshot", f"{zpool.dataset('s')}@{component}"])
        # names.py may be stricter (it refuses '.' and '..', which some zfs versions take), never looser.
        assert theirs or not ours, component
    at_limit = f"{zpool.dataset('s')}@" + "s" * (names.ZFS_MAX_NAME - len(zpool.dataset("s")) - 1)
    assert names.snapshot_name_problem(at_limit) is None and zfs_accepts(["zfs", "snapshot", at_limit])
    assert names.snapshot_name_problem(at_limit + "s") and not zfs_accepts(["zfs", "snapshot", at_limit + "s"])


def test_long_dataset_names_get_lock_files_that_fit_and_do_not_collide(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Quoting a valid name ('/' and ' ' become three characters each) may exceed a file name's 255 bytes."""
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))
    spaced = "tank/" + "a b/" * 50
    long_names = [spaced + "x", spaced + "y", "tank/" + "z" * 250]
    assert all(names.dataset_problem(name) is None for name in long_names)
    with contextlib.ExitStack() as held:
        locks = [held.enter_context(DatasetLock(name, "test")) for name in long_names]
        assert len({lock.path for lock in locks}) == len(long_names)
        assert all(len(lock.path.name.encode()) <= 255 for lock in locks)
        with pytest.raises(LockBusyError) as busy:
            DatasetLock(long_names[0], "second").__enter__()
        assert busy.value.exit_code == EXIT_LOCK_BUSY
        assert str(busy.value).startswith(f"{long_names[0]} is busy: another zfsglacier run holds")
