"""Reads from cold storage. Objects in S3 Glacier or Deep Archive cannot be read until they are thawed
(restored to a readable copy for some days), which takes hours and costs per GB. A restore or verify
finds which objects it needs are frozen, asks for exactly those to be thawed, and then either waits
(`--wait`) or stops with EXIT_THAW_PENDING, to be run again once they are readable.

Which objects may be frozen: those the listing shows in a cold tier, and those whose manifest records
a cold storage class (rclone lists a tier only for providers whose classes it knows: not for
`provider = Other`). An object neither says is cold may still be (a bucket lifecycle rule moved it):
a read the remote refuses as frozen (rclone.ObjectFrozen) makes the run probe every object it still
needs, with `probe_all`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from zfsglacier.errors import RemoteError, ThawPending, UsageError
from zfsglacier.remote.catalog import Catalog
from zfsglacier.remote.manifest import Manifest, Volume
from zfsglacier.remote.rclone import Rclone
from zfsglacier.signals import step
from zfsglacier.units import human_bytes

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
# What AWS bills for a thaw (us-east-1 list prices, 2025): dollars per GB and per 1,000 requests.
# Intelligent-Tiering's archive tiers bill no retrieval.
RETRIEVAL_PRICES = {
    ("GLACIER", "Expedited"): (0.03, 10.0),
    ("GLACIER", "Standard"): (0.01, 0.05),
    ("GLACIER", "Bulk"): (0.0, 0.0),
    ("DEEP_ARCHIVE", "Standard"): (0.02, 0.10),
    ("DEEP_ARCHIVE", "Bulk"): (0.0025, 0.025),
    ("INTELLIGENT_TIERING", "Standard"): (0.0, 0.0),
    ("INTELLIGENT_TIERING", "Bulk"): (0.0, 0.0),
    ("INTELLIGENT_TIERING", "Expedited"): (0.0, 0.0),
}
UNLISTED = ""  # the tier of an object found frozen that neither its listing nor its manifest names
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
    tier: str  # its cold storage class, from the listing or the manifest; UNLISTED when neither names one


def cold_tier(catalog: Catalog, manifest: Manifest, volume: Volume) -> str | None:
    """The cold storage class an object is in by its listing, else by its manifest; None when neither
    names a cold one."""
    stored = catalog.objects.get(volume.object)
    for tier in ((stored.tier if stored else None), manifest.storage_class):
        if tier and tier.upper() in COLD_TIERS:
            return tier.upper()
    return None


def frozen_objects(rclone: Rclone, catalog: Catalog, chain: list[Manifest], *,
                   probe_all: bool = False) -> list[Frozen]:
    """The objects of `chain` that cannot be read now, found with a one-byte read of each object the
    listing or its manifest puts in a cold class; with `probe_all`, of every object."""
    found = []
    for manifest in chain:
        for volume in manifest.parts:
            tier = cold_tier(catalog, manifest, volume)
            if (tier is not None or probe_all) and not rclone.readable_now(catalog.path(volume.object)):
                found.append(Frozen(volume, tier or UNLISTED))
    return found


def thaw_time(frozen: list[Frozen], priority: str) -> str:
    tiers = {tier for f in frozen for tier in (("GLACIER", "DEEP_ARCHIVE") if f.tier == UNLISTED else (f.tier,))}
    times = sorted({THAW_TIMES[(tier, priority)] for tier in tiers if (tier, priority) in THAW_TIMES})
    return " / ".join(times) or "unknown"


def retrieval_cost(frozen: list[Frozen], priority: str) -> tuple[float, float] | None:
    """The lowest and highest retrieval fee (dollars) at AWS list prices: a range only when some object's
    class is unlisted (Glacier or Deep Archive); None when a class has no price for `priority`."""
    low = high = 0.0
    for f in frozen:
        tiers = ("GLACIER", "DEEP_ARCHIVE") if f.tier == UNLISTED else (f.tier,)
        fees = [f.volume.stored_bytes / 1e9 * per_gb + per_thousand / 1000
                for tier in tiers if (prices := RETRIEVAL_PRICES.get((tier, priority))) is not None
                for per_gb, per_thousand in [prices]]
        if not fees:
            return None
        low, high = low + min(fees), high + max(fees)
    return low, high


def _dollars(amount: float) -> str:
    if amount == 0:
        return "$0.00"
    return "under $0.01" if amount < 0.01 else f"about ${amount:,.2f}"


def cost_line(frozen: list[Frozen], options: ThawOptions) -> str:
    cost = retrieval_cost(frozen, options.priority)
    if cost is None:
        fee = "unknown"
    else:
        low, high = cost
        fee = _dollars(low) if low == high else f"${low:,.2f} to ${high:,.2f} (by storage class)"
    return (f"  the thaw's retrieval fee at AWS list prices (us-east-1): {fee}; while thawed, the copies are "
            f"billed as S3 Standard for {options.days} day(s), and downloading them is billed as egress")


def plan_lines(frozen: list[Frozen], options: ThawOptions) -> list[str]:
    if not frozen:
        return []
    total = sum(f.volume.stored_bytes for f in frozen)
    where = ", ".join(tier for tier in sorted({f.tier for f in frozen}) if tier)
    unlisted = sum(1 for f in frozen if f.tier == UNLISTED)
    if unlisted:
        where = (where + " and " if where else "") + "an archive tier the listing does not name"
    return [f"{len(frozen)} object(s), {human_bytes(total)}, are in {where} and must be thawed first: priority "
            f"{options.priority} ({thaw_time(frozen, options.priority)}), readable for {options.days} day(s) "
            "after; the thaw is billed by the remote",
            cost_line(frozen, options)]


def check_priority(frozen: list[Frozen], priority: str) -> None:
    if priority == "Expedited" and any(f.tier == "DEEP_ARCHIVE" for f in frozen):
        raise UsageError("--thaw-priority Expedited: Deep Archive objects thaw only with Standard (12 hours) "
                         "or Bulk (48 hours)")


def thaw(rclone: Rclone, catalog: Catalog, frozen: list[Frozen], options: ThawOptions,
         sleep: Callable[[float], None] = time.sleep, *, command: str = "restore", meanwhile: str = "") -> None:
    """Ask for the thaw of every frozen object (one already thawing is fine), then wait for all of them
    or raise ThawPending, which says to run the same `command` again; `meanwhile`: what the run leaves
    in the meantime (an unfinished restore's target)."""
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
                          f"{command} again once they are readable, or with --wait to wait for them"
                          + (f"; {meanwhile}" if meanwhile else ""))
    log.warning("%s (priority %s: %s); waiting (--wait)", what, options.priority, when)
    with step(f"waiting for the thaw of {len(frozen)} object(s) in {catalog.directory}"):
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
