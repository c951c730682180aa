"""The verdict of `zfsglacier status` (status.py says what each state means): for one dataset, `judge`
(and `assess`, which keeps what `combine` needs), a pure function of its catalog, its last restore drill,
the time and the thresholds; for several, `combine`; and the plugin's line with its perfdata. No I/O."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from zfsglacier.config import MonitoringPolicy
from zfsglacier.errors import ZfsglacierError
from zfsglacier.policy import chain_lock
from zfsglacier.remote.catalog import Catalog
from zfsglacier.remote.drill_record import DrillRecord
from zfsglacier.remote.manifest import Manifest, build_chain
from zfsglacier.remote.object_lock import stamp
from zfsglacier.units import human_bytes

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
