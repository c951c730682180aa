"""`zfsglacier backup`: snapshot, stream to the remote, commit a manifest, prune.

A backup is prepared (the checks, the dataset's lock, the remote's catalog, the removal of what failed
runs left, the plan: a full, an incremental, or a resumed backup), then executed: the stream and its
commit (backup_commit.py, which leaves nothing half-committed), then the index, holds, local snapshots
and the remote's pruning. A tree's one snapshot (backup_tree.py) and datasets side by side
(side_by_side.py) are built from the same two steps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from zfsglacier import proc
from zfsglacier.background import Background
from zfsglacier.codec.registry import get_codec
from zfsglacier.commands import side_by_side
from zfsglacier.commands.backup_commit import stream_and_commit
from zfsglacier.commands.backup_plan import planned_manifest, print_plan
from zfsglacier.commands.backup_volumes import data_storage_class, upload_sizing
from zfsglacier.commands.metrics import record_run
from zfsglacier.commands.prune import prune_after_backup, prune_chains
from zfsglacier.config import BackupConfig
from zfsglacier.errors import LockBusyError
from zfsglacier.lock import DatasetLock
from zfsglacier.policy import chain_lock, local_snapshots, resume, send_plan
from zfsglacier.policy.send_plan import Plan
from zfsglacier.remote import leftovers, object_lock
from zfsglacier.remote.catalog import Catalog, load_catalog, write_index
from zfsglacier.remote.manifest import (
    Manifest,
    build_chain,
    data_object_name,
)
from zfsglacier.remote.rclone import Rclone, rclone_for
from zfsglacier.signals import step
from zfsglacier.units import human_bytes
from zfsglacier.zfs import capabilities, delegation
from zfsglacier.zfs import cmd as zfs
from zfsglacier.zfs.cmd import Bookmark, Snapshot

log = logging.getLogger(__name__)


def _now() -> datetime:
    """The clock snapshot names and manifests are stamped with (a seam for tests)."""
    return datetime.now(UTC)


def backup(cfg: BackupConfig, *, full: bool = False, dry_run: bool = False,
           echo: Callable[[str], None] = print) -> Manifest | None:
    """Back up one dataset. A run that is not a dry run is recorded in [monitoring] textfile (recorded())."""
    if dry_run:
        return _backup(cfg, full=full, dry_run=True, echo=echo, on_commit=lambda manifest: None)
    return recorded(cfg, lambda on_commit: _backup(cfg, full=full, dry_run=False, echo=echo, on_commit=on_commit))


def recorded(cfg: BackupConfig, run: Callable[[Callable[[Manifest], None]], Manifest | None]) -> Manifest | None:
    """`run(on_commit)`, recorded in [monitoring] textfile when it is set (commands/metrics.py): a success as
    soon as its manifest is committed, and a failure when the run fails, before or after that (after it,
    the success's timestamp stays). Writing the file never fails the run."""
    started = time.monotonic()

    def record_commit(manifest: Manifest) -> None:
        record_run(cfg.monitoring.textfile, cfg.dataset, success=True, finished=_now(),
                   seconds=time.monotonic() - started, raw_bytes=manifest.raw_bytes, stored_bytes=manifest.stored_bytes)

    try:
        return run(record_commit)
    except LockBusyError:
        raise  # another run holds the dataset and records its own outcome; this one did nothing
    except BaseException:
        record_run(cfg.monitoring.textfile, cfg.dataset, success=False, finished=_now())
        raise


def _delegated_needs(cfg: BackupConfig) -> frozenset[str]:
    tools = capabilities.zfs_tools()
    return delegation.backup_needs(holds=tools.holds, bookmarks=local_snapshots.uses_bookmarks(cfg, tools))


def _backup(cfg: BackupConfig, *, full: bool, dry_run: bool, echo: Callable[[str], None],
            on_commit: Callable[[Manifest], None]) -> Manifest | None:
    with contextlib.ExitStack() as held:
        prepared = prepare(cfg, held, full=full, dry_run=dry_run, echo=echo)
        if dry_run:
            print_dry_run(prepared, echo)
            return None
        return execute(prepared, on_commit)


@dataclass(frozen=True)
class Prepared:
    """A dataset's backup, decided and with its lock held, up to the snapshot: what execute() runs."""

    cfg: BackupConfig
    rclone: Rclone
    tools: capabilities.ZfsTools
    catalog: Catalog
    plan: Plan
    local: list[Snapshot]
    bookmarks: list[Bookmark]
    note: str | None  # said in the log: why the configured compressor is not used
    taken: frozenset[str]  # snapshot names the dataset or its remote folder already have
    full: bool  # --full

    def sharing(self, ways: int) -> Prepared:
        """The same backup as one of `ways` that run at once (side_by_side.shared)."""
        if ways == 1:
            return self
        cfg = side_by_side.shared(self.cfg, ways)
        return dataclasses.replace(self, cfg=cfg, rclone=rclone_for(cfg))

    def named(self, short: str, *, premade: bool) -> Prepared:
        """The same backup under another snapshot name (a tree's one name: backup_tree.py); `premade`: that
        snapshot is made by someone else (the tree's one zfs snapshot)."""
        plan = self.plan
        first = data_object_name(short, plan.kind, get_codec(plan.compressor).suffix)
        return dataclasses.replace(self, plan=dataclasses.replace(plan, snapshot=f"{self.cfg.dataset}@{short}",
                                                                  object_name=first, premade=premade))


def prepare(cfg: BackupConfig, held: contextlib.ExitStack, *, full: bool, dry_run: bool,
            echo: Callable[[str], None], loaded: Catalog | None = None) -> Prepared:
    """Everything before the snapshot: the checks, the dataset's lock (held in `held`), the remote's catalog,
    the removal of what failed runs left, and the plan (a full or an incremental, or a resumed backup).
    `loaded`: the catalog, read already under the dataset's lock, which `held` then holds (backup_tree.py)."""
    local_snapshots.check_snapshot_names_fit(cfg)
    rclone = rclone_for(cfg)
    delegation.require(cfg.dataset, lambda: _delegated_needs(cfg), "backup")
    tools = capabilities.zfs_tools()
    if cfg.object_lock is not None:  # before anything is made: a lock that cannot be honoured is a config error
        with proc.dry_run(echo) if dry_run else contextlib.nullcontext():
            object_lock.require_lockable(cfg, cfg.object_lock, rclone, _now())
    if loaded is None:
        held.enter_context(DatasetLock(cfg.dataset, "backup"))
    with step(f"backing up {cfg.dataset}"):
        local = zfs.list_snapshots(cfg.dataset)
        encrypted = tools.raw_send and capabilities.dataset_is_encrypted(cfg.dataset)
        options = send_plan.stream_options(cfg, tools, encrypted)
        codec = get_codec(options.compressor)
        bookmarks = zfs.list_bookmarks(cfg.dataset) if local_snapshots.uses_bookmarks(cfg, tools) else []
        catalog = loaded if loaded is not None else load_catalog(cfg, rclone)
        raw = "-w" in options.send_flags
        partial = resume.find(cfg, rclone, catalog, local)
        if partial is not None:
            not_now = resume.why_not(partial, full=full, send_flags=options.send_flags,
                                     compressor=options.compressor, level=options.level,
                                     limit=cfg.max_object_size, base=resume.base_of(partial, local, bookmarks)) \
                or _lock_outlived(cfg, catalog, partial)
            if not_now:
                log.warning("%s@%s: the interrupted backup is not resumed (%s): its %d stored volume(s) are "
                            "removed", cfg.dataset, partial.snapshot, not_now, len(partial.volumes))
                partial = None
        with proc.dry_run(echo) if dry_run else contextlib.nullcontext():
            local = local_snapshots.remove_leftovers(cfg, rclone, catalog, local, resuming=partial)
            leftovers.abort_unfinished_uploads(rclone, catalog)

        taken = frozenset({s.short_name for s in local} | {m.snapshot for m in catalog.manifests})
        if partial is not None:
            base = resume.base_of(partial, local, bookmarks)
            _, _, lock = send_plan.lock_for(cfg, catalog, base, "", _now())
            plan = Plan(f"{cfg.dataset}@{partial.snapshot}", base,
                        partial.object, f"resuming the interrupted {partial.kind}: {len(partial.volumes)} "
                        f"volume(s), {human_bytes(partial.stored_bytes)}, are stored", partial.send_flags,
                        partial.compressor, partial.level, partial, lock)
        else:
            base, why = (None, "full: --full given") if full else \
                send_plan.choose_base(catalog, local, bookmarks, raw, cfg.chain, _now())
            base, why, lock = send_plan.lock_for(cfg, catalog, base, why, _now())
            short = local_snapshots.new_snapshot_name(cfg.snapshot_prefix, _now(), set(taken))
            kind = "full" if base is None else "incremental"
            plan = Plan(f"{cfg.dataset}@{short}", base, data_object_name(short, kind, codec.suffix), why,
                        options.send_flags, options.compressor, options.level, lock=lock)
    return Prepared(cfg, rclone, tools, catalog, plan, local, bookmarks, options.note, taken, full)


def _rcat_argv(p: Prepared) -> list[str]:
    """The data upload as a dry run shows it (the part size then follows the stream's estimate)."""
    sizing = upload_sizing(p.cfg, None)
    return p.rclone.rcat_argv(p.catalog.path(p.plan.object_name), data_storage_class(p.cfg.storage_class, None),
                              [*sizing.rclone_flags(), *p.rclone.unused_check_flags(p.cfg.remote, sizing.multipart)],
                              p.plan.lock)


def print_dry_run(p: Prepared, echo: Callable[[str], None]) -> None:
    cfg, plan = p.cfg, p.plan
    if p.note:
        echo(f"# {p.note}")
    codec = get_codec(plan.compressor)
    planned = planned_manifest(cfg, plan, codec, _now().isoformat(timespec="seconds"))
    send_argv = zfs.send_argv(plan.snapshot, plan.base_name, plan.send_flags)
    print_plan(cfg, p.rclone, p.catalog, plan, planned, p.local, p.bookmarks,
               [send_argv, codec.compress_argv(plan.level, cfg.threads), _rcat_argv(p)], echo)
    if cfg.retention.active:  # what the remote's retention deletes once this backup is committed
        with proc.dry_run(echo):
            prune_chains(cfg, p.rclone, dataclasses.replace(p.catalog, manifests=[*p.catalog.manifests, planned]))


def execute(p: Prepared, on_commit: Callable[[Manifest], None]) -> Manifest:
    """Snapshot (unless made already: a resumed backup, or a tree's atomic snapshot), stream, commit, then
    the index, holds, local snapshots and the remote's pruning."""
    cfg, rclone, catalog, plan = p.cfg, p.rclone, p.catalog, p.plan
    with step(f"backing up {cfg.dataset}"):
        if p.note:
            log.info("%s", p.note)
        # A full that was not asked for costs a whole upload (and storage) more: make it stand out.
        unasked_full = plan.base is None and catalog.manifests and not p.full and plan.resumed is None
        log.log(logging.WARNING if unasked_full else logging.INFO, "%s: %s", plan.snapshot, plan.why)
        send_argv = zfs.send_argv(plan.snapshot, plan.base_name, plan.send_flags)
        manifest = stream_and_commit(cfg, rclone, catalog, plan, send_argv, _now)
        on_commit(manifest)
        with step(f"after committing {plan.snapshot}: updating the index, holds and local snapshots"):
            # The index (a cache: its failure is a warning) is written while the local snapshots are seen to.
            indexing = Background(lambda: write_index(rclone, catalog, manifest), "write: index")
            try:
                _after_commit(cfg, p.tools, manifest, catalog.guids | {manifest.guid})
            finally:
                indexing.result()
        if cfg.retention.active:
            prune_after_backup(cfg, rclone)
        return manifest


def _after_commit(cfg: BackupConfig, tools: capabilities.ZfsTools, manifest: Manifest, committed: set[str]) -> None:
    """The new snapshot is no longer pending; the next base is held (and bookmarked), the old ones pruned."""
    zfs.clear_pending(manifest.full_snapshot)
    base_next = local_snapshots.next_base_snapshot(cfg, manifest)
    local_snapshots.hold_base(zfs.list_snapshots(cfg.dataset), base_next, committed)
    if local_snapshots.uses_bookmarks(cfg, tools):
        local_snapshots.bookmark_base(cfg, base_next, committed)
    local_snapshots.prune_local(cfg, zfs.list_snapshots(cfg.dataset), committed, keep=base_next)


def _lock_outlived(cfg: BackupConfig, catalog: Catalog, partial: resume.PartialBackup) -> str | None:
    """An interrupted incremental is not resumed once its chain's lock would not cover it."""
    if cfg.object_lock is None or partial.base_guid is None:
        return None
    base = next((m for m in catalog.manifests if m.guid == partial.base_guid), None)
    if base is None:
        return None  # resume.why_not has said what is wrong
    return chain_lock.why_new_chain(cfg, cfg.object_lock, build_chain(catalog.manifests, base.snapshot), _now())
