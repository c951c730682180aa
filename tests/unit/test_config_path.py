"""[rclone] config_path: `{user}` is who ran zfsglacier (under sudo, who invoked it), `~` and `~user` as in a
shell; a path that still does not exist is named as written and as expanded."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest
from config_text import with_value

from zfsglacier.config import parse_config
from zfsglacier.config_values import expand_path, invoking_user
from zfsglacier.errors import ConfigError

WHERE = "[rclone] config_path"
ME = pwd.getpwuid(os.geteuid())


def test_user_is_the_one_who_invoked_sudo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUDO_USER", "alice")
    assert invoking_user() == "alice"
    assert expand_path(WHERE, "/home/{user}/.config/rclone/rclone.conf") == Path(
        "/home/alice/.config/rclone/rclone.conf")


@pytest.mark.parametrize("sudo_user", [None, "", "root"])
def test_without_sudo_user_it_is_the_current_user(sudo_user: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if sudo_user is None:
        monkeypatch.delenv("SUDO_USER", raising=False)
    else:
        monkeypatch.setenv("SUDO_USER", sudo_user)
    assert invoking_user() == ME.pw_name
    assert expand_path(WHERE, "/srv/{user}/rclone.conf") == Path(f"/srv/{ME.pw_name}/rclone.conf")


def test_tilde_and_tilde_user_expand_as_in_a_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/elsewhere")
    assert expand_path(WHERE, "~/.config/rclone/rclone.conf") == Path("/home/elsewhere/.config/rclone/rclone.conf")
    assert expand_path(WHERE, f"~{ME.pw_name}/rclone.conf") == Path(ME.pw_dir) / "rclone.conf"


def test_an_unknown_placeholder_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"\[rclone\] config_path = '/home/\{username\}/r.conf': unknown "
                                          r"placeholder \{username\} \(only \{user\}"):
        expand_path(WHERE, "/home/{username}/r.conf")


def test_the_expanded_file_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "alice").mkdir()
    conf = tmp_path / "alice" / "rclone.conf"
    conf.write_text("[x]\ntype = local\n")
    monkeypatch.setenv("SUDO_USER", "alice")
    cfg = parse_config(with_value("rclone", "config_path", f"{tmp_path}/{{user}}/rclone.conf"))
    assert cfg.rclone_config == conf


def test_a_missing_file_names_the_path_as_written_and_as_expanded(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUDO_USER", "bob")
    written = f"{tmp_path}/{{user}}/rclone.conf"
    with pytest.raises(ConfigError) as info:
        parse_config(with_value("rclone", "config_path", written))
    assert str(info.value) == (f"[rclone] config_path = {written!r} (expanded to {tmp_path}/bob/rclone.conf): "
                               "no such file (leave the key out to use rclone's default config)")
