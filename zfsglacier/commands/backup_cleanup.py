"""What a failed backup leaves: nothing that looks like a backup (undo), or, when some volumes of a
resumable stream were stored, those volumes, their record and the snapshot for the next run (keep_for_resume).
Best effort: each step is tried even if an earlier one failed; what cannot be removed now is removed by
the next backup (remote/leftovers.py)."""

from __future__ import annotations

import logging

from zfsglacier.commands.backup_volumes import BackupVolumes
from zfsglacier.errors import AccessDenied, ZfsglacierError
from zfsglacier.policy.send_plan import Plan
from zfsglacier.remote import leftovers
from zfsglacier.remote.catalog import Catalog
from zfsglacier.remote.manifest import snapshot_of_data_object, volume_name
from zfsglacier.remote.rclone import Rclone
from zfsglacier.units import human_bytes
from zfsglacier.zfs import cmd as zfs

log = logging.getLogger(__name__)


def _data_objects(plan: Plan, listed: set[str] | None) -> list[str]:
    """The volumes of this backup's stream on the remote, complete or not; without a listing, the first."""
    if listed is None:
        return [plan.object_name]
    short = plan.short_name
    return sorted(name for name in listed if snapshot_of_data_object(name) == short)


def _listed_names(rclone: Rclone, catalog: Catalog) -> set[str] | None:
    try:
        return {o.name for o in rclone.list_dir(catalog.directory)}
    except ZfsglacierError:
        return None  # cannot tell


def keep_for_resume(plan: Plan, rclone: Rclone, catalog: Catalog, volumes: BackupVolumes, tried: list[str],
                    cause: BaseException) -> None:
    """The run failed after some volumes were stored: keep them, the record and the snapshot (still
    marked pending) for the next run to resume; remove the rest."""
    log.debug("keeping the stored volumes after %r", cause)
    keep = {v.object for v in volumes.recorded}
    listed = _listed_names(rclone, catalog)
    unfinished = volume_name(plan.object_name, len(volumes.recorded) + 1)
    objects = _data_objects(plan, listed) if listed is not None else [unfinished]
    for name in tried + [n for n in objects if n not in keep]:
        if listed is None or name in listed:
            delete_quietly(rclone, catalog, name)
    leftovers.abort_unfinished_uploads(rclone, catalog)
    log.warning("%s: kept its %d stored volume(s) (%s) and the snapshot: the next backup resumes after them",
                plan.snapshot, len(volumes.recorded), human_bytes(sum(v.stored_bytes for v in volumes.recorded)))


def delete_quietly(rclone: Rclone, catalog: Catalog, name: str, what: str = "") -> None:
    try:
        rclone.delete(catalog.path(name))
        log.info("removed %s%s", what, catalog.path(name))
    except AccessDenied as refused:
        log.warning("%s%s stays on the remote: %s", what, catalog.path(name), leftovers.refused_delete(refused))
    except ZfsglacierError as exc:
        log.warning("could not remove %s (the next backup removes it): %s", catalog.path(name), exc)


def undo(plan: Plan, rclone: Rclone, catalog: Catalog, names: list[str], cause: BaseException) -> None:
    """Best effort: leave nothing of a failed run. Each step is tried even if an earlier one fails.
    `names`: objects to remove besides the stream's volumes (a manifest that may have landed)."""
    log.debug("cleaning up after %r", cause)
    snapshot = plan.snapshot
    listed = _listed_names(rclone, catalog)
    for name in names + _data_objects(plan, listed):
        if listed is None or name in listed:
            delete_quietly(rclone, catalog, name, "partial object ")
    leftovers.abort_unfinished_uploads(rclone, catalog)
    try:
        if snapshot in {s.name for s in zfs.list_snapshots(snapshot.partition("@")[0])}:  # made before the failure?
            zfs.destroy_snapshot(snapshot)
            log.info("destroyed snapshot %s made by this run", snapshot)
    except ZfsglacierError as exc:
        log.warning("could not destroy %s (the next backup destroys it): %s", snapshot, exc)
