"""Remote retention by whole chains ([retention] keep_chains, max_age): pure functions.

A chain is a full and every backup that restores from it. Only whole chains are deleted, so a kept
backup never loses what it needs. A chain is kept when it is among the `keep_chains` newest, or when
its newest backup is younger than `max_age` (either rule keeps it: a chain goes only when no rule
wants it), and the newest chain is always kept. Backups whose chain has a gap cannot be placed and
are never deleted here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from zfsglacier.config import RetentionPolicy
from zfsglacier.errors import ChainError
from zfsglacier.remote.manifest import Manifest, build_chain

# Storage classes that bill each object for a minimum number of days, even when deleted sooner.
MINIMUM_DAYS = {"STANDARD_IA": 30, "ONEZONE_IA": 30, "GLACIER_IR": 90, "GLACIER": 90, "DEEP_ARCHIVE": 180}


@dataclass(frozen=True)
class Chain:
    backups: list[Manifest]  # the full first, then by creation

    @property
    def full(self) -> Manifest:
        return self.backups[0]

    @property
    def newest(self) -> Manifest:
        return self.backups[-1]


def chains_of(manifests: list[Manifest]) -> tuple[list[Chain], list[Manifest]]:
    """The chains, oldest full first, and the backups that belong to none (their chain has a gap)."""
    members: dict[str, list[Manifest]] = {}
    unplaced = []
    for m in manifests:
        try:
            root = build_chain(manifests, m.snapshot)[0]
        except ChainError:
            unplaced.append(m)
            continue
        members.setdefault(root.guid, []).append(m)
    order = {m.guid: position for position, m in enumerate(manifests)}
    chains = [Chain(sorted(group, key=lambda m: order[m.guid])) for group in members.values()]
    return sorted(chains, key=lambda c: order[c.full.guid]), unplaced


def age_days(m: Manifest, now: datetime) -> float:
    return (now - datetime.fromisoformat(m.created)).total_seconds() / 86400


def expired(chains: list[Chain], policy: RetentionPolicy, now: datetime) -> list[tuple[Chain, str]]:
    """The chains `policy` deletes, with why, oldest first."""
    if not policy.active:
        return []
    gone = []
    for rank, chain in enumerate(reversed(chains)):  # rank 0: the newest chain
        if rank == 0:
            continue
        kept_by_count = policy.keep_chains is not None and rank < policy.keep_chains
        age = age_days(chain.newest, now)
        kept_by_age = policy.max_age_days is not None and age < policy.max_age_days
        if kept_by_count or kept_by_age:
            continue
        why = []
        if policy.keep_chains is not None:
            why.append(f"beyond the {policy.keep_chains} newest chain(s) ([retention] keep_chains)")
        if policy.max_age_days is not None:
            why.append(f"its newest backup is {age:.0f} days old ([retention] max_age = {policy.max_age_days}d)")
        gone.append((chain, "; ".join(why)))
    return list(reversed(gone))


def billed_anyway(tier: str | None, age: float) -> int:
    """Days of storage still billed for an object of `tier` deleted at `age` days (0: none)."""
    minimum = MINIMUM_DAYS.get((tier or "").upper())
    return max(0, int(minimum - age)) if minimum is not None else 0
