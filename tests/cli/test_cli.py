"""The CLI through main(argv): exit codes and one-line messages, no traceback."""

from pathlib import Path

import pytest
import rig

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


def test_config_path_with_user_finds_the_rclone_config_of_who_invoked_sudo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The documented `config_path = /home/{user}/.config/rclone/rclone.conf`, run as `sudo zfsglacier`."""
    rig.need_tool("rclone")
    home = tmp_path / "home" / "alice" / ".config" / "rclone"
    home.mkdir(parents=True)
    (tmp_path / "store" / "bucket").mkdir(parents=True)
    (home / "rclone.conf").write_text(f"[vault]\ntype = alias\nremote = {tmp_path / 'store'}\n")
    cfg = write(tmp_path, "[zfs]\ndataset = t/a\n[rclone]\nremote = vault\nbucket_name = bucket\n"
                          f"config_path = {tmp_path}/home/{{user}}/.config/rclone/rclone.conf\n")
    monkeypatch.setenv("SUDO_USER", "alice")
    assert main(["list", "--config", str(cfg)]) == 0
    assert capsys.readouterr().out.strip() == "no committed backups in vault:bucket/t/a"

    monkeypatch.setenv("SUDO_USER", "bob")
    assert main(["list", "--config", str(cfg)]) == EXIT_USAGE
    line = one_error_line(capsys.readouterr().err)
    assert line.endswith(f"[rclone] config_path = '{tmp_path}/home/{{user}}/.config/rclone/rclone.conf' (expanded "
                         f"to {tmp_path}/home/bob/.config/rclone/rclone.conf): no such file (leave the key out to "
                         "use rclone's default config)"), line
