"""The shape of chains: how often a new full starts ([chain] full_every), and whether incrementals
follow each other or each one is based on the chain's full ([chain] differential). Pure functions.

Short chains restore faster and lose less when one object is damaged; a differential chain needs
only the full and one incremental for any restore, at the cost of incrementals that grow with the
changes since the full.
"""

from __future__ import annotations

from datetime import datetime

from zfsglacier.config import ChainPolicy
from zfsglacier.remote.manifest import Manifest, build_chain


def backups_on(manifests: list[Manifest], full: Manifest) -> int:
    """How many backups restore from `full` (itself included)."""
    by_guid = {m.guid: m for m in manifests}

    def root(m: Manifest) -> str:
        seen = set()
        while m.kind == "incremental" and m.base_guid in by_guid and m.guid not in seen:
            seen.add(m.guid)
            m = by_guid[m.base_guid or ""]
        return m.guid

    return sum(1 for m in manifests if root(m) == full.guid)


def next_base(policy: ChainPolicy, manifests: list[Manifest], tip: Manifest, now: datetime) -> \
        tuple[Manifest | None, str]:
    """What the next backup is based on, given `tip`, the newest committed backup it could follow:
    `tip` itself, the chain's full (differential), or None for a new full, with the reason."""
    chain = build_chain(manifests, tip.snapshot)
    full = chain[0]
    if policy.full_every_days is not None:
        age = now - datetime.fromisoformat(full.created)
        if age.total_seconds() >= policy.full_every_days * 86400:
            return None, (f"full: the chain's full {full.snapshot} is {age.days} days old "
                          f"([chain] full_every = {policy.describe()})")
    held = backups_on(manifests, full) if policy.differential else len(chain)
    if policy.full_every_backups is not None and held >= policy.full_every_backups:
        return None, (f"full: the chain from {full.snapshot} holds {held} backup(s) "
                      f"([chain] full_every = {policy.describe()})")
    return (full, "differential") if policy.differential else (tip, "incremental")
