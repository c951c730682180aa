"""Restores from cold storage. Objects in S3 Glacier or Deep Archive cannot be read until they are
thawed (restored to a readable copy for some days), which takes hours and costs per GB. A restore
finds which objects of its chain are frozen, asks for exactly those to be thawed, and then either
waits (`--wait`) or stops with EXIT_THAW_PENDING, to be run again once they are readable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from .catalog import Catalog
from .errors import RemoteError, ThawPending, UsageError
from .manifest import Manifest, Volume
from .progress import human_bytes
from .rclone import Rclone

log = logging.getLogger(__name__)

# Storage classes whose objects may need a thaw before a read (Intelligent-Tiering only in its archive
# access tiers: each object is tried with a one-byte read to tell).
COLD_TIERS = frozenset({"GLACIER", "DEEP_ARCHIVE", "INTELLIGENT_TIERING"})
PRIORITIES = ("Standard", "Bulk", "Expedited")
DEFAULT_PRIORITY = "Standard"
DEFAULT_DAYS = 7
# How long AWS takes to thaw, by storage class and priority.
THAW_TIMES = {
    ("GLACIER", "Expedited"): "1-5 minutes",
    ("GLACIER", "Standard"): "3-5 hours",
    ("GLACIER", "Bulk"): "5-12 hours",
    ("DEEP_ARCHIVE", "Standard"): "up to 12 hours",
    ("DEEP_ARCHIVE", "Bulk"): "up to 48 hours",
}
FIRST_POLL_SECONDS = 60.0
MAX_POLL_SECONDS = 30 * 60.0
_IN_PROGRESS = "RestoreAlreadyInProgress"


@dataclass(frozen=True)
class ThawOptions:
    priority: str = DEFAULT_PRIORITY
    days: int = DEFAULT_DAYS  # how long the thawed copy stays readable
    wait: bool = False


NO_WAIT = ThawOptions()


@dataclass(frozen=True)
class Frozen:
    volume: Volume  # an object of a backup (its only one, or one of its volumes)
    tier: str


def frozen_objects(rclone: Rclone, catalog: Catalog, chain: list[Manifest]) -> list[Frozen]:
    """The objects of `chain` in a cold storage class that cannot be read now."""
    found = []
    for volume in (v for m in chain for v in m.parts):
        stored = catalog.objects.get(volume.object)
        tier = (stored.tier or "").upper() if stored else ""
        if tier in COLD_TIERS and not rclone.readable_now(catalog.path(volume.object)):
            found.append(Frozen(volume, tier))
    return found


def thaw_time(frozen: list[Frozen], priority: str) -> str:
    times = sorted({THAW_TIMES.get((f.tier, priority), "unknown") for f in frozen})
    return " / ".join(times)


def plan_lines(frozen: list[Frozen], options: ThawOptions) -> list[str]:
    if not frozen:
        return []
    total = sum(f.volume.stored_bytes for f in frozen)
    tiers = ", ".join(sorted({f.tier for f in frozen}))
    return [f"{len(frozen)} object(s), {human_bytes(total)}, are in {tiers} and must be thawed first: priority "
            f"{options.priority} ({thaw_time(frozen, options.priority)}), readable for {options.days} day(s) "
            f"after; the thaw is billed by the remote"]


def check_priority(frozen: list[Frozen], priority: str) -> None:
    if priority == "Expedited" and any(f.tier == "DEEP_ARCHIVE" for f in frozen):
        raise UsageError("--thaw-priority Expedited: Deep Archive objects thaw only with Standard (12 hours) "
                         "or Bulk (48 hours)")


def thaw(rclone: Rclone, catalog: Catalog, frozen: list[Frozen], options: ThawOptions,
         sleep: Callable[[float], None] = time.sleep) -> None:
    """Ask for the thaw of every frozen object (one already thawing is fine), then wait for all of them
    or raise ThawPending."""
    check_priority(frozen, options.priority)
    statuses = rclone.request_thaw(catalog.directory, [f.volume.object for f in frozen], options.priority,
                                   options.days)
    requested = already = 0
    for f in frozen:
        status = statuses.get(f.volume.object)
        if status == "OK":
            requested += 1
        elif status is not None and _IN_PROGRESS in status:
            already += 1
        else:
            raise RemoteError("rclone backend restore", f"the thaw of {catalog.path(f.volume.object)} was "
                                                        f"refused: {status or 'not in the answer'}")
    what = (f"thaw requested for {requested} object(s)" if requested else "") + \
        (", " if requested and already else "") + (f"{already} object(s) already thawing" if already else "")
    when = thaw_time(frozen, options.priority)
    if not options.wait:
        raise ThawPending(f"{what} in {catalog.directory} (priority {options.priority}: {when}); run the same "
                          "restore again once they are readable, or with --wait to wait for them")
    log.warning("%s (priority %s: %s); waiting (--wait)", what, options.priority, when)
    wait_until_readable(rclone, catalog, frozen, sleep)


def wait_until_readable(rclone: Rclone, catalog: Catalog, frozen: list[Frozen],
                        sleep: Callable[[float], None] = time.sleep) -> None:
    """Poll the frozen objects with a growing interval until every one is readable."""
    waiting = list(frozen)
    delay = FIRST_POLL_SECONDS
    started = time.monotonic()
    while True:
        waiting = [f for f in waiting if not rclone.readable_now(catalog.path(f.volume.object))]
        if not waiting:
            log.info("thawed: all %d object(s) readable after %.0f min", len(frozen),
                     (time.monotonic() - started) / 60)
            return
        log.info("thaw: %d of %d object(s) readable; next check in %.0f min", len(frozen) - len(waiting),
                 len(frozen), delay / 60)
        sleep(delay)
        delay = min(delay * 2, MAX_POLL_SECONDS)
