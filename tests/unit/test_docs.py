"""The README and config.ini.example keep up with the code: every config key, exit code, command and
option is documented, and nothing documented is gone."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from zfsglacier import config, errors
from zfsglacier.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
EXAMPLE = (ROOT / "config.ini.example").read_text(encoding="utf-8")
SCHEMA = set(config.KEYS)


def section(title: str) -> str:
    """The README's text under `## title`, up to the next `## ` heading."""
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else None]


def test_the_configuration_table_has_a_row_for_every_key_and_no_other() -> None:
    rows = set(re.findall(r"^\| `\[(\w+)\]` \| `(\w+)` \|", section("Configuration"), re.MULTILINE))
    assert rows == SCHEMA


def test_config_ini_example_shows_every_key() -> None:
    shown: set[tuple[str, str]] = set()
    current = ""
    for line in EXAMPLE.splitlines():
        header = re.fullmatch(r"#? ?\[(\w+)\]", line.strip())
        if header:
            current = header[1]
        key = re.match(r"^#? ?(\w+) =", line)
        if key and current:
            shown.add((current, key[1]))
    assert shown >= SCHEMA, f"not in config.ini.example: {sorted(SCHEMA - shown)}"
    assert shown <= SCHEMA, f"config.ini.example shows keys that do not exist: {sorted(shown - SCHEMA)}"


def test_the_exit_code_table_matches_the_codes() -> None:
    rows = re.findall(r"^\| (\d+|128\+N) \|", section("Exit codes"), re.MULTILINE)
    codes = {str(code) for code in errors.EXIT_CODES if code != errors.EXIT_SIGNAL_BASE} | {"128+N"}
    assert set(rows) == codes


def test_every_command_and_option_is_in_the_commands_synopsis() -> None:
    synopsis = section("Commands")
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    global_options = {o for a in parser._actions for o in a.option_strings if o.startswith("--") and o != "--help"}
    missing = [o for o in global_options if o not in synopsis]
    for name, sub in subparsers.choices.items():
        if f"zfsglacier {name} " not in synopsis:
            missing.append(name)
        line = next((ln for ln in synopsis.splitlines() if f"zfsglacier {name} " in ln), "")
        following = synopsis[synopsis.find(line):].split("\n    zfsglacier ", 2)[0] if line else ""
        for action in sub._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help" and option not in following:
                    missing.append(f"{name} {option}")
    assert missing == []
