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

`judge` is the decision for one dataset, a pure function of its catalog, the time and the thresholds;
`combine` the one for several; `run` loads the config and the catalogs (per dataset one listing and one
read of the index, as `list` does) and makes what prevents judging UNKNOWN.

Thresholds follow the plugins' range convention: `warn_after = 26h` alerts when the age is above 26h,
so exactly 26h is still OK (perfdata `age=93600s;93600;180000;0;` says the same to a grapher). Age is
counted in whole seconds from the manifest's `created` (UTC), to the newest backup a restore could
reach: a newer backup whose chain has a gap does not count, and is itself a WARNING.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from zfsglacier.commands import datasets
from zfsglacier.config import BackupConfig, MonitoringPolicy, load_config
from zfsglacier.errors import ConfigError, SignalReceived, ZfsglacierError
from zfsglacier.policy import chain_lock
from zfsglacier.remote.catalog import Catalog, load_catalog
from zfsglacier.remote.catalogs import load_catalogs, top_folder
from zfsglacier.remote.drill_record import DRILL_NAME, DrillRecord
from zfsglacier.remote.manifest import Manifest, build_chain
from zfsglacier.remote.object_lock import stamp
from zfsglacier.remote.rclone import Rclone, rclone_for
from zfsglacier.units import human_bytes

log = logging.getLogger(__name__)

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
_SEVERITY = {OK: 0, WARNING: 1, UNKNOWN: 2, CRITICAL: 3}  # what the worst of several states is
PLUGIN_NAME = "ZFSGLACIER"
# Two hosts' clocks (the one that made the backup, the one that checks) may differ a little: a backup
# dated up to this far in the future counts as made just now. Further is a wrong clock, and a WARNING,
# since it would otherwise look fresh for as long as the clock is wrong.
CLOCK_SKEW_TOLERANCE = 300  # seconds
_LISTED_NAMES = 3  # unusable backups named in the text; the rest are counted
_LISTED_DATASETS = 5  # datasets that are not OK described in the first line; all are in the long output


class Verdict(NamedTuple):
    code: int  # OK, WARNING, CRITICAL or UNKNOWN: the exit code
    output: str  # the plugin output: one line; for several datasets, more lines follow it


@dataclass(frozen=True)
class Assessment:
    """One dataset, judged."""

    dataset: str
    code: int
    text: str  # one line, without the state
    age: int | None = None  # seconds, of the newest restorable backup
    # What its catalog holds; None when it could not be read (no made-up zeros in the perfdata).
    backups: int | None = None
    damaged: int | None = None
    stored: int | None = None


def judge(catalog: Catalog, now: datetime, policy: MonitoringPolicy, dataset: str,
          lock_mode: str | None = None, drill: DrillRecord | None = None) -> Verdict:
    """The state of one dataset's backups (`catalog`) at `now`, against `policy`'s thresholds."""
    return combine([assess(catalog, now, policy, dataset, lock_mode, drill)], policy)


def assess(catalog: Catalog, now: datetime, policy: MonitoringPolicy, dataset: str,
           lock_mode: str | None = None, drill: DrillRecord | None = None) -> Assessment:
    """`lock_mode`: [rclone] object_lock, under which the newest restorable chain must stay locked for
    warn_after at least. `drill`: the record of the dataset's restore drills, once one has run."""
    now = _aware(now)
    counts = {"backups": len(catalog.manifests), "damaged": len(catalog.damaged),
              "stored": sum(m.stored_bytes for m in catalog.manifests)}
    # Said whatever the age: unusable backups, a restore drill gone stale.
    standing = [(WARNING, text)] if (text := _unusable_text(catalog)) else []
    standing += _drill_findings(drill, now, policy)

    def result(findings: list[tuple[int, str]], age: int | None = None) -> Assessment:
        code = _worst(state for state, _ in findings)
        return Assessment(dataset, code, "; ".join(text for _, text in findings), age, **counts)

    if not catalog.manifests:
        return result([(CRITICAL, f"{dataset}: no committed backup in {catalog.directory}"), *standing])
    newest_first = sorted(catalog.manifests, key=lambda m: (m.createtxg, m.created), reverse=True)
    newest = newest_first[0]  # what a restore without --snapshot restores
    subject = next((m for m in newest_first if _restores(catalog.manifests, m)), None)
    if subject is None:
        return result([(CRITICAL, f"{dataset}: no backup restores: the newest, {newest.snapshot}, and every "
                                  "older one miss a backup of their chain"), *standing])
    findings: list[tuple[int, str]] = []
    if subject is not newest:
        findings.append((WARNING, f"the newest backup {newest.snapshot} cannot be restored (its chain has a gap)"))
    what = "newest backup" if subject is newest else "newest restorable backup"
    created = _created(subject)
    if created is None:
        return result([(UNKNOWN, f"{dataset}: cannot judge the age: {what} {subject.snapshot} has an unreadable "
                                 f"creation time {subject.created!r}"), *findings, *standing])

    age = math.floor((now - created).total_seconds())
    if age < -CLOCK_SKEW_TOLERANCE:
        findings.append((WARNING, f"{subject.snapshot} is dated {age_text(-age)} in the future ({subject.created}): "
                                  "the clock of this host or of the one that made it is wrong"))
    age = max(age, 0)
    state, beyond = OK, ""
    if age > policy.crit_after:
        state, beyond = CRITICAL, f": older than crit_after {threshold_text(policy.crit_after)}"
    elif age > policy.warn_after:
        state, beyond = WARNING, f": older than warn_after {threshold_text(policy.warn_after)}"
    headline = (f"{dataset}: {what} {subject.snapshot} {age_text(age)} ago ({subject.kind}, "
                f"{human_bytes(subject.stored_bytes)} stored){beyond}")
    if lock_mode is not None:
        findings += _lock_findings(build_chain(catalog.manifests, subject.snapshot), now, policy, lock_mode)
    return result([(state, headline), *findings, *standing], age)


def _drill_findings(drill: DrillRecord | None, now: datetime, policy: MonitoringPolicy) -> list[tuple[int, str]]:
    """A WARNING when the last successful restore drill is older than verify_warn_after, or there was none."""
    if drill is None:
        return []
    last = _parse_time(drill.last_success)
    if last is None:
        return [(WARNING, f"no restore drill has succeeded yet (the last one, {drill.last_run}, did not)")]
    age = max(math.floor((now - last).total_seconds()), 0)
    if age > policy.verify_warn_after:
        return [(WARNING, f"the last successful restore drill was {age_text(age)} ago ({drill.last_success}): "
                          f"older than verify_warn_after {threshold_text(policy.verify_warn_after)}")]
    return []


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return _aware(datetime.fromisoformat(text))
    except ValueError:
        return None


def _lock_findings(chain: list[Manifest], now: datetime, policy: MonitoringPolicy, mode: str) -> list[tuple[int, str]]:
    """A WARNING when the chain a restore would use is not locked, or its lock ends within warn_after."""
    lock = chain_lock.chain_lock(chain)
    if lock is None:
        return [(WARNING, f"the chain of {chain[-1].snapshot} is not locked ([rclone] object_lock = {mode.lower()}): "
                          "a compromised host could delete it; the next backup starts a locked chain")]
    left = math.floor((lock.until - now).total_seconds())
    if left <= policy.warn_after:
        when = f"in {age_text(left)}" if left > 0 else f"{age_text(-left)} ago"
        return [(WARNING, f"the lock of the chain of {chain[-1].snapshot} ends {when} ({stamp(lock.until)}), within "
                          f"warn_after {threshold_text(policy.warn_after)}: is the backup running?")]
    return []


def combine(assessments: Sequence[Assessment], policy: MonitoringPolicy) -> Verdict:
    """The plugin output for one dataset or several (see the module's docstring)."""
    if not assessments:
        return unknown("the config names no dataset")
    code = _worst(a.code for a in assessments)
    ages = [a.age for a in assessments if a.age is not None]
    perfdata = [f"age={max(ages)}s;{policy.warn_after};{policy.crit_after};0;"] if ages else []
    if len(assessments) > 1:
        perfdata.append(f"datasets={len(assessments)};;;0;")
    read = [a for a in assessments if a.backups is not None]
    if read:
        perfdata += [f"backups={sum(a.backups or 0 for a in read)};;;0;",
                     f"damaged={sum(a.damaged or 0 for a in read)};;;0;",
                     f"stored={sum(a.stored or 0 for a in read)}B;;;0;"]
    if len(assessments) == 1:
        return Verdict(code, _line(code, assessments[0].text, perfdata))

    bad = sorted((a for a in assessments if a.code != OK), key=lambda a: -_SEVERITY[a.code])
    if bad:
        described = "; ".join(_one_line(a.text) for a in bad[:_LISTED_DATASETS])
        more = f"; and {len(bad) - _LISTED_DATASETS} more" if len(bad) > _LISTED_DATASETS else ""
        summary = f"{len(bad)} of {len(assessments)} datasets not OK: {described}{more}"
    else:
        stalest = max(assessments, key=lambda a: a.age or 0)
        summary = f"all {len(assessments)} datasets OK; the stalest: {_one_line(stalest.text)}"
    details = [f"[{STATES[a.code]}] {_one_line(a.text)}" for a in assessments]
    return Verdict(code, "\n".join([_line(code, summary, perfdata), *details]))


def unknown(text: str) -> Verdict:
    return Verdict(UNKNOWN, _line(UNKNOWN, text, []))


def _line(code: int, text: str, perfdata: list[str]) -> str:
    line = f"{PLUGIN_NAME} {STATES[code]} - {_one_line(text)}"
    return f"{line} | {' '.join(perfdata)}" if perfdata else line


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


def _worst(codes: Iterator[int] | Sequence[int]) -> int:
    return max(codes, key=lambda code: _SEVERITY[code])


def _one_line(text: str) -> str:
    """A newline would start the plugin's long output, and `|` its perfdata."""
    return " ".join(text.split()).replace("|", "/")


def _unusable_text(catalog: Catalog) -> str:
    if catalog.unusable:
        names = sorted(catalog.unusable)
        listed = ", ".join(names[:_LISTED_NAMES]) + (f" and {len(names) - _LISTED_NAMES} more"
                                                     if len(names) > _LISTED_NAMES else "")
        text = f"{len(names)} backup(s) unusable (damaged or missing manifest): {listed}"
        others = len(catalog.damaged) - len(catalog.unusable)
        return text + (f"; {others} other manifest problem(s)" if others > 0 else "")
    if catalog.damaged:
        return f"{len(catalog.damaged)} manifest problem(s): {catalog.damaged[0]}"
    return ""


def _restores(manifests: list[Manifest], tip: Manifest) -> bool:
    try:
        build_chain(manifests, tip.snapshot)
    except ZfsglacierError:  # a gap (ChainError), or manifests that form a loop (IntegrityError)
        return False
    return True


def _created(m: Manifest) -> datetime | None:
    try:
        return _aware(datetime.fromisoformat(m.created))
    except ValueError:
        return None


def _aware(moment: datetime) -> datetime:
    """Times without a zone are UTC, as zfsglacier writes them."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def age_text(seconds: int) -> str:
    """45s, 12m, 5h 3m, 2d 4h: the two largest units."""
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        hours, minutes = divmod(seconds // 60, 60)
        return f"{hours}h" + (f" {minutes}m" if minutes else "")
    days, hours = divmod(seconds // 3600, 24)
    return f"{days}d" + (f" {hours}h" if hours else "")


def threshold_text(seconds: int) -> str:
    """A threshold in the largest unit that writes it exactly: 26h, 2d, 90m, 45s."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
