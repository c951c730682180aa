"""S3 Object Lock ([rclone] object_lock): how long the objects of each backup are locked, when a chain
must end because its lock would not cover one more backup, and until when a chain cannot be deleted.
Pure functions.

The arithmetic. A chain starts with a full at T. Backups join it while its full is younger than
[chain] full_every (F days), so its newest backup is made by T + F; retention keeps a chain until its
newest backup is [retention] max_age (A days) old, so by T + F + A it may be deleted. Every object of
the chain (data, volumes, manifests) is locked until

    T + F + A + MARGIN_DAYS

the full's lock, which every incremental of the chain gets too. An incremental made at t must stay
locked for as long as retention may keep it: t + A + MARGIN_DAYS. When the chain's lock ends sooner
(the backups stopped for a while, [retention] max_age grew, the chain was made before the lock was
turned on or in another mode), the backup starts a new full instead and says why: a chain never
outlives the lock of its full.

Chains that [retention] keep_chains keeps beyond max_age stay, unlocked once their lock has ended.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from zfsglacier.config import BackupConfig
from zfsglacier.remote.manifest import Manifest
from zfsglacier.remote.object_lock import Lock, parse_until, stamp

# Room between the end of what retention keeps and the end of the lock: for late runs, a prune that
# runs days after a chain expired, and clocks that differ.
MARGIN_DAYS = 7


def lock_days(cfg: BackupConfig) -> int:
    """How long a new chain's objects are locked: full_every + max_age + MARGIN_DAYS (config.py makes sure
    both are set whenever object_lock is)."""
    return (cfg.chain.full_every_days or 0) + (cfg.retention.max_age_days or 0) + MARGIN_DAYS


def needed_until(cfg: BackupConfig, now: datetime) -> datetime:
    """How long a backup made `now` must stay locked: as long as retention may keep it, and the margin."""
    return now + timedelta(days=(cfg.retention.max_age_days or 0) + MARGIN_DAYS)


def for_full(cfg: BackupConfig, mode: str, now: datetime) -> Lock:
    """The lock of a new chain (`mode`: [rclone] object_lock): its full, and every backup that will join it."""
    until = (now.astimezone(UTC) + timedelta(days=lock_days(cfg))).replace(microsecond=0) + timedelta(seconds=1)
    return Lock(mode, until)


def chain_lock(chain: Sequence[Manifest]) -> Lock | None:
    """The lock that covers the whole chain (the earliest end of its backups' locks), None when one of them
    is not locked at all."""
    ends = [parse_until(m.lock_until) for m in chain]
    modes = {m.lock_mode for m in chain}
    if not chain or any(end is None for end in ends) or len(modes) != 1 or None in modes:
        return None
    return Lock(str(modes.pop()), min(end for end in ends if end is not None))


def why_new_chain(cfg: BackupConfig, mode: str, chain: Sequence[Manifest], now: datetime) -> str | None:
    """Why the next backup, to be locked in `mode` ([rclone] object_lock), may not join `chain` (the backups
    it would restore from); None when it may."""
    lock = chain_lock(chain)
    key = f"[rclone] object_lock = {mode.lower()}"
    full = chain[0].snapshot
    if lock is None:
        return f"full: the chain from {full} is not locked ({key}): a new chain is, from its full"
    if lock.mode != mode:
        return f"full: the chain from {full} is locked in {lock.mode} mode, not {mode} ({key})"
    needed = needed_until(cfg, now)
    if lock.until < needed:
        return (f"full: the chain from {full} is locked until {stamp(lock.until)}, and a backup made now must stay "
                f"locked until {stamp(needed)} ([retention] max_age = {cfg.retention.max_age_days}d + "
                f"{MARGIN_DAYS} days): a chain never outlives the lock of its full")
    return None


def locked_until(backups: Sequence[Manifest], now: datetime) -> datetime | None:
    """When the last lock among `backups` ends, if that is after `now`: till then they cannot be deleted."""
    ends = [end for m in backups if (end := parse_until(m.lock_until)) is not None and end > now]
    return max(ends) if ends else None
