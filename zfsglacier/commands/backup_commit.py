"""A backup's stream and its commit: the protocol that leaves nothing half-committed.

The snapshot is made (unless a resumed backup or a tree's one snapshot made it already), `zfs send` is
compressed and uploaded, the stored size of every object is checked against what was sent (and, with
Object Lock, its lock read back), and only then is the manifest uploaded: the commit. On any failure
or signal before that, the snapshot this run made is destroyed and what it uploaded deleted
(backup_cleanup.py), or, for a stream of several volumes, kept for the next run to resume.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from datetime import datetime

from zfsglacier import __version__
from zfsglacier.codec.registry import Codec, get_codec
from zfsglacier.commands import backup_cleanup
from zfsglacier.commands.backup_volumes import BackupVolumes
from zfsglacier.config import BackupConfig
from zfsglacier.errors import RemoteError
from zfsglacier.policy import properties
from zfsglacier.policy.send_plan import Plan
from zfsglacier.remote import object_lock
from zfsglacier.remote.catalog import Catalog
from zfsglacier.remote.manifest import Manifest, Volume, manifest_name, partial_name
from zfsglacier.remote.rclone import Rclone
from zfsglacier.signals import step
from zfsglacier.stream.pipeline import StreamStats, send_to_remote
from zfsglacier.stream.progress import Progress, summary_line
from zfsglacier.stream.volumes import RegeneratedDiffers
from zfsglacier.units import human_bytes
from zfsglacier.zfs import capabilities, estimate
from zfsglacier.zfs import cmd as zfs

log = logging.getLogger(__name__)


def stream_and_commit(cfg: BackupConfig, rclone: Rclone, catalog: Catalog, plan: Plan, send_argv: list[str],
                      now: Callable[[], datetime]) -> Manifest:
    """Snapshot (unless made already), stream, check what the remote holds, then upload the manifest: the
    commit. On any failure or signal: undone, or kept for resume (module docstring)."""
    codec = get_codec(plan.compressor)
    object_path = catalog.path(plan.object_name)
    manifest_object = manifest_name(plan.short_name)
    manifest_tried = False
    progress: Progress | None = None
    volumes: BackupVolumes | None = None
    try:
        # Inside the try: a signal that stops `zfs snapshot`, or comes just after it, still gets the
        # snapshot destroyed (the kernel, or zfs-fuse's daemon, finishes the work of a killed `zfs`).
        if plan.resumed is None and not plan.premade:
            with step(f"making the snapshot {plan.snapshot}"):
                zfs.create_snapshot(plan.snapshot, zfs.new_pending_mark())
        own_properties = properties.recorded(zfs.local_properties(cfg.dataset))
        expected = estimate.stream_bytes(plan.snapshot, plan.base_name, plan.send_flags, capabilities.zfs_tools())
        if expected is not None:
            log.info("%s: the stream will be about %s", plan.snapshot, human_bytes(expected))
        progress = Progress(f"backup {plan.snapshot}", expected)
        volumes = BackupVolumes(cfg, rclone, catalog, plan, expected if expected is not None else
                           estimate.referenced(plan.snapshot))
        log.info("%s: %s", plan.snapshot, volumes.sizing.describe())
        with step(f"sending {plan.snapshot} ({plan.kind}) to {object_path}"):
            stats = _send(cfg, rclone, catalog, plan, send_argv, volumes, codec, progress)
            _check_stored(rclone, catalog, stats)
            lock = object_lock.uploaded_lock(rclone, catalog.directory, [v.object for v in stats.volumes],
                                             plan.lock) if plan.lock else None
        snapshot = next(s for s in zfs.list_snapshots(cfg.dataset) if s.name == plan.snapshot)
        committed = Manifest(
            dataset=cfg.dataset,
            snapshot=snapshot.short_name,
            guid=snapshot.guid,
            createtxg=snapshot.createtxg,
            kind=plan.kind,
            base=plan.base.short_name if plan.base else None,
            base_guid=plan.base.guid if plan.base else None,
            compressor=codec.name,
            level=plan.level,
            raw_bytes=stats.raw_bytes,
            stored_bytes=stats.stored_bytes,
            sha256=stats.sha256,
            object=plan.object_name,
            created=now().isoformat(timespec="seconds"),
            host=socket.gethostname(),
            tool_version=__version__,
            send_flags=plan.send_flags,
            volumes=stats.volumes if len(stats.volumes) > 1 else (),
            storage_class=volumes.storage_class,
            lock_mode=lock.mode if lock else None,
            lock_until=lock.until_text if lock else None,
            properties=own_properties,
        )
        manifest_tried = True
        with step(f"committing {plan.snapshot}: writing {catalog.path(manifest_object)}"):
            rclone.write(catalog.path(manifest_object), committed.to_json(), lock=plan.lock)
        if lock is not None:
            log.info("%s: its objects are locked (%s) until %s", plan.snapshot, lock.mode, lock.until_text)
    except BaseException as exc:
        if progress is not None:
            progress.close()
        # A manifest upload that failed may still have landed: remove it first, then the data.
        tried = [manifest_object] if manifest_tried else []
        if volumes is not None and volumes.recorded:
            backup_cleanup.keep_for_resume(plan, rclone, catalog, volumes, tried, exc)
        else:
            backup_cleanup.undo(plan, rclone, catalog, [*tried, partial_name(plan.short_name)], exc)
        raise
    progress.close()
    if volumes.recorded or plan.resumed:
        backup_cleanup.delete_quietly(rclone, catalog, volumes.record)
    parts = f" (+{len(stats.volumes) - 1} more volume(s))" if len(stats.volumes) > 1 else ""
    log.info("backed up %s: %s, %s -> %s%s", plan.snapshot, plan.kind,
             summary_line(stats.raw_bytes, stats.stored_bytes, stats.seconds), object_path, parts)
    return committed


def _send(cfg: BackupConfig, rclone: Rclone, catalog: Catalog, plan: Plan, send_argv: list[str],
          volumes: BackupVolumes, codec: Codec, progress: Progress) -> StreamStats:
    """The stream, uploaded; a resumed one compares the stored volumes first, and starts over when the
    stream sent again is not the same."""
    def send(stored: tuple[Volume, ...]) -> StreamStats:
        return send_to_remote(send_argv, volumes.target(stored), codec, plan.level, cfg.threads, progress.update,
                              rclone.stall_timeout, rclone.redact)

    if not volumes.recorded:
        return send(())
    try:
        return send(tuple(volumes.recorded))
    except RegeneratedDiffers as differs:
        log.warning("%s: %s: the stream sent again is not byte-identical, so %s is sent again from the start",
                    plan.snapshot, differs, plan.snapshot)
        for name in volumes.forget():
            rclone.delete(catalog.path(name))
        progress.restart()
        return send(())


def _check_stored(rclone: Rclone, catalog: Catalog, stats: StreamStats) -> None:
    listed = {o.name: o.size for o in rclone.list_dir(catalog.directory)}
    for volume in stats.volumes:
        if listed.get(volume.object) != volume.stored_bytes:
            raise RemoteError("rclone rcat", f"{catalog.path(volume.object)} holds {listed.get(volume.object)} "
                                             f"bytes after upload, {volume.stored_bytes} were sent")


