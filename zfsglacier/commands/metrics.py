"""Prometheus metrics for node_exporter's textfile collector ([monitoring] textfile).

One file holds every dataset's samples, each labelled `dataset="pool/data"`: a run rewrites its own
dataset's samples and keeps the others'. One file rather than one per dataset, because the config
names one file (and a later config may back up several datasets), and because a dataset that is no
longer backed up then keeps its last samples, which an alert on their age catches, instead of its file
lingering or vanishing unnoticed. Runs of different datasets may overlap (each dataset has its own
lock), so the read-modify-write is serialized by an flock on `.<name>.lock` beside the file; the file
itself is replaced atomically (a temporary file in the same directory, fsync, os.replace), so
node_exporter never reads half a file. The temporary file's name does not end in `.prom`, which the
collector would read. The file is made 0644: node_exporter does not run as root.

The file belongs to zfsglacier: lines that are not samples of the metrics below are not kept.

Metrics (gauges, one series per dataset):
    zfsglacier_last_success_timestamp_seconds  when the last successful backup finished (Unix time);
                                               0 while none is known
    zfsglacier_last_run_timestamp_seconds      when the last run finished, successful or not
    zfsglacier_last_run_success                1 if the last run succeeded, else 0
    zfsglacier_last_backup_duration_seconds    wall time of the last successful backup
    zfsglacier_last_backup_raw_bytes           its zfs send stream, in bytes
    zfsglacier_last_backup_stored_bytes        what it stored on the remote, in bytes
A failed run sets only last_run_timestamp_seconds and last_run_success (0): the last_success and
last_backup values stay those of the last success (absent, or 0 for the timestamp, if none).

A restore drill (`verify --drill`) writes its own, the same way:
    zfsglacier_verify_last_success_timestamp_seconds  when the last successful drill finished (0: none)
    zfsglacier_verify_last_run_timestamp_seconds      when the last drill finished
    zfsglacier_verify_last_run_success                1 if the last drill succeeded, else 0
    zfsglacier_verify_last_duration_seconds           wall time of the last successful drill
    zfsglacier_verify_last_bytes_read                 what it read from the remote

Errors: `write_textfile` raises MetricsError (and nothing else for a problem of the file system);
`record_run` is what a backup calls: it writes when [monitoring] textfile is set and turns a failure to
write into a warning, so that the metrics never fail a backup nor hide the error of a failed one.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from zfsglacier.errors import ZfsglacierError

log = logging.getLogger(__name__)

LOCK_TIMEOUT = 10.0  # seconds to wait for another run writing the same file


@dataclass(frozen=True)
class Metric:
    name: str
    help: str
    on_success_only: bool  # kept from the last success when a run fails


LAST_SUCCESS = "zfsglacier_last_success_timestamp_seconds"
LAST_RUN = "zfsglacier_last_run_timestamp_seconds"
LAST_RUN_SUCCESS = "zfsglacier_last_run_success"
DURATION = "zfsglacier_last_backup_duration_seconds"
RAW_BYTES = "zfsglacier_last_backup_raw_bytes"
STORED_BYTES = "zfsglacier_last_backup_stored_bytes"

VERIFY_LAST_SUCCESS = "zfsglacier_verify_last_success_timestamp_seconds"
VERIFY_LAST_RUN = "zfsglacier_verify_last_run_timestamp_seconds"
VERIFY_LAST_RUN_SUCCESS = "zfsglacier_verify_last_run_success"
VERIFY_DURATION = "zfsglacier_verify_last_duration_seconds"
VERIFY_BYTES = "zfsglacier_verify_last_bytes_read"

METRICS = (
    Metric(LAST_SUCCESS, "Unix time the last successful backup of the dataset finished (0: none known).", True),
    Metric(LAST_RUN, "Unix time the last backup run of the dataset finished, successful or not.", False),
    Metric(LAST_RUN_SUCCESS, "1 if the last backup run of the dataset succeeded, 0 if it failed.", False),
    Metric(DURATION, "Wall time of the last successful backup of the dataset, in seconds.", True),
    Metric(RAW_BYTES, "Bytes of the zfs send stream of the last successful backup of the dataset.", True),
    Metric(STORED_BYTES, "Bytes the last successful backup of the dataset stored on the remote.", True),
    Metric(VERIFY_LAST_SUCCESS, "Unix time the last successful restore drill of the dataset finished (0: none).",
           True),
    Metric(VERIFY_LAST_RUN, "Unix time the last restore drill of the dataset finished, successful or not.", False),
    Metric(VERIFY_LAST_RUN_SUCCESS, "1 if the last restore drill of the dataset succeeded, 0 if it failed.", False),
    Metric(VERIFY_DURATION, "Wall time of the last successful restore drill of the dataset, in seconds.", True),
    Metric(VERIFY_BYTES, "Bytes the last successful restore drill of the dataset read from the remote.", True),
)
_NAMES = {m.name for m in METRICS}
# A sample as write_textfile writes it: name{dataset="..."} value
_SAMPLE = re.compile(r'(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{dataset="(?P<label>(?:[^"\\\n]|\\[\\"n])*)"\}'
                     r'[ \t]+(?P<value>\S+)[ \t]*')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


class MetricsError(ZfsglacierError):
    """The textfile could not be written. Callers log it as a warning; uncaught it is a bug (exit 1)."""


def write_textfile(path: Path, dataset: str, *, success: bool, finished: datetime, seconds: float,
                   raw_bytes: int, stored_bytes: int) -> None:
    """Record one backup run of `dataset` in `path`. `seconds`, `raw_bytes` and `stored_bytes` describe
    the backup, and are ignored when `success` is False. `finished` without a zone is UTC."""
    _record(path, dataset, success, finished, (LAST_RUN, LAST_RUN_SUCCESS, LAST_SUCCESS),
            {DURATION: seconds, RAW_BYTES: raw_bytes, STORED_BYTES: stored_bytes})


def write_drill(path: Path, dataset: str, *, success: bool, finished: datetime, seconds: float,
                bytes_read: int) -> None:
    """Record one restore drill of `dataset` in `path`, as write_textfile does a backup."""
    _record(path, dataset, success, finished, (VERIFY_LAST_RUN, VERIFY_LAST_RUN_SUCCESS, VERIFY_LAST_SUCCESS),
            {VERIFY_DURATION: seconds, VERIFY_BYTES: bytes_read})


def _record(path: Path, dataset: str, success: bool, finished: datetime, names: tuple[str, str, str],
            on_success: dict[str, float]) -> None:
    """`names`: the last run's time, its success, the last success's time."""
    last_run, last_run_success, last_success = names
    stamp = (finished if finished.tzinfo is not None else finished.replace(tzinfo=UTC)).timestamp()
    try:
        with _locked(path.parent / f".{path.name}.lock"):
            samples = _read(path)
            mine = samples.setdefault(dataset, {})
            mine[last_run] = stamp
            mine[last_run_success] = 1 if success else 0
            if success:
                mine.update({last_success: stamp, **on_success})
            else:
                mine.setdefault(last_success, 0)
            _replace(path, render(samples))
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
        raise MetricsError(f"metrics file {path}: {exc.strerror or exc}{where}") from None


def record_run(path: Path | None, dataset: str, *, success: bool, finished: datetime, seconds: float = 0.0,
               raw_bytes: int = 0, stored_bytes: int = 0) -> bool:
    """write_textfile when [monitoring] textfile is set (`path`); a failure is logged as a warning,
    never raised. Returns whether the file was written."""
    if path is None:
        return False
    try:
        write_textfile(path, dataset, success=success, finished=finished, seconds=seconds, raw_bytes=raw_bytes,
                       stored_bytes=stored_bytes)
    except MetricsError as exc:
        log.warning("%s (the backup's outcome is not affected)", exc)
        return False
    return True


def record_drill(path: Path | None, dataset: str, *, success: bool, finished: datetime, seconds: float = 0.0,
                 bytes_read: int = 0) -> None:
    """write_drill when [monitoring] textfile is set; a failure to write is a warning."""
    if path is None:
        return
    try:
        write_drill(path, dataset, success=success, finished=finished, seconds=seconds, bytes_read=bytes_read)
    except MetricsError as exc:
        log.warning("%s (the drill's outcome is not affected)", exc)


def render(samples: dict[str, dict[str, float]]) -> str:
    """The exposition format: each metric's HELP and TYPE, then its samples, datasets in order."""
    lines: list[str] = []
    for metric in METRICS:
        series = [(dataset, values[metric.name]) for dataset, values in sorted(samples.items())
                  if metric.name in values]
        if not series:
            continue
        lines += [f"# HELP {metric.name} {metric.help}", f"# TYPE {metric.name} gauge"]
        lines += [f'{metric.name}{{dataset="{escape_label(dataset)}"}} {_number(value)}' for dataset, value in series]
    return "".join(f"{line}\n" for line in lines)


def escape_label(value: str) -> str:
    """A label value in the exposition format: backslash, double quote and line feed escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _unescape_label(value: str) -> str:
    return re.sub(r'\\[\\"n]', lambda m: _UNESCAPE[m.group()], value)


def _number(value: float) -> str:
    if isinstance(value, int) or (math.isfinite(value) and value.is_integer() and abs(value) < 2**53):
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _read(path: Path) -> dict[str, dict[str, float]]:
    """The samples of our metrics in the current file, by dataset; nothing when there is no file."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return {}
    samples: dict[str, dict[str, float]] = {}
    skipped = 0
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = _SAMPLE.fullmatch(line)
        if match is None or match["name"] not in _NAMES:
            skipped += 1
            continue
        try:
            value = float(match["value"])
        except ValueError:
            skipped += 1
            continue
        samples.setdefault(_unescape_label(match["label"]), {})[match["name"]] = value
    if skipped:
        log.warning("metrics file %s: %d line(s) that are not zfsglacier's samples are dropped", path, skipped)
    return samples


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise MetricsError(f"metrics file lock {lock_path}: still held by another run after "
                                       f"{LOCK_TIMEOUT:g} s") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


def _replace(path: Path, text: str) -> None:
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):  # the rename survives a crash; best effort
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
