"""`zfsglacier status`: a monitoring check in the plugin format Nagios, Icinga, Naemon and Shinken run.

It prints `ZFSGLACIER <STATE> - <text> | <perfdata>` on stdout and exits with the state:

    0 OK        the newest restorable backup is at most [monitoring] warn_after old
    1 WARNING   older than warn_after; or a backup is unusable (damaged or missing manifest); or the
                newest backup cannot be restored (its chain has a gap); or it is dated in the future; or
                the last successful restore drill is older than verify_warn_after (once one has run);
                or, with [rclone] object_lock, the newest chain is unlocked or its lock ends soon
    2 CRITICAL  older than crit_after; or no committed backup at all; or none that restores
    3 UNKNOWN   nothing could be judged: the config is bad, the remote or rclone failed, or a bug

A bad config is UNKNOWN (3) here, not the usage error (2) every other command exits with: to a
monitoring system 2 means CRITICAL, and the plugin guidelines keep UNKNOWN for a check that could not
run. For the same reason status writes nothing to stderr (some monitoring systems show stderr too,
before the line): the line says it all; `--debug` logs as usual.

With several datasets (`[zfs] dataset` lists several, or `recursive`), each is judged alone. The state
is the worst of theirs, ranked CRITICAL, UNKNOWN, WARNING, OK (a dataset that could not be checked may
hide anything, so it outranks a known WARNING). The first line names the datasets that are not OK;
one more line per dataset follows (the plugins' long output, which Icinga and Nagios show in the
details). `age` in the perfdata is then the stalest dataset's.

The decision itself is status_verdict.py: `judge` for one dataset, a pure function of its catalog, the
time and the thresholds, and `combine` for several. Here, `run` loads the config, the catalogs and the
drill records (those of a tree read together, as `list` does) and makes what prevents judging UNKNOWN.

Thresholds follow the plugins' range convention: `warn_after = 26h` alerts when the age is above 26h,
so exactly 26h is still OK (perfdata `age=93600s;93600;180000;0;` says the same to a grapher). Age is
counted in whole seconds from the manifest's `created` (UTC), to the newest backup a restore could
reach: a newer backup whose chain has a gap does not count, and is itself a WARNING.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from zfsglacier.commands import datasets
from zfsglacier.commands.status_verdict import UNKNOWN, Assessment, Verdict, assess, combine, unknown
from zfsglacier.config import BackupConfig, load_config
from zfsglacier.errors import ConfigError, SignalReceived, ZfsglacierError
from zfsglacier.remote.catalog import Catalog, load_catalog
from zfsglacier.remote.catalogs import load_catalogs, top_folder
from zfsglacier.remote.drill_record import DRILL_NAME, DrillRecord
from zfsglacier.remote.rclone import Rclone, rclone_for

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def run(config_path: Path, *, dataset: str | None = None, now: datetime | None = None,
        out: Callable[[str], None] = print) -> int:
    """The `status` command: print the plugin output, return the state as the exit code. `dataset`:
    only that one of the config's datasets (--dataset). Never raises for what prevents judging (that
    is UNKNOWN); a signal still stops it (SignalReceived propagates)."""
    with _quiet_logs():
        verdict = _check(config_path, dataset, now)
    out(verdict.output)
    return verdict.code


def _check(config_path: Path, dataset: str | None, now: datetime | None) -> Verdict:
    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        return unknown(f"config: {exc}")
    try:
        rclone = rclone_for(cfg)
        targets = [datasets.choose(cfg, dataset)] if dataset is not None else datasets.remote_targets(cfg, rclone)
    except SignalReceived:
        raise
    except ZfsglacierError as exc:
        return unknown(f"{', '.join(datasets.configured(cfg))}: {exc}")
    except Exception as exc:  # a bug; still a line the monitoring system can show, and UNKNOWN, not WARNING
        return unknown(_internal(exc))
    moment = now if now is not None else _now()
    try:  # several datasets: their catalogs and drill records read together (remote/catalogs.py)
        catalogs = load_catalogs(targets, datasets.configured(cfg), rclone) if len(targets) > 1 else {}
        drills = _drill_records(cfg, targets, catalogs, rclone)
    except SignalReceived:
        raise
    except Exception as exc:  # as above
        return unknown(_internal(exc))
    return combine([_assess_remote(target, rclone, moment, catalogs.get(target.dataset), drills)
                    for target in targets], cfg.monitoring)


def _assess_remote(cfg: BackupConfig, rclone: Rclone, now: datetime, loaded: Catalog | ZfsglacierError | None,
                   drills: dict[str, bytes]) -> Assessment:
    """`loaded`: the catalog read already (or why it could not be); None: read it here."""
    try:
        if isinstance(loaded, ZfsglacierError):
            raise loaded
        catalog = loaded if loaded is not None else load_catalog(cfg, rclone)
        drill = _drill_record(rclone, catalog, drills.get(cfg.dataset))
    except SignalReceived:
        raise
    except ZfsglacierError as exc:
        return Assessment(cfg.dataset, UNKNOWN, f"{cfg.dataset}: cannot read the backups on the remote: {exc}")
    except Exception as exc:  # as above
        return Assessment(cfg.dataset, UNKNOWN, f"{cfg.dataset}: {_internal(exc)}")
    return assess(catalog, now, cfg.monitoring, cfg.dataset, cfg.object_lock, drill)


def _drill_records(cfg: BackupConfig, targets: list[BackupConfig], catalogs: dict[str, Catalog | ZfsglacierError],
                   rclone: Rclone) -> dict[str, bytes]:
    """The drill records of the datasets loaded together, fetched together (by dataset)."""
    drilled = [t for t in targets if isinstance(loaded := catalogs.get(t.dataset), Catalog)
               and DRILL_NAME in loaded.objects]
    found: dict[str, bytes] = {}
    for top in datasets.configured(cfg):
        if any(t.dataset == top or t.dataset.startswith(f"{top}/") for t in drilled):
            try:
                fetched = rclone.read_named_in_tree(top_folder(drilled[0], top), DRILL_NAME)
            except SignalReceived:
                raise
            except ZfsglacierError as exc:  # each is then read on its own
                log.debug("the drill records below %s were not fetched together: %s", top, exc)
                continue
            found |= {f"{top}/{folder}".rstrip("/"): data for folder, data in fetched.items()}
    return found


def _drill_record(rclone: Rclone, catalog: Catalog, fetched: bytes | None) -> DrillRecord | None:
    """The dataset's drill record, when a drill has written one (`fetched` already, or read here); an
    unreadable one counts as none (said in the log, which --debug shows)."""
    if DRILL_NAME not in catalog.objects:
        return None
    try:
        return DrillRecord.from_json(fetched if fetched is not None else rclone.read(catalog.path(DRILL_NAME)))
    except (ZfsglacierError, ValueError) as exc:
        log.warning("the drill record %s is unreadable: %s", catalog.path(DRILL_NAME), exc)
        return None


def _internal(exc: Exception) -> str:
    log.debug("traceback", exc_info=exc)
    return f"internal error: {type(exc).__name__}: {exc} (run `zfsglacier --debug status` and report it)"


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """No log lines on stderr while checking (a damaged manifest is in the status line already), except
    with --debug."""
    root = logging.getLogger("zfsglacier")
    previous = root.level
    if root.getEffectiveLevel() > logging.DEBUG:
        root.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        root.setLevel(previous)


