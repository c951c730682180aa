"""One snapshot instant for a whole tree ([zfs] recursive = yes with atomic = yes, the default): a VM's
disks, or a database's data and log datasets, are captured consistent with each other.

Every dataset of the tree is prepared first (its lock; its catalog, all of them read in one listing of
the tree; the removal of what failed runs left; its plan), then one `zfs snapshot -r` makes the
snapshots of all of them at once, in one transaction group, under one name; then each dataset is
streamed and committed on its own, with its own chain, manifest and lock, exactly as a backup of that
dataset alone. A dataset that fails (before the snapshot, or its stream) is reported on its own line
and has its snapshot destroyed (or kept for resume), and the others still commit; the last line names
the failures. A dataset that resumes an interrupted backup keeps that backup's snapshot: what `-r`
made on it (and on a dataset that could not be prepared) is destroyed at once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from zfsglacier import proc
from zfsglacier.commands import backup as single
from zfsglacier.commands import datasets, side_by_side
from zfsglacier.commands.backup import Prepared, execute, prepare, print_dry_run, recorded
from zfsglacier.commands.metrics import record_run
from zfsglacier.config import BackupConfig
from zfsglacier.errors import EXIT_OK, LockBusyError, SignalReceived, ZfsglacierError
from zfsglacier.lock import DatasetLock
from zfsglacier.policy import local_snapshots
from zfsglacier.remote.catalog import Catalog
from zfsglacier.remote.catalogs import load_catalogs
from zfsglacier.remote.manifest import Manifest
from zfsglacier.remote.rclone import rclone_for
from zfsglacier.signals import step
from zfsglacier.zfs import cmd as zfs

log = logging.getLogger(__name__)


def backup_tree(top: str, targets: list[BackupConfig], *, full: bool = False, dry_run: bool = False,
                echo: Callable[[str], None] = print) -> int:
    """Back up `targets`, the datasets of the tree under `top`, from one atomic snapshot. Returns the first
    failed dataset's exit code, else 0."""
    failed: list[tuple[str, int]] = []
    with contextlib.ExitStack() as held:
        # Every dataset's lock first, then their catalogs in one read of the tree (remote/catalogs.py).
        locked = [cfg for cfg in targets if _lock(cfg, held, failed)]
        catalogs = load_catalogs(locked, (top,), rclone_for(targets[0])) if locked else {}
        prepared = [p for cfg in locked if (p := _prepare(cfg, held, failed, catalogs[cfg.dataset], full=full,
                                                          dry_run=dry_run, echo=echo)) is not None]
        fresh = {p.cfg.dataset for p in prepared if p.plan.resumed is None}
        if fresh:
            short = local_snapshots.new_snapshot_name(targets[0].snapshot_prefix, single._now(),
                                                      set().union(*(p.taken for p in prepared)))
            prepared = [p.named(short, premade=True) if p.cfg.dataset in fresh else p for p in prepared]
            _snapshot_tree(top, short, fresh, dry_run, echo)
        if dry_run:
            if targets[0].parallel > 1 and len(prepared) > 1:
                echo(f"# then a real run backs up {side_by_side.describe(targets[0], len(prepared))}")
            for p in prepared:
                print_dry_run(p, echo)
            return EXIT_OK
        if targets[0].parallel > 1 and len(prepared) > 1:
            log.info("%s", side_by_side.describe(targets[0], len(prepared)))
            outcomes = side_by_side.run(prepared, lambda p, ways: _execute(p.sharing(ways)), targets[0].parallel,
                                        lambda p: p.cfg.dataset, never_started=_never_streamed)
            failed += datasets.failures(outcomes, lambda p: p.cfg.dataset)
            return datasets.summarize(failed, len(targets))
        waiting = list(prepared)
        try:
            while waiting:
                p = waiting.pop(0)
                try:
                    _execute(p)
                except SignalReceived:
                    raise
                except ZfsglacierError as exc:
                    log.error("error: %s: %s", p.cfg.dataset, exc)
                    failed.append((p.cfg.dataset, exc.exit_code))
        except BaseException:
            for p in waiting:
                _never_streamed(p)
            raise
    return datasets.summarize(failed, len(targets))


def _lock(cfg: BackupConfig, held: contextlib.ExitStack, failed: list[tuple[str, int]]) -> bool:
    try:
        held.enter_context(DatasetLock(cfg.dataset, "backup"))
    except LockBusyError as exc:  # another run has it, and records its own outcome
        log.error("error: %s: %s (not in the tree's snapshot)", cfg.dataset, exc)
        failed.append((cfg.dataset, exc.exit_code))
        return False
    return True


def _prepare(cfg: BackupConfig, held: contextlib.ExitStack, failed: list[tuple[str, int]],
             loaded: Catalog | ZfsglacierError, *, full: bool, dry_run: bool,
             echo: Callable[[str], None]) -> Prepared | None:
    try:
        if isinstance(loaded, ZfsglacierError):
            raise loaded
        return prepare(cfg, held, full=full, dry_run=dry_run, echo=echo, loaded=loaded)
    except SignalReceived:
        raise
    except ZfsglacierError as exc:
        log.error("error: %s: %s (not in the tree's snapshot)", cfg.dataset, exc)
        failed.append((cfg.dataset, exc.exit_code))
        if not dry_run:
            record_run(cfg.monitoring.textfile, cfg.dataset, success=False, finished=single._now())
        return None


def _execute(p: Prepared) -> None:
    def run(on_commit: Callable[[Manifest], None]) -> Manifest:
        return execute(p, on_commit)

    recorded(p.cfg, run)


def _never_streamed(p: Prepared) -> None:
    """A dataset snapshotted with the tree and never streamed (a signal came first): its snapshot goes."""
    if p.plan.premade:
        _destroy_quietly(p.plan.snapshot)


def _snapshot_tree(top: str, short: str, fresh: set[str], dry_run: bool, echo: Callable[[str], None]) -> None:
    """One `zfs snapshot -r`: every dataset under `top` at the same instant; then the snapshots of datasets
    that are not backed up from it are destroyed again."""
    if dry_run:
        echo(f"# one atomic snapshot of the tree under {top} ({len(fresh)} dataset(s)), each then sent alone:")
        echo(proc.render(zfs.snapshot_argv(f"{top}@{short}", "DRY-RUN", recursive=True)))
        return
    with step(f"making the snapshots {top}@{short} of the tree, at once"):
        zfs.create_snapshot(f"{top}@{short}", zfs.new_pending_mark(), recursive=True)
    log.info("%s@%s: one snapshot of the %d dataset(s) of the tree, at one instant", top, short, len(fresh))
    for dataset in zfs.list_tree(top):
        if dataset not in fresh:
            _destroy_quietly(f"{dataset}@{short}")


def _destroy_quietly(snapshot: str) -> None:
    try:
        if snapshot in {s.name for s in zfs.list_snapshots(snapshot.partition("@")[0])}:
            zfs.destroy_snapshot(snapshot, why="made with the tree's snapshot, and not backed up from it")
    except ZfsglacierError as exc:
        log.warning("could not destroy %s (the next backup destroys it): %s", snapshot, exc)
