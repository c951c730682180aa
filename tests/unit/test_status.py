"""`zfsglacier status`: the plugin line and state from a catalog, a time and thresholds; and the
command's handling of what prevents judging (UNKNOWN)."""

from __future__ import annotations

import dataclasses
import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from config_text import MINIMAL, render, with_value

from zfsglacier.commands import status, status_verdict
from zfsglacier.commands.status_verdict import CLOCK_SKEW_TOLERANCE, CRITICAL, OK, UNKNOWN, WARNING, judge
from zfsglacier.config import BackupConfig, MonitoringPolicy
from zfsglacier.errors import ChainError, IntegrityError, RemoteError, SignalReceived, ZfsglacierError
from zfsglacier.remote.catalog import Catalog
from zfsglacier.remote.manifest import Manifest
from zfsglacier.remote.rclone import Rclone

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
POLICY = MonitoringPolicy()  # 26h, 50h
HOUR = 3600

# The monitoring-plugin output: `NAME STATE - text | perfdata`, perfdata `label=value[UOM];warn;crit;min;max`.
LINE = re.compile(r"ZFSGLACIER (?P<state>OK|WARNING|CRITICAL|UNKNOWN) - (?P<text>[^|\n]+?)(?: \| (?P<perf>[^|\n]+))?")
PERF = re.compile(r"[a-z_]+=-?\d+(\.\d+)?(s|B)?;(\d+)?;(\d+)?;(\d+)?;(\d+)?")


def backup(name: str, txg: int, age: timedelta, base: Manifest | None = None, stored: int = 1 << 30) -> Manifest:
    return Manifest("pool/data", name, f"g{txg}", txg, "full" if base is None else "incremental",
                    base.snapshot if base else None, base.guid if base else None, "zstd", 3, 2 * stored, stored,
                    "0" * 64, f"{name}.x", (NOW - age).isoformat(timespec="seconds"), "h", "0")


def catalog(*manifests: Manifest, unusable: dict[str, str] | None = None, extra_damaged: int = 0) -> Catalog:
    errors = {snapshot: IntegrityError(f"manifest r:b/pool/data/{snapshot}.manifest.json: {why}")
              for snapshot, why in (unusable or {}).items()}
    damaged = [str(e) for e in errors.values()] + [f"other problem {i}" for i in range(extra_damaged)]
    return Catalog("r:b/pool/data", list(manifests), {}, [], damaged, unusable=dict(errors))


def chain(*ages_hours: float) -> list[Manifest]:
    """A full and incrementals, oldest first, made `ages_hours` ago."""
    made: list[Manifest] = []
    for i, hours in enumerate(ages_hours):
        made.append(backup(f"glacier-backup-{i}", i + 1, timedelta(hours=hours), made[-1] if made else None))
    return made


def parsed(line: str) -> tuple[str, str, dict[str, str]]:
    """The line's state, text and perfdata; every part must be in the plugin format."""
    assert "\n" not in line
    match = LINE.fullmatch(line)
    assert match, line
    perf = match["perf"].split(" ") if match["perf"] else []
    for item in perf:
        assert PERF.fullmatch(item), item
    return match["state"], match["text"], {item.split("=")[0]: item.split("=")[1] for item in perf}


def test_a_fresh_backup_is_ok_with_its_age_kind_and_size() -> None:
    code, line = judge(catalog(*chain(30, 5)), NOW, POLICY, "pool/data")
    assert code == OK
    state, text, perf = parsed(line)
    assert state == "OK"
    assert text == "pool/data: newest backup glacier-backup-1 5h ago (incremental, 1.0 GiB stored)"
    assert perf == {"age": "18000s;93600;180000;0;", "backups": "2;;;0;", "damaged": "0;;;0;",
                    "stored": f"{2 << 30}B;;;0;"}


@pytest.mark.parametrize(("age", "expected", "beyond"), [
    (timedelta(hours=26), OK, ""),  # exactly at warn_after: not yet older than it
    (timedelta(hours=26, seconds=1), WARNING, ": older than warn_after 26h"),
    (timedelta(hours=50), WARNING, ": older than warn_after 26h"),  # exactly at crit_after
    (timedelta(hours=50, seconds=1), CRITICAL, ": older than crit_after 50h"),
    (timedelta(days=400), CRITICAL, ": older than crit_after 50h"),
])
def test_age_against_the_thresholds(age: timedelta, expected: int, beyond: str) -> None:
    code, line = judge(catalog(backup("s", 1, age)), NOW, POLICY, "pool/data")
    assert code == expected
    _, text, perf = parsed(line)
    assert text.endswith(f"stored){beyond}")
    assert perf["age"] == f"{int(age.total_seconds())}s;93600;180000;0;"


def test_sub_second_parts_of_now_do_not_cross_a_threshold() -> None:
    """Manifests are stamped to the second; the age is counted in whole seconds."""
    code, _ = judge(catalog(backup("s", 1, timedelta(hours=26))), NOW + timedelta(microseconds=999_999),
                    POLICY, "pool/data")
    assert code == OK


def test_configured_thresholds_are_used_and_shown() -> None:
    policy = MonitoringPolicy(warn_after=90 * 60, crit_after=2 * 86400)
    code, line = judge(catalog(backup("s", 1, timedelta(hours=2))), NOW, policy, "pool/data")
    assert code == WARNING
    _, text, perf = parsed(line)
    assert text.endswith(": older than warn_after 90m")
    assert perf["age"] == "7200s;5400;172800;0;"
    code, line = judge(catalog(backup("s", 1, timedelta(days=3))), NOW, policy, "pool/data")
    assert (code, parsed(line)[1].endswith(": older than crit_after 2d")) == (CRITICAL, True)


def test_no_backup_at_all_is_critical() -> None:
    code, line = judge(catalog(), NOW, POLICY, "pool/data")
    assert code == CRITICAL
    state, text, perf = parsed(line)
    assert (state, text) == ("CRITICAL", "pool/data: no committed backup in r:b/pool/data")
    assert "age" not in perf and perf["backups"] == "0;;;0;"


def test_only_unusable_backups_is_critical_and_names_them() -> None:
    code, line = judge(catalog(unusable={"glacier-backup-1": "damaged"}), NOW, POLICY, "pool/data")
    assert code == CRITICAL
    _, text, perf = parsed(line)
    assert text == ("pool/data: no committed backup in r:b/pool/data; 1 backup(s) unusable (damaged or missing "
                    "manifest): glacier-backup-1")
    assert perf["damaged"] == "1;;;0;"


def test_a_damaged_manifest_beside_a_fresh_backup_is_a_warning_that_names_it() -> None:
    code, line = judge(catalog(*chain(30, 5), unusable={"glacier-backup-old": "damaged"}), NOW, POLICY, "pool/data")
    assert code == WARNING
    _, text, perf = parsed(line)
    assert text == ("pool/data: newest backup glacier-backup-1 5h ago (incremental, 1.0 GiB stored); 1 backup(s) "
                    "unusable (damaged or missing manifest): glacier-backup-old")
    assert perf["damaged"] == "1;;;0;"


def test_many_unusable_backups_are_counted_not_all_listed() -> None:
    unusable = {f"u{i}": "damaged" for i in range(5)}
    code, line = judge(catalog(*chain(5), unusable=unusable, extra_damaged=2), NOW, POLICY, "pool/data")
    assert code == WARNING
    assert parsed(line)[1].endswith("5 backup(s) unusable (damaged or missing manifest): u0, u1, u2 and 2 more; "
                                    "2 other manifest problem(s)")


def test_a_manifest_problem_without_an_unusable_backup_is_a_warning() -> None:
    """verify's reading: a manifest that differs from its copy in the index."""
    cat = Catalog("r:b/pool/data", chain(5), {}, [], ["manifest x: differs from its committed copy"])
    code, line = judge(cat, NOW, POLICY, "pool/data")
    assert code == WARNING
    assert parsed(line)[1].endswith("; 1 manifest problem(s): manifest x: differs from its committed copy")


def test_damage_and_staleness_together_take_the_worse_state_and_say_both() -> None:
    code, line = judge(catalog(*chain(80, 60), unusable={"u": "damaged"}), NOW, POLICY, "pool/data")
    assert code == CRITICAL
    text = parsed(line)[1]
    assert ": older than crit_after 50h" in text and "1 backup(s) unusable" in text


def test_a_backup_dated_slightly_in_the_future_counts_as_just_made() -> None:
    """Two hosts' clocks differ by a little; that is no problem."""
    code, line = judge(catalog(backup("s", 1, -timedelta(seconds=CLOCK_SKEW_TOLERANCE))), NOW, POLICY, "p/d")
    assert code == OK
    _, text, perf = parsed(line)
    assert text == "p/d: newest backup s 0s ago (full, 1.0 GiB stored)"
    assert perf["age"].startswith("0s;")


def test_a_backup_dated_far_in_the_future_is_a_warning_about_the_clock() -> None:
    """Else a wrong clock would keep it looking fresh, however old it gets."""
    future = backup("s", 1, -timedelta(hours=3))
    code, line = judge(catalog(future), NOW, POLICY, "p/d")
    assert code == WARNING
    _, text, perf = parsed(line)
    assert text == (f"p/d: newest backup s 0s ago (full, 1.0 GiB stored); s is dated 3h in the future "
                    f"({future.created}): the clock of this host or of the one that made it is wrong")
    assert perf["age"].startswith("0s;")
    code, _ = judge(catalog(backup("s", 1, -timedelta(seconds=CLOCK_SKEW_TOLERANCE + 1))), NOW, POLICY, "p/d")
    assert code == WARNING


def test_the_newest_backup_that_does_not_restore_is_a_warning_and_the_age_is_the_restorable_ones() -> None:
    full, incr = chain(30, 20)
    gap = backup("glacier-backup-9", 9, timedelta(hours=1), base=backup("gone", 8, timedelta(hours=2)))
    code, line = judge(catalog(full, incr, gap), NOW, POLICY, "pool/data")
    assert code == WARNING
    _, text, perf = parsed(line)
    assert text == ("pool/data: newest restorable backup glacier-backup-1 20h ago (incremental, 1.0 GiB stored); "
                    "the newest backup glacier-backup-9 cannot be restored (its chain has a gap)")
    assert perf["age"].startswith(f"{20 * HOUR}s;")
    # ... and that age is what the thresholds judge.
    full, incr = chain(80, 60)
    code, line = judge(catalog(full, incr, gap), NOW, POLICY, "pool/data")
    assert code == CRITICAL
    assert "glacier-backup-1 2d 12h ago (incremental, 1.0 GiB stored): older than crit_after 50h" in line


def test_no_backup_that_restores_is_critical() -> None:
    orphan = backup("glacier-backup-9", 9, timedelta(hours=1), base=backup("gone", 8, timedelta(hours=2)))
    code, line = judge(catalog(orphan), NOW, POLICY, "pool/data")
    assert code == CRITICAL
    assert parsed(line)[1] == ("pool/data: no backup restores: the newest, glacier-backup-9, and every older one "
                               "miss a backup of their chain")


def test_an_unreadable_creation_time_cannot_be_judged() -> None:
    m = backup("s", 1, timedelta(hours=1))
    bad = dataclasses.replace(m, created="yesterday")
    code, line = judge(catalog(bad), NOW, POLICY, "pool/data")
    assert code == UNKNOWN
    assert parsed(line)[1] == ("pool/data: cannot judge the age: newest backup s has an unreadable creation time "
                               "'yesterday'")


def test_a_creation_time_without_a_zone_is_utc() -> None:
    m = backup("s", 1, timedelta(hours=1))
    naive = dataclasses.replace(m, created=(NOW - timedelta(hours=27)).replace(tzinfo=None).isoformat())
    code, line = judge(catalog(naive), NOW, POLICY, "pool/data")
    assert code == WARNING and " 27h ago " in line


def test_names_that_would_break_the_format_are_made_one_line() -> None:
    """`|` starts perfdata and a newline the long output: neither may come from a name on the remote."""
    code, line = judge(catalog(*chain(1), unusable={"evil|x=1\nCRITICAL": "damaged"}), NOW, POLICY, "pool/data")
    assert code == WARNING
    assert line.count("|") == 1 and "\n" not in line
    assert "evil/x=1 CRITICAL" in parsed(line)[1]


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (59, "59s"), (60, "1m"), (3599, "59m"), (3600, "1h"), (5 * HOUR + 3 * 60 + 59, "5h 3m"),
    (48 * HOUR - 1, "47h 59m"), (48 * HOUR, "2d"), (50 * HOUR, "2d 2h"), (400 * 86400, "400d"),
])
def test_age_text(seconds: int, text: str) -> None:
    assert status_verdict.age_text(seconds) == text


@pytest.mark.parametrize(("seconds", "text"), [(26 * HOUR, "26h"), (2 * 86400, "2d"), (90 * 60, "90m"),
                                               (45, "45s"), (HOUR + 1, "3601s")])
def test_threshold_text(seconds: int, text: str) -> None:
    assert status_verdict.threshold_text(seconds) == text


# combine: several datasets.

def assessed(dataset: str, age_hours: float | None, **unusable: str) -> status_verdict.Assessment:
    made = [backup("s", 1, timedelta(hours=age_hours))] if age_hours is not None else []
    return status_verdict.assess(catalog(*made, unusable=unusable or None), NOW, POLICY, dataset)


def test_several_datasets_all_ok_name_the_stalest_and_list_each() -> None:
    code, output = status_verdict.combine([assessed("pool/a", 5), assessed("pool/b", 7), assessed("tank/c", 1)], POLICY)
    assert code == OK
    first, *details = output.split("\n")
    state, text, perf = parsed(first)
    assert state == "OK"
    assert text == "all 3 datasets OK; the stalest: pool/b: newest backup s 7h ago (full, 1.0 GiB stored)"
    assert perf == {"age": f"{7 * HOUR}s;93600;180000;0;", "datasets": "3;;;0;", "backups": "3;;;0;",
                    "damaged": "0;;;0;", "stored": f"{3 << 30}B;;;0;"}
    assert details == ["[OK] pool/a: newest backup s 5h ago (full, 1.0 GiB stored)",
                       "[OK] pool/b: newest backup s 7h ago (full, 1.0 GiB stored)",
                       "[OK] tank/c: newest backup s 1h ago (full, 1.0 GiB stored)"]


def test_several_datasets_take_the_worst_state_and_name_the_ones_not_ok_worst_first() -> None:
    unreadable = status_verdict.Assessment("tank/c", UNKNOWN, "tank/c: cannot read the backups on the remote: boom")
    code, output = status_verdict.combine([assessed("pool/a", 30), assessed("pool/b", None), unreadable,
                                   assessed("pool/d", 1)], POLICY)
    assert code == CRITICAL
    first, *details = output.split("\n")
    _, text, perf = parsed(first)
    assert text == ("3 of 4 datasets not OK: pool/b: no committed backup in r:b/pool/data; tank/c: cannot read the "
                    "backups on the remote: boom; pool/a: newest backup s 30h ago (full, 1.0 GiB stored): older "
                    "than warn_after 26h")
    # The unreadable dataset adds no made-up counts; the age is the stalest one's.
    assert perf == {"age": f"{30 * HOUR}s;93600;180000;0;", "datasets": "4;;;0;", "backups": "2;;;0;",
                    "damaged": "0;;;0;", "stored": f"{2 << 30}B;;;0;"}
    assert [line.split("]")[0] for line in details] == ["[WARNING", "[CRITICAL", "[UNKNOWN", "[OK"]


@pytest.mark.parametrize(("codes", "worst"), [
    ((OK, WARNING), WARNING), ((WARNING, UNKNOWN), UNKNOWN), ((UNKNOWN, CRITICAL), CRITICAL),
    ((CRITICAL, WARNING, OK), CRITICAL), ((OK, OK), OK),
])
def test_the_worst_of_several_states_ranks_unknown_between_warning_and_critical(codes: tuple[int, ...],
                                                                                 worst: int) -> None:
    assessments = [status_verdict.Assessment(f"p/{i}", code, f"p/{i}: x", 1, 1, 0, 1) for i, code in enumerate(codes)]
    assert status_verdict.combine(assessments, POLICY).code == worst


def test_many_datasets_not_ok_are_counted_in_the_first_line_and_all_listed_below() -> None:
    code, output = status_verdict.combine([assessed(f"pool/{i}", None) for i in range(8)], POLICY)
    first, *details = output.split("\n")
    assert code == CRITICAL
    assert parsed(first)[1].endswith("pool/4: no committed backup in r:b/pool/data; and 3 more")
    assert len(details) == 8


# `run`: the command around judge.

@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.ini"
    path.write_text(with_value("monitoring", "warn_after", "2h", {**MINIMAL, "zfs": {"dataset": "pool/data"}}))
    return path


class FakeRclone(Rclone):
    def list_subdirs(self, path: str) -> list[str]:
        if path.endswith("/broken"):
            raise RemoteError("rclone lsjson", f"listing the folders of {path} failed (exit 3)")
        return ["child"]


@pytest.fixture
def remote(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[object]]:
    """load_catalog answers, per dataset, what the test puts in its list (a Catalog, or an exception to raise)."""
    answers: dict[str, list[object]] = {}

    def load_catalog(cfg: BackupConfig, rclone: Rclone) -> Catalog:
        assert rclone.binary == "rclone-for-test"
        logging.getLogger("zfsglacier.remote.catalog").warning("a warning while loading")
        answer = answers[cfg.dataset].pop(0)
        if isinstance(answer, BaseException):
            raise answer
        assert isinstance(answer, Catalog)
        return answer

    def load_catalogs(targets: list[BackupConfig], tops: tuple[str, ...],
                      rclone: Rclone) -> dict[str, Catalog | ZfsglacierError]:
        """As remote/catalogs.py: an error is kept for its dataset, never raised."""
        loaded: dict[str, Catalog | ZfsglacierError] = {}
        for target in targets:
            try:
                loaded[target.dataset] = load_catalog(target, rclone)
            except SignalReceived:
                raise
            except ZfsglacierError as exc:
                loaded[target.dataset] = exc
        return loaded

    monkeypatch.setattr(status, "load_catalog", load_catalog)
    monkeypatch.setattr(status, "load_catalogs", load_catalogs)
    monkeypatch.setattr(status, "rclone_for", lambda cfg: FakeRclone("rclone-for-test", None))
    return answers


def run(config: Path, capsys: pytest.CaptureFixture[str], dataset: str | None = None) -> tuple[int, str]:
    printed: list[str] = []
    code = status.run(config, dataset=dataset, now=NOW, out=printed.append)
    assert len(printed) == 1
    assert capsys.readouterr().err == ""
    return code, printed[0]


def test_run_judges_the_remote_with_the_configured_thresholds(
    config: Path, remote: dict[str, list[object]], capsys: pytest.CaptureFixture[str]
) -> None:
    remote["pool/data"] = [catalog(backup("s", 1, timedelta(hours=3)))]
    code, line = run(config, capsys)
    assert code == WARNING
    assert line.startswith("ZFSGLACIER WARNING - pool/data: newest backup s 3h ago (full, 1.0 GiB stored): "
                           "older than warn_after 2h | age=10800s;7200;180000;0; ")


@pytest.mark.parametrize("error", [
    RemoteError("rclone lsjson", "listing r:b/pool/data failed (exit 1)", "connection refused"),
    ChainError("could not read 2 manifest(s)"),
])
def test_a_remote_that_cannot_be_read_is_unknown(
    error: Exception, config: Path, remote: dict[str, list[object]], capsys: pytest.CaptureFixture[str]
) -> None:
    remote["pool/data"] = [error]
    code, line = run(config, capsys)
    assert code == UNKNOWN
    assert line == f"ZFSGLACIER UNKNOWN - pool/data: cannot read the backups on the remote: {error}"


def test_no_rclone_is_unknown(config: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    def missing(cfg: BackupConfig) -> Rclone:
        raise RemoteError("rclone", "program not found on PATH")

    monkeypatch.setattr(status, "rclone_for", missing)
    assert run(config, capsys) == (UNKNOWN, "ZFSGLACIER UNKNOWN - pool/data: rclone: program not found on PATH")


def test_a_bug_is_unknown_too_not_warning(config: Path, remote: dict[str, list[object]],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    remote["pool/data"] = [KeyError("oops")]
    code, line = run(config, capsys)
    assert code == UNKNOWN
    assert line == ("ZFSGLACIER UNKNOWN - pool/data: internal error: KeyError: 'oops' (run `zfsglacier --debug "
                    "status` and report it)")


def test_a_signal_still_stops_the_check(config: Path, remote: dict[str, list[object]]) -> None:
    remote["pool/data"] = [SignalReceived(15, "SIGTERM")]
    with pytest.raises(SignalReceived):
        status.run(config, now=NOW, out=lambda line: None)


SEVERAL = "[zfs]\ndataset = pool/a\n    pool/b\n{more}[rclone]\nremote = r\nbucket_name = b\n"


def test_every_dataset_of_the_config_is_checked_and_one_unreadable_does_not_hide_the_others(
    tmp_path: Path, remote: dict[str, list[object]], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.ini"
    path.write_text(SEVERAL.format(more=""))
    remote["pool/a"] = [catalog(backup("s", 1, timedelta(hours=3)))]
    remote["pool/b"] = [RemoteError("rclone lsjson", "listing failed (exit 1)")]
    code, output = run(path, capsys)
    assert code == UNKNOWN
    assert output.split("\n") == [
        "ZFSGLACIER UNKNOWN - 1 of 2 datasets not OK: pool/b: cannot read the backups on the remote: rclone lsjson: "
        f"listing failed (exit 1) | age={3 * HOUR}s;93600;180000;0; datasets=2;;;0; backups=1;;;0; damaged=0;;;0; "
        f"stored={1 << 30}B;;;0;",
        "[OK] pool/a: newest backup s 3h ago (full, 1.0 GiB stored)",
        "[UNKNOWN] pool/b: cannot read the backups on the remote: rclone lsjson: listing failed (exit 1)",
    ]


def test_dataset_option_checks_only_that_one(
    tmp_path: Path, remote: dict[str, list[object]], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.ini"
    path.write_text(SEVERAL.format(more=""))
    remote["pool/b"] = [catalog(backup("s", 1, timedelta(hours=3)))]
    code, line = run(path, capsys, dataset="pool/b")
    assert code == OK and line.startswith("ZFSGLACIER OK - pool/b: newest backup s 3h ago")
    code, line = run(path, capsys, dataset="pool/x")
    assert code == UNKNOWN
    assert line.startswith("ZFSGLACIER UNKNOWN - pool/a, pool/b: --dataset 'pool/x': not a dataset this config")


def test_recursive_datasets_found_on_the_remote_are_checked_and_a_failed_listing_is_unknown(
    tmp_path: Path, remote: dict[str, list[object]], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.ini"
    path.write_text(SEVERAL.format(more="recursive = yes\n"))
    for name in ("pool/a", "pool/a/child", "pool/b", "pool/b/child"):
        remote[name] = [catalog(backup("s", 1, timedelta(hours=1)))]
    code, output = run(path, capsys)
    assert code == OK and output.startswith("ZFSGLACIER OK - all 4 datasets OK")
    path.write_text(SEVERAL.replace("pool/b", "pool/broken").format(more="recursive = yes\n"))
    code, output = run(path, capsys)
    assert code == UNKNOWN
    assert output == ("ZFSGLACIER UNKNOWN - pool/a, pool/broken: rclone lsjson: listing the folders of "
                      "r:b/pool/broken failed (exit 3)")


@pytest.mark.parametrize(("text", "expected"), [
    (with_value("monitoring", "crit_after", "1h"), "config: [monitoring] crit_after = '1h': must be longer than "
                                                   "[monitoring] warn_after = '26h' (the default)"),
    (with_value("zfs", "snapshot_retention", "many"), "config: [zfs] snapshot_retention = 'many': "),
    ("", "config: config file {path}: is empty"),
])
def test_a_bad_config_is_unknown_and_nothing_is_read(
    text: str, expected: str, tmp_path: Path, remote: dict[str, list[object]], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.ini"
    path.write_text(text)
    code, line = run(path, capsys)  # the remote fixture has no answers: a read would fail the test
    assert code == UNKNOWN
    assert line.startswith("ZFSGLACIER UNKNOWN - " + expected.format(path=path)), line
    assert "|" not in line


def test_a_missing_config_is_unknown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, line = run(tmp_path / "nope.ini", capsys)
    assert (code, line) == (UNKNOWN, f"ZFSGLACIER UNKNOWN - config: config file {tmp_path / 'nope.ini'}: not found "
                                     "(give one with --config)")


def test_log_lines_are_kept_off_stderr_unless_debugging(
    config: Path, remote: dict[str, list[object]], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Monitoring systems may show stderr before the line; the line already says what is damaged."""
    logger = logging.getLogger("zfsglacier")
    # As main() sets it up, but into caplog (an earlier main() in this session stops propagation).
    monkeypatch.setattr(logger, "handlers", [])
    monkeypatch.setattr(logger, "propagate", True)
    monkeypatch.setattr(logger, "level", logging.INFO)
    remote["pool/data"] = [catalog(backup("s", 1, timedelta(hours=1)))] * 2
    assert status.run(config, now=NOW, out=lambda line: None) == OK
    assert [r for r in caplog.records if r.name.startswith("zfsglacier")] == []
    assert logger.level == logging.INFO  # restored

    monkeypatch.setattr(logger, "level", logging.DEBUG)  # --debug
    assert status.run(config, now=NOW, out=lambda line: None) == OK
    loading = [r.getMessage() for r in caplog.records if r.name == "zfsglacier.remote.catalog"]
    assert loading == ["a warning while loading"]


def test_the_default_thresholds_apply_without_a_monitoring_section(
    tmp_path: Path, remote: dict[str, list[object]], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.ini"
    path.write_text(render({**MINIMAL, "zfs": {"dataset": "pool/data"}}))
    remote["pool/data"] = [catalog(backup("s", 1, timedelta(hours=25)))]
    assert run(path, capsys)[0] == OK
