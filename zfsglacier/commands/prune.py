"""`zfsglacier prune`: delete the chains [retention] no longer keeps (see policy/retention.py), and what
failed runs left (orphaned data, unfinished multipart uploads). Also run after each backup when
[retention] is set.

Order, so that an interruption at any point leaves only backups that restore: the index is rewritten
without the doomed manifests first; then each chain is deleted newest backup first, manifest before
data, so what remains of a chain is always a restorable prefix (and a data object left without its
manifest is an orphan, which the next run removes).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from zfsglacier import proc
from zfsglacier.config import BackupConfig
from zfsglacier.errors import AccessDenied, RemoteError
from zfsglacier.lock import DatasetLock
from zfsglacier.policy import chain_lock
from zfsglacier.policy.retention import Chain, age_days, billed_anyway, chains_of, expired
from zfsglacier.remote import leftovers
from zfsglacier.remote.catalog import Catalog, load_catalog, rewrite_index
from zfsglacier.remote.manifest import Manifest, manifest_name
from zfsglacier.remote.object_lock import stamp
from zfsglacier.remote.rclone import Rclone, rclone_for
from zfsglacier.signals import step
from zfsglacier.units import human_bytes

log = logging.getLogger(__name__)


def _now() -> datetime:
    """The clock ages are measured against (a seam for tests)."""
    return datetime.now(UTC)


def prune(cfg: BackupConfig, *, dry_run: bool = False, echo: Callable[[str], None] = print) -> list[Manifest]:
    rclone = rclone_for(cfg)
    with DatasetLock(cfg.dataset, "prune"):
        catalog = load_catalog(cfg, rclone)
        with proc.dry_run(echo) if dry_run else contextlib.nullcontext():
            leftovers.remove_orphans(rclone, catalog, keep=leftovers.interrupted_backups(catalog))
            leftovers.abort_unfinished_uploads(rclone, catalog)
            return prune_chains(cfg, rclone, catalog)


def prune_chains(cfg: BackupConfig, rclone: Rclone, catalog: Catalog) -> list[Manifest]:
    """Delete the expired chains (the caller holds the dataset's lock; under proc.dry_run, print how).
    Returns the deleted backups."""
    if not cfg.retention.active:
        log.info("prune: no [retention] keep_chains or max_age set: no backup is deleted")
        return []
    now = _now()
    chains, unplaced = chains_of(catalog.manifests)
    for m in unplaced:
        log.warning("prune: keeping %s: its chain has a gap, so it cannot be placed in a chain", m.snapshot)
    doomed = _unlocked(expired(chains, cfg.retention, now), now)
    if not doomed:
        log.info("prune: all %d chain(s) are kept", len(chains))
        return []
    deleted: list[Manifest] = []
    for chain, why in doomed:
        stored = sum(m.stored_bytes for m in chain.backups)
        log.info("prune: deleting the chain from %s: %d backup(s), %s stored, newest %s: %s", chain.full.snapshot,
                 len(chain.backups), human_bytes(stored), chain.newest.created, why)
        for m in chain.backups:
            _warn_if_billed_anyway(catalog, m, now)
        deleted += chain.backups
    with step(f"pruning {len(deleted)} backup(s) in {catalog.directory}"):
        rewrite_index(rclone, catalog, {manifest_name(m.snapshot) for m in deleted})
        try:
            for chain, _ in doomed:
                for m in reversed(chain.backups):
                    rclone.delete(catalog.path(manifest_name(m.snapshot)), why=f"the commit of {m.snapshot}")
                    for volume in m.parts:
                        if volume.object in catalog.objects:
                            rclone.delete(catalog.path(volume.object))
        except AccessDenied as refused:
            raise AccessDenied(refused.stage, f"{refused.detail}: this credential may not delete (s3:DeleteObject); "
                                              "prune with the credential meant for it (README: Object Lock, least "
                                              "privilege); what is left of the chain still restores",
                               refused.stderr_tail) from None
    if proc.dry_running():
        return deleted
    log.info("prune: deleted %d backup(s) in %d chain(s), %s stored", len(deleted), len(doomed),
             human_bytes(sum(m.stored_bytes for m in deleted)))
    return deleted


def _unlocked(doomed: list[tuple[Chain, str]], now: datetime) -> list[tuple[Chain, str]]:
    """The expired chains that may be deleted now: a chain under an Object Lock is kept, and said so, until
    its lock ends (in a versioned bucket a delete would only hide it, behind a delete marker)."""
    free = []
    for chain, why in doomed:
        until = chain_lock.locked_until(chain.backups, now)
        if until is None:
            free.append((chain, why))
            continue
        log.info("prune: the chain from %s (%d backup(s)) is past [retention] (%s), but its objects are locked "
                 "until %s: it can be deleted from then", chain.full.snapshot, len(chain.backups), why,
                 stamp(until))
    return free


def _warn_if_billed_anyway(catalog: Catalog, m: Manifest, now: datetime) -> None:
    stored = catalog.objects.get(m.object)  # the volumes of one backup share its class and age
    tier = (stored.tier if stored else None) or m.storage_class  # a provider may list no tiers
    age = age_days(m, now)
    days = billed_anyway(tier, age)
    if days:
        volumes = f" and its {len(m.parts) - 1} further volume(s)" if len(m.parts) > 1 else ""
        log.warning("prune: %s%s is in %s, stored %.0f days ago: it is billed for %d more days although deleted",
                    catalog.path(m.object), volumes, tier, age, days)


def prune_after_backup(cfg: BackupConfig, rclone: Rclone) -> None:
    """After a committed backup, under its lock: a failure says the backup itself is safe."""
    try:
        prune_chains(cfg, rclone, load_catalog(cfg, rclone))
    except AccessDenied as exc:
        log.warning("the backup is committed; pruning the remote was refused: %s", exc.detail)
    except RemoteError as exc:
        raise RemoteError(exc.stage, f"the backup is committed, but pruning the remote failed: {exc.detail}",
                          exc.stderr_tail) from None
