"""What a backup's dry run prints: the commands of the run, as a person could paste them. The removal of
leftovers before it and the remote's pruning after it print through the process layer (proc.dry_run), by
running their real code; the stream and the steps after its commit, which need a snapshot that a dry run
does not make, are told here (tests/integration/test_dry_run_shows_the_real_run.py holds them to what a
real run then does)."""

from __future__ import annotations

import socket
from collections.abc import Callable

from zfsglacier import __version__, proc
from zfsglacier.codec.registry import Codec
from zfsglacier.config import BackupConfig
from zfsglacier.policy import local_snapshots
from zfsglacier.policy.send_plan import Plan
from zfsglacier.remote import manifest_index
from zfsglacier.remote.catalog import Catalog
from zfsglacier.remote.manifest import Manifest, manifest_name
from zfsglacier.remote.rclone import Rclone
from zfsglacier.zfs import capabilities
from zfsglacier.zfs import cmd as zfs
from zfsglacier.zfs.cmd import Bookmark, Snapshot


def print_plan(cfg: BackupConfig, rclone: Rclone, catalog: Catalog, plan: Plan, planned: Manifest,
               local: list[Snapshot], bookmarks: list[Bookmark], pipeline: list[list[str]],
               echo: Callable[[str], None]) -> None:
    """What a run would do, as commands a person can paste. `planned`: the backup as it will be committed.
    The steps after the commit are decided by the functions the real run uses (local_snapshots)."""
    echo(f"# {plan.why}")
    if plan.resumed is None and not plan.premade:
        echo(proc.render(zfs.snapshot_argv(plan.snapshot, "DRY-RUN")))
    echo(proc.render_pipeline(pipeline) + "  # compression runs in-process (the command shown writes the same "
                                          "format); the part size follows the stream's estimate")
    small = "STANDARD" if cfg.storage_class else None  # manifests and the index are read on every run
    if plan.lock is not None:
        echo(f"# each object of this backup is locked ({plan.lock.mode}) until {plan.lock.until_text} "
             "([rclone] object_lock), which is checked once uploaded")
    echo(proc.render(rclone.rcat_argv(catalog.path(manifest_name(plan.short_name)), small, lock=plan.lock))
         + "  < manifest.json")
    echo(proc.render(zfs.clear_pending_argv(plan.snapshot)))
    echo(proc.render(rclone.rcat_argv(catalog.path(manifest_index.INDEX_NAME), small))
         + "  < index.json  # a copy of every manifest")
    base_next = local_snapshots.next_base_snapshot(cfg, planned)
    committed = catalog.guids | {planned.guid}
    tools = capabilities.zfs_tools()
    if tools.holds:
        echo(proc.render(zfs.hold_argv(local_snapshots.HOLD_TAG, base_next)) + "  # the next incremental's base")
        for old in local_snapshots.replaced_holds(local, base_next, committed):
            echo(proc.render(zfs.release_argv(local_snapshots.HOLD_TAG, old.name)))
    if local_snapshots.uses_bookmarks(cfg, tools):
        bookmark = local_snapshots.bookmark_name(base_next)
        echo(proc.render(zfs.bookmark_argv(base_next, bookmark)) + "  # a base that outlives the snapshot")
        for mark in local_snapshots.replaced_bookmarks(cfg, bookmarks, base_next, committed):
            echo(proc.render(zfs.destroy_bookmark_argv(mark.name)))
    # The new snapshot is not there yet: it is the one about to be added, and it is kept.
    for old in local_snapshots.to_prune(cfg, local, catalog.guids, about_to_add=1, keep=base_next):
        echo(proc.render(zfs.destroy_snapshot_argv(old.name)))


def planned_manifest(cfg: BackupConfig, plan: Plan, codec: Codec, created: str) -> Manifest:
    """The backup a dry run plans, as the catalog will hold it once committed (its sizes and guid are not
    known yet): what the remote's retention decides with."""
    return Manifest(dataset=cfg.dataset, snapshot=plan.short_name, guid=f"planned:{plan.short_name}", createtxg=0,
                    kind=plan.kind, base=plan.base.short_name if plan.base else None,
                    base_guid=plan.base.guid if plan.base else None, compressor=codec.name, level=plan.level,
                    raw_bytes=0, stored_bytes=0, sha256="", object=plan.object_name,
                    created=created, host=socket.gethostname(), tool_version=__version__)
