"""[monitoring]: the age thresholds of `zfsglacier status` and the Prometheus textfile."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from config_text import MINIMAL, render, with_value

from zfsglacier.config import MonitoringPolicy, parse_config
from zfsglacier.errors import EXIT_USAGE, ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "config.ini.example"


def monitoring(**keys: str) -> MonitoringPolicy:
    return parse_config(render({**MINIMAL, "monitoring": keys})).monitoring


def refused(**keys: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(render({**MINIMAL, "monitoring": keys}))
    assert info.value.exit_code == EXIT_USAGE
    assert "\n" not in str(info.value)
    return str(info.value)


def test_defaults_are_26h_and_50h_and_no_textfile() -> None:
    assert parse_config(render(MINIMAL)).monitoring == MonitoringPolicy(26 * 3600, 50 * 3600, None)
    # The dataclass's own defaults are the config's, so a BackupConfig built in code judges the same.
    assert parse_config(render(MINIMAL)).monitoring == MonitoringPolicy()


@pytest.mark.parametrize(("text", "seconds"), [
    ("36h", 36 * 3600), ("2d", 2 * 86400), ("90m", 90 * 60), ("45s", 45), ("1.5d", 36 * 3600), ("36 h", 36 * 3600),
])
def test_durations(text: str, seconds: int) -> None:
    policy = monitoring(warn_after=text, crit_after="3650d")
    assert policy.warn_after == seconds
    assert monitoring(warn_after="1s", crit_after=text).crit_after == seconds


@pytest.mark.parametrize(("value", "why"), [
    ("36", "expected a duration with its unit"),  # hours or seconds? refused, not guessed
    ("", "expected a duration with its unit"),
    ("abc", "expected a duration with its unit"),
    ("-1h", "expected a duration with its unit"),
    ("36H", "expected a duration with its unit"),  # M would read as months as easily as minutes
    ("1y", "expected a duration with its unit"),
    ("1d12h", "expected a duration with its unit"),
    ("1e3h", "expected a duration with its unit"),
    ("0h", "longer than 0"),
    ("0.1s", "longer than 0"),
    ("3651d", "at most 3650d"),
    ("9" * 400 + "d", "at most 3650d"),
])
@pytest.mark.parametrize("key", ["warn_after", "crit_after"])
def test_bad_durations_name_section_key_and_value(key: str, value: str, why: str) -> None:
    line = refused(**{key: value})
    assert line.startswith(f"[monitoring] {key} = {value!r}: "), line
    assert why in line


@pytest.mark.parametrize(("keys", "expected"), [
    ({"crit_after": "24h"}, "[monitoring] crit_after = '24h': must be longer than [monitoring] warn_after = "
                            "'26h' (the default)"),
    ({"warn_after": "3d"}, "[monitoring] crit_after = '50h' (the default): must be longer than [monitoring] "
                           "warn_after = '3d'"),
    ({"warn_after": "2d", "crit_after": "48h"}, "[monitoring] crit_after = '48h': must be longer than "
                                                "[monitoring] warn_after = '2d'"),
    ({"warn_after": "90m", "crit_after": "1h"}, "[monitoring] crit_after = '1h': must be longer than "
                                                "[monitoring] warn_after = '90m'"),
])
def test_crit_after_must_be_longer_than_warn_after(keys: dict[str, str], expected: str) -> None:
    assert refused(**keys) == expected


def test_crit_one_second_longer_than_warn_is_accepted() -> None:
    assert monitoring(warn_after="60s", crit_after="61s") == MonitoringPolicy(60, 61, None)


def test_textfile() -> None:
    path = "/var/lib/prometheus/node-exporter/zfsglacier.prom"
    assert monitoring(textfile=path).textfile == Path(path)
    assert monitoring(textfile="").textfile is None


@pytest.mark.parametrize(("value", "why"), [
    ("zfsglacier.prom", "expected an absolute path"),
    ("node-exporter/zfsglacier.prom", "expected an absolute path"),
    ("/var/lib/prometheus/node-exporter/zfsglacier.txt", "expected a file named *.prom"),
    ("/var/lib/prometheus/node-exporter/", "expected a file named *.prom"),
    ("/var/lib/prometheus/node-exporter/x.prom/", "expected a file named *.prom"),
    ("/var/lib/prometheus/node-exporter/.prom", "expected a file named *.prom"),
    ("/var/lib/prometheus/zfsglacier.prom.tmp", "expected a file named *.prom"),
    ("/var/lib/x\x1b[2J.prom", "control characters"),
])
def test_bad_textfile_names_section_key_and_value(value: str, why: str) -> None:
    line = refused(textfile=value)
    assert line.startswith(f"[monitoring] textfile = {value!r}: "), line
    assert why in line


def test_the_directory_need_not_exist_yet(tmp_path: Path) -> None:
    """A missing collector directory is a warning when a backup writes the file, not a config error
    that would stop the backups."""
    path = tmp_path / "not-yet" / "zfsglacier.prom"
    assert monitoring(textfile=str(path)).textfile == path


def test_unknown_key_in_monitoring_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(with_value("monitoring", "critical_after", "2d"), source="cfg.ini")
    assert ("unknown key [monitoring] critical_after (known in [monitoring]: warn_after, crit_after, textfile, "
            "verify_warn_after)") in str(info.value)


def test_the_example_config_documents_every_monitoring_key_and_its_values_parse() -> None:
    """The commented [monitoring] block of config.ini.example, uncommented, is a valid section."""
    text = EXAMPLE.read_text(encoding="utf-8")
    block = text[text.index("# [monitoring]"):text.index("# [verify]")]
    keys = dict(re.findall(r"^# (\w+) = (.*)$", block, flags=re.MULTILINE))
    assert set(keys) == {"warn_after", "crit_after", "textfile", "verify_warn_after"}
    policy = monitoring(**keys)
    assert policy.textfile is not None and policy.textfile.name.endswith(".prom")
    assert (policy.warn_after, policy.crit_after) == (MonitoringPolicy().warn_after, MonitoringPolicy().crit_after)
    assert policy.verify_warn_after == MonitoringPolicy().verify_warn_after == 8 * 86400
