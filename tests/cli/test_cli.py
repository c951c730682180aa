"""The CLI through main(argv): exit codes and one-line messages, no traceback."""

from pathlib import Path

import pytest

from zfsglacier import __version__
from zfsglacier.cli import main
from zfsglacier.errors import EXIT_CODES, EXIT_USAGE


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.ini"
    path.write_text(text)
    return path


def test_help_lists_commands_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("backup", "restore", "list", "verify", "prune"):
        assert command in out
    for code in EXIT_CODES:
        assert f"  {code:>3}  " in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["restore", "--config", "x"], ["backup", "--fulll"],
                                  ["verify", "--all", "--snapshot", "s"]])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == EXIT_USAGE
    assert "usage:" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["status", "--bogus"], ["status", "--config"], ["-q", "status", "extra"],
                                  ["--progress-interval", "5", "status", "--datset", "p/d"]])
def test_a_mistyped_status_check_is_unknown_not_critical(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 3  # the monitoring-plugin UNKNOWN; 2 would read as CRITICAL
    out, err = capsys.readouterr()
    assert "usage:" in err
    assert out.startswith("ZFSGLACIER UNKNOWN - the command line was refused")


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("command", [["backup"], ["list"], ["restore", "--target-dataset", "t/r", "--yes"],
                                     ["verify"], ["prune"]])
def test_bad_config_value_is_one_line_naming_the_key(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path, "[zfs]\ndataset = t/a\nsnapshot_retention = many\n[rclone]\nremote = r\nbucket_name = b\n")
    assert main([*command, "--config", str(cfg)]) == EXIT_USAGE
    line = one_error_line(capsys.readouterr().err)
    assert "[zfs] snapshot_retention = 'many'" in line


def test_unknown_key_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path, "[zfs]\ndataset = t/a\n[rclone]\nremote = r\nbucket_name = b\n[compression]\nthread = 4\n")
    assert main(["backup", "--config", str(cfg)]) == EXIT_USAGE
    assert "unknown key [compression] thread" in one_error_line(capsys.readouterr().err)


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--config", str(tmp_path / "nope.ini")]) == EXIT_USAGE
    assert "nope.ini: not found" in one_error_line(capsys.readouterr().err)


def test_unreadable_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--config", str(tmp_path)]) == EXIT_USAGE
    assert "is a directory" in one_error_line(capsys.readouterr().err)


def test_bad_target_dataset_is_a_usage_error_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write(tmp_path, "[zfs]\ndataset = t/a\n[rclone]\nremote = r\nbucket_name = b\n")
    assert main(["restore", "--config", str(cfg), "--target-dataset", "t/$(reboot)", "--yes"]) == EXIT_USAGE
    assert "--target-dataset 't/$(reboot)'" in one_error_line(capsys.readouterr().err)


def test_internal_errors_are_one_line_without_debug_and_traced_with_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = write(tmp_path, "[zfs]\ndataset = t/a\n[rclone]\nremote = r\nbucket_name = b\n")

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr("zfsglacier.cli.backup", broken)
    assert main(["backup", "--config", str(cfg)]) == 1
    assert "internal error: KeyError" in one_error_line(capsys.readouterr().err)
    assert main(["--debug", "backup", "--config", str(cfg)]) == 1
    assert "Traceback" in capsys.readouterr().err
