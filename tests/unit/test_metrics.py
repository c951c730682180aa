"""The Prometheus textfile ([monitoring] textfile): its format, its atomic replacement, several datasets in
one file, what a failed run keeps, and that a failure to write never fails a backup."""

from __future__ import annotations

import fcntl
import logging
import os
import re
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from zfsglacier.commands import metrics
from zfsglacier.commands.metrics import MetricsError, record_run, write_textfile

T1 = datetime(2026, 11, 26, 3, 15, 0, tzinfo=UTC)
T2 = T1 + timedelta(days=1, seconds=12.5)

# The text exposition format (prometheus.io/docs/instrumenting/exposition_formats): comments, and samples
# `name{label="value",...} value [timestamp]`, label values with \\, \" and \n escaped.
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
VALUE = r"(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|NaN|[+-]Inf)"
SAMPLE = re.compile(rf"(?P<name>{NAME})(?:\{{(?P<labels>{LABEL}(?:,{LABEL})*,?)?\}})? (?P<value>{VALUE})(?: -?\d+)?")
HELP = re.compile(rf"# HELP (?P<name>{NAME}) (?P<text>(?:[^\\\n]|\\[\\n])*)")
TYPE = re.compile(rf"# TYPE (?P<name>{NAME}) (?P<type>counter|gauge|histogram|summary|untyped)")
LABEL_VALUE = re.compile(r'dataset="((?:[^"\\\n]|\\[\\"n])*)"')


def unescape(value: str) -> str:
    return re.sub(r'\\([\\"n])', lambda m: {"\\": "\\", '"': '"', "n": "\n"}[m[1]], value)


def parse(text: str) -> dict[tuple[str, str], float]:
    """Every line checked against the format; each metric's HELP and TYPE come once, before its samples,
    which are together; no series twice. Returns (metric, dataset) -> value."""
    assert text.endswith("\n")
    samples: dict[tuple[str, str], float] = {}
    documented: dict[str, set[str]] = {}
    done: set[str] = set()
    current = None
    for line in text.splitlines():
        if (comment := HELP.fullmatch(line) or TYPE.fullmatch(line)) is not None:
            kind = "HELP" if line.startswith("# HELP") else "TYPE"
            name = comment["name"]
            assert name not in done and kind not in documented.setdefault(name, set()), line
            documented[name].add(kind)
            if current is not None and current != name:
                done.add(current)
            current = name
            continue
        match = SAMPLE.fullmatch(line)
        assert match is not None, f"not in the exposition format: {line!r}"
        assert match["name"] == current and documented[current] == {"HELP", "TYPE"}, line
        (dataset,) = LABEL_VALUE.findall(match["labels"])
        key = (match["name"], unescape(dataset))
        assert key not in samples, f"series twice: {key}"
        samples[key] = float(match["value"])
    return samples


def of(samples: dict[tuple[str, str], float], dataset: str) -> dict[str, float]:
    return {name: value for (name, ds), value in samples.items() if ds == dataset}


def ok(path: Path, dataset: str, finished: datetime = T1, seconds: float = 61.5, raw: int = 2 << 30,
       stored: int = 1 << 30) -> None:
    write_textfile(path, dataset, success=True, finished=finished, seconds=seconds, raw_bytes=raw, stored_bytes=stored)


def failed(path: Path, dataset: str, finished: datetime = T2) -> None:
    write_textfile(path, dataset, success=False, finished=finished, seconds=0.0, raw_bytes=0, stored_bytes=0)


def test_a_successful_run_writes_every_metric_with_help_and_type(tmp_path: Path) -> None:
    path = tmp_path / "zfsglacier.prom"
    ok(path, "pool/data")
    text = path.read_text()
    assert of(parse(text), "pool/data") == {
        "zfsglacier_last_success_timestamp_seconds": T1.timestamp(),
        "zfsglacier_last_run_timestamp_seconds": T1.timestamp(),
        "zfsglacier_last_run_success": 1,
        "zfsglacier_last_backup_duration_seconds": 61.5,
        "zfsglacier_last_backup_raw_bytes": 2 << 30,
        "zfsglacier_last_backup_stored_bytes": 1 << 30,
    }
    assert f'zfsglacier_last_success_timestamp_seconds{{dataset="pool/data"}} {int(T1.timestamp())}\n' in text
    assert 'zfsglacier_last_backup_raw_bytes{dataset="pool/data"} 2147483648\n' in text
    assert text.count("# TYPE ") == 6 and text.count(" gauge\n") == 6


def test_a_failed_run_keeps_the_last_success_and_sets_last_run_success_to_0(tmp_path: Path) -> None:
    path = tmp_path / "zfsglacier.prom"
    ok(path, "pool/data")
    failed(path, "pool/data")
    assert of(parse(path.read_text()), "pool/data") == {
        "zfsglacier_last_success_timestamp_seconds": T1.timestamp(),
        "zfsglacier_last_run_timestamp_seconds": T2.timestamp(),
        "zfsglacier_last_run_success": 0,
        "zfsglacier_last_backup_duration_seconds": 61.5,
        "zfsglacier_last_backup_raw_bytes": 2 << 30,
        "zfsglacier_last_backup_stored_bytes": 1 << 30,
    }
    # The next success replaces them all.
    ok(path, "pool/data", finished=T2 + timedelta(hours=1), seconds=5, raw=10, stored=7)
    got = of(parse(path.read_text()), "pool/data")
    assert got["zfsglacier_last_success_timestamp_seconds"] == (T2 + timedelta(hours=1)).timestamp()
    assert (got["zfsglacier_last_run_success"], got["zfsglacier_last_backup_stored_bytes"]) == (1, 7)


def test_a_failure_before_any_success_says_never_succeeded(tmp_path: Path) -> None:
    """The success timestamp is 0, so that an alert on its age fires; no backup sizes are made up."""
    path = tmp_path / "zfsglacier.prom"
    failed(path, "pool/new")
    assert of(parse(path.read_text()), "pool/new") == {
        "zfsglacier_last_success_timestamp_seconds": 0,
        "zfsglacier_last_run_timestamp_seconds": T2.timestamp(),
        "zfsglacier_last_run_success": 0,
    }


def test_other_datasets_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "zfsglacier.prom"
    ok(path, "pool/a", stored=111)
    ok(path, "tank/b", stored=222)
    failed(path, "pool/a")
    samples = parse(path.read_text())
    assert of(samples, "tank/b")["zfsglacier_last_backup_stored_bytes"] == 222
    assert of(samples, "tank/b")["zfsglacier_last_run_success"] == 1
    assert of(samples, "pool/a")["zfsglacier_last_run_success"] == 0
    assert of(samples, "pool/a")["zfsglacier_last_backup_stored_bytes"] == 111
    assert {dataset for _, dataset in samples} == {"pool/a", "tank/b"}


@pytest.mark.parametrize("dataset", ['we"ird\\name', "line\nbreak", "pool/with space:and.dots", "tank/dätä"])
def test_label_values_are_escaped_and_read_back(tmp_path: Path, dataset: str) -> None:
    path = tmp_path / "zfsglacier.prom"
    ok(path, dataset, stored=5)
    ok(path, "other")  # reads the file back: the odd name must survive, unchanged
    text = path.read_text()
    assert "\n\n" not in text
    samples = parse(text)
    assert of(samples, dataset)["zfsglacier_last_backup_stored_bytes"] == 5
    assert {ds for _, ds in samples} == {dataset, "other"}


def test_escape_label() -> None:
    assert metrics.escape_label('a\\b"c\nd') == 'a\\\\b\\"c\\nd'


def test_the_file_is_replaced_atomically_and_readable_by_node_exporter(tmp_path: Path) -> None:
    """A reader of the old file still reads all of it; the new file is a new inode, 0644; no temporary
    file stays behind, and none was ever named *.prom (the collector would read it)."""
    path = tmp_path / "zfsglacier.prom"
    ok(path, "pool/data", stored=1)
    before = path.read_text()
    with path.open() as reader:
        old_inode = os.fstat(reader.fileno()).st_ino
        ok(path, "pool/data", stored=2)
        assert reader.read() == before
    assert os.stat(path).st_ino != old_inode
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == [".zfsglacier.prom.lock", "zfsglacier.prom"]


def test_the_temporary_file_is_in_the_same_directory_and_not_named_prom(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    replaced: list[tuple[str, str]] = []
    real = os.replace

    def spy(src: str, dst: str) -> None:
        replaced.append((str(src), str(dst)))
        real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    ok(tmp_path / "zfsglacier.prom", "pool/data")
    ((src, dst),) = replaced
    assert Path(src).parent == tmp_path and not src.endswith(".prom")
    assert dst == str(tmp_path / "zfsglacier.prom")


def test_a_failed_replace_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "zfsglacier.prom"
    ok(path, "pool/data", stored=1)
    before = path.read_bytes()

    def full_disk(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(MetricsError, match=rf"^metrics file {re.escape(str(path))}: No space left on device$"):
        ok(path, "pool/data", stored=2)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".zfsglacier.prom.lock", "zfsglacier.prom"]


def test_a_missing_directory_is_a_metrics_error(tmp_path: Path) -> None:
    with pytest.raises(MetricsError, match="No such file or directory"):
        ok(tmp_path / "missing" / "zfsglacier.prom", "pool/data")


def test_writers_wait_for_each_other(tmp_path: Path) -> None:
    """Another run holding the lock (another dataset's backup) is waited for: its update is not lost."""
    path = tmp_path / "zfsglacier.prom"
    ok(path, "pool/a")
    fd = os.open(tmp_path / ".zfsglacier.prom.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    writer = threading.Thread(target=ok, args=(path, "tank/b"))
    try:
        writer.start()
        writer.join(0.5)
        assert writer.is_alive(), "wrote while another run held the lock"
        assert {ds for _, ds in parse(path.read_text())} == {"pool/a"}
        # The holder's own update, made under the lock, is read by the waiting writer.
        metrics._replace(path, path.read_text().replace('dataset="pool/a"', 'dataset="pool/c"'))
    finally:
        os.close(fd)
        writer.join(10)
    assert not writer.is_alive()
    assert {ds for _, ds in parse(path.read_text())} == {"pool/c", "tank/b"}


def test_a_lock_held_too_long_is_a_metrics_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "LOCK_TIMEOUT", 0.2)
    fd = os.open(tmp_path / ".zfsglacier.prom.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(MetricsError, match=re.escape("still held by another run after 0.2 s")):
            ok(tmp_path / "zfsglacier.prom", "pool/data")
    finally:
        os.close(fd)
    assert not (tmp_path / "zfsglacier.prom").exists()


def test_lines_that_are_not_ours_are_dropped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "zfsglacier.prom"
    path.write_text('# HELP x y\nsomething_else{a="b"} 1\ngarbage here\n'
                    'zfsglacier_last_backup_raw_bytes{dataset="tank/old"} 12\n')
    caplog.set_level(logging.WARNING, logger="zfsglacier.commands.metrics")
    ok(path, "pool/data")
    samples = parse(path.read_text())
    assert of(samples, "tank/old") == {"zfsglacier_last_backup_raw_bytes": 12}
    assert "something_else" not in path.read_text()
    assert [r.getMessage() for r in caplog.records if r.name == "zfsglacier.commands.metrics"] == [
        f"metrics file {path}: 2 line(s) that are not zfsglacier's samples are dropped"]


def test_finished_without_a_zone_is_utc(tmp_path: Path) -> None:
    path = tmp_path / "zfsglacier.prom"
    ok(path, "pool/data", finished=T1.replace(tzinfo=None))
    assert of(parse(path.read_text()), "pool/data")["zfsglacier_last_run_timestamp_seconds"] == T1.timestamp()


def test_fractional_values_keep_their_digits(tmp_path: Path) -> None:
    path = tmp_path / "zfsglacier.prom"
    ok(path, "pool/data", finished=T1 + timedelta(microseconds=250_000), seconds=0.125)
    got = of(parse(path.read_text()), "pool/data")
    assert got["zfsglacier_last_run_timestamp_seconds"] == T1.timestamp() + 0.25
    assert got["zfsglacier_last_backup_duration_seconds"] == 0.125


# record_run: what a backup calls.

def test_record_run_without_a_textfile_writes_nothing(tmp_path: Path) -> None:
    assert record_run(None, "pool/data", success=True, finished=T1) is False
    assert list(tmp_path.iterdir()) == []


def test_record_run_writes(tmp_path: Path) -> None:
    path = tmp_path / "zfsglacier.prom"
    assert record_run(path, "pool/data", success=True, finished=T1, seconds=3, raw_bytes=4, stored_bytes=5) is True
    assert of(parse(path.read_text()), "pool/data")["zfsglacier_last_backup_stored_bytes"] == 5


def test_record_run_turns_a_failure_into_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="zfsglacier.commands.metrics")
    path = tmp_path / "missing" / "zfsglacier.prom"
    assert record_run(path, "pool/data", success=False, finished=T1) is False
    (record,) = [r for r in caplog.records if r.name == "zfsglacier.commands.metrics"]
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith(f"metrics file {path}: No such file or directory")
    assert record.getMessage().endswith("(the backup's outcome is not affected)")


def test_record_run_does_not_hide_bugs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only MetricsError is a warning; anything else is a bug, and raised."""
    def broken(*args: object, **kwargs: object) -> None:
        raise TypeError("bug")

    monkeypatch.setattr(metrics, "write_textfile", broken)
    with pytest.raises(TypeError):
        record_run(tmp_path / "z.prom", "pool/data", success=True, finished=T1)
