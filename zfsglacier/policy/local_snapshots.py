"""zfsglacier's local snapshots: their names, which one the next backup is based on (held with a
`zfs hold`, bookmarked where OpenZFS can), what killed runs left, and pruning by snapshot_retention."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime

from zfsglacier import names
from zfsglacier.config import BackupConfig
from zfsglacier.errors import UsageError, ZfsError
from zfsglacier.policy.resume import PartialBackup
from zfsglacier.remote import leftovers
from zfsglacier.remote.catalog import Catalog
from zfsglacier.remote.manifest import Manifest, partial_name
from zfsglacier.remote.rclone import Rclone
from zfsglacier.zfs import capabilities
from zfsglacier.zfs import cmd as zfs
from zfsglacier.zfs.capabilities import ZfsTools
from zfsglacier.zfs.cmd import Bookmark, Snapshot

log = logging.getLogger(__name__)
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
HOLD_TAG = "zfsglacier"  # on the base of the next backup
_TIMESTAMP = r"\d{8}T\d{6}Z(-\d+)?"
# The timestamp and room for a collision counter ("-99").
_SUFFIX_ROOM = len("20261126T031500Z-99")


def new_snapshot_name(prefix: str, now: datetime, taken: set[str]) -> str:
    """`<prefix><UTC timestamp>`, with -1, -2... when that name is taken (two runs in one second)."""
    stamp = prefix + now.astimezone(UTC).strftime(TIMESTAMP_FORMAT)
    name, counter = stamp, 0
    while name in taken:
        counter += 1
        name = f"{stamp}-{counter}"
    return name


def is_own_snapshot(short_name: str, prefix: str) -> bool:
    """Made by this tool: the prefix followed by exactly our timestamp form."""
    return short_name.startswith(prefix) and re.fullmatch(_TIMESTAMP, short_name[len(prefix):]) is not None


def check_snapshot_names_fit(cfg: BackupConfig) -> None:
    """`<dataset>@<prefix><timestamp>` must fit ZFS's name limit: refuse before anything runs."""
    longest = f"{cfg.dataset}@{cfg.snapshot_prefix}" + "x" * _SUFFIX_ROOM
    problem = names.snapshot_name_problem(longest)
    if problem:
        raise UsageError(
            f"[zfs] dataset {cfg.dataset!r} with [zfs] snapshot_prefix {cfg.snapshot_prefix!r}: the snapshot "
            f"names would be {len(longest)} characters, ZFS allows {names.ZFS_MAX_NAME}: shorten the prefix"
        )


def next_base_snapshot(cfg: BackupConfig, committed: Manifest) -> str:
    """The snapshot the next backup is based on: the one just committed, or, in a differential chain,
    its full. It is held, bookmarked, and never pruned."""
    if cfg.chain.differential and committed.kind == "incremental" and committed.base:
        return f"{cfg.dataset}@{committed.base}"
    return committed.full_snapshot


def uses_bookmarks(cfg: BackupConfig, tools: ZfsTools) -> bool:
    return tools.bookmarks and tools.parsable_list and \
        capabilities.pool_has_feature(cfg.dataset.partition("/")[0], "bookmarks")


def bookmark_name(snapshot: str) -> str:
    """dataset@snap -> dataset#snap"""
    dataset, _, short = snapshot.partition("@")
    return f"{dataset}#{short}"


def bookmark_base(cfg: BackupConfig, base: str, committed_guids: set[str]) -> None:
    """Bookmark the newest committed snapshot, so that the next incremental can be sent from it even
    after the snapshot itself is destroyed (by pruning, or by another tool); the bookmarks of older
    bases are destroyed. A failure here is a warning: the backup is committed."""
    try:
        zfs.create_bookmark(base, bookmark_name(base))
        for old in replaced_bookmarks(cfg, zfs.list_bookmarks(cfg.dataset), base, committed_guids):
            zfs.destroy_bookmark(old.name)
    except ZfsError as exc:
        log.warning("the backup is committed, but bookmarking it (the next incremental's base if the "
                    "snapshot goes) failed: %s", exc)


def replaced_bookmarks(cfg: BackupConfig, bookmarks: list[Bookmark], base: str,
                       committed_guids: set[str]) -> list[Bookmark]:
    """The bookmarks of older bases, destroyed once `base` is bookmarked."""
    return [old for old in bookmarks if old.name != bookmark_name(base) and old.guid in committed_guids
            and is_own_snapshot(old.short_name, cfg.snapshot_prefix)]


def replaced_holds(local: list[Snapshot], base: str, committed_guids: set[str]) -> list[Snapshot]:
    """The older bases whose hold is released once `base` is held."""
    return [s for s in local if s.name != base and s.holds and s.guid in committed_guids]


def remove_leftovers(cfg: BackupConfig, rclone: Rclone, catalog: Catalog, local: list[Snapshot],
                      resuming: PartialBackup | None = None) -> list[Snapshot]:
    """Remove what an earlier run that was killed left behind (we hold the dataset's lock), except the
    snapshot and volumes of the interrupted backup this run resumes."""
    committed = {m.snapshot for m in catalog.manifests}
    kept: list[Snapshot] = []
    for snapshot in local:
        if snapshot.foreign_mark is not None:
            log.warning("%s carries %s=%s, a value zfsglacier never writes: not taking it for a leftover of an "
                        "interrupted backup (zfs inherit %s %s clears it)", snapshot.name, zfs.PENDING_PROPERTY,
                        snapshot.foreign_mark, zfs.PENDING_PROPERTY, snapshot.name)
        if not snapshot.pending or (resuming is not None and snapshot.short_name == resuming.snapshot):
            kept.append(snapshot)
        elif snapshot.short_name in committed:
            # Killed between the commit and clearing the mark: it is a good backup.
            kept.append(snapshot)
            zfs.clear_pending(snapshot.name, why="committed by a run killed before it cleared the mark")
        else:
            log.warning("destroying %s: left uncommitted by an interrupted run", snapshot.name)
            zfs.destroy_snapshot(snapshot.name, why="left by an interrupted run")
    keep = {v.object for v in resuming.volumes} | {partial_name(resuming.snapshot)} if resuming else set()
    leftovers.remove_orphans(rclone, catalog, keep=keep)
    return kept


def to_prune(cfg: BackupConfig, local: list[Snapshot], committed_guids: set[str],
              about_to_add: int = 0, keep: str | None = None) -> list[Snapshot]:
    """This tool's committed snapshots beyond the `snapshot_retention` newest, oldest first by creation
    txg (not by name: the clock may have been set back), never `keep` (the next backup's base).
    Snapshots made by anyone else, even named exactly like ours, have no committed backup with their
    guid and are never touched."""
    if cfg.snapshot_retention == 0:
        return []
    own = [s for s in local if is_own_snapshot(s.short_name, cfg.snapshot_prefix) and not s.pending
           and s.guid in committed_guids]
    # The newest is the base of the next incremental: it is always among the kept ones.
    return [s for s in own[: max(len(own) + about_to_add - cfg.snapshot_retention, 0)] if s.name != keep]


def hold_base(local: list[Snapshot], base: str, committed_guids: set[str]) -> None:
    """The newest committed snapshot, the next incremental's base, carries the hold HOLD_TAG, so that
    another tool (sanoid, zfs-auto-snapshot, a person) cannot destroy it; the bases it replaces are
    released, so that pruning can take them. A failure here is a warning: the backup is committed."""
    if not capabilities.zfs_tools().holds:
        return
    try:
        zfs.hold(HOLD_TAG, base)
        for snapshot in replaced_holds(local, base, committed_guids):
            zfs.release(HOLD_TAG, snapshot.name)
    except ZfsError as exc:
        log.warning("the backup is committed, but moving the hold %r to %s failed: %s", HOLD_TAG, base, exc)


def prune_local(cfg: BackupConfig, local: list[Snapshot], committed_guids: set[str], keep: str) -> None:
    failed: list[str] = []
    for snapshot in to_prune(cfg, local, committed_guids, keep=keep):
        if snapshot.holds:  # ours is only ever on the base, which is never pruned: another tool's
            log.warning("not pruning %s: another tool holds it (zfs holds %s)", snapshot.name, snapshot.name)
            continue
        log.info("pruning %s (snapshot_retention = %d)", snapshot.name, cfg.snapshot_retention)
        try:
            zfs.destroy_snapshot(snapshot.name)
        except ZfsError as exc:
            failed.append(str(exc))
    if failed:
        raise ZfsError("zfs destroy", "the backup is committed, but pruning old snapshots failed",
                       " | ".join(failed))
