"""`zfsglacier backup`: snapshot, stream to the remote, commit a manifest, prune.

The commit protocol: the data object is uploaded and its size checked, every stage has exited 0,
and only then is the manifest uploaded. On any failure or signal before that, nothing that looks like
a backup is left: the snapshot this run made is destroyed and what it uploaded is deleted, except for
a stream cut into volumes that can be resumed (policy/resume.py): then the snapshot stays, marked
pending, with its finished volumes and a partial record, so that the next run sends only the rest.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from zfsglacier import __version__, proc
from zfsglacier.background import Background
from zfsglacier.codec.registry import Codec, Level, get_codec
from zfsglacier.commands.metrics import record_run
from zfsglacier.commands.prune import prune_after_backup
from zfsglacier.config import BackupConfig
from zfsglacier.errors import LockBusyError, RemoteError, ZfsglacierError
from zfsglacier.lock import DatasetLock
from zfsglacier.policy import local_snapshots, resume, send_plan
from zfsglacier.remote import leftovers, manifest_index
from zfsglacier.remote.catalog import Catalog, load_catalog, write_index
from zfsglacier.remote.manifest import (
    Manifest,
    Volume,
    data_object_name,
    manifest_name,
    partial_name,
    snapshot_of_data_object,
    volume_name,
)
from zfsglacier.remote.rclone import Rclone, rclone_for
from zfsglacier.signals import step
from zfsglacier.stream.pipeline import StreamStats, VolumeTarget, send_to_remote
from zfsglacier.stream.progress import Progress, summary_line
from zfsglacier.stream.upload_sizing import UploadSizing, size_upload
from zfsglacier.stream.volumes import RegeneratedDiffers
from zfsglacier.units import human_bytes
from zfsglacier.zfs import capabilities, delegation, estimate
from zfsglacier.zfs import cmd as zfs
from zfsglacier.zfs.cmd import Bookmark, Snapshot

log = logging.getLogger(__name__)


def _now() -> datetime:
    """The clock snapshot names and manifests are stamped with (a seam for tests)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Plan:
    snapshot: str  # full name of the snapshot to create
    base: Snapshot | Bookmark | None
    object_name: str
    why: str  # why full or incremental
    send_flags: tuple[str, ...] = ()  # stream flags zfs send gets (stream_options)
    compressor: str = "zstd"
    level: Level = 3
    resumed: resume.PartialBackup | None = None  # the interrupted backup of `snapshot` this run completes

    @property
    def short_name(self) -> str:
        """The snapshot's name after the @, which names its objects on the remote."""
        return self.snapshot.partition("@")[2]

    @property
    def base_name(self) -> str | None:
        return self.base.name if self.base else None

    @property
    def kind(self) -> str:
        return "full" if self.base is None else "incremental"


def backup(cfg: BackupConfig, *, full: bool = False, dry_run: bool = False,
           echo: Callable[[str], None] = print) -> Manifest | None:
    """A run that is not a dry run is recorded in [monitoring] textfile when it is set (commands/metrics.py): a
    success as soon as its manifest is committed, and a failure when the run fails, before or after that
    (after it, the success's timestamp stays). Writing the file never fails the run."""
    if dry_run:
        return _backup(cfg, full=full, dry_run=True, echo=echo, on_commit=lambda manifest: None)
    started = time.monotonic()

    def record_commit(manifest: Manifest) -> None:
        record_run(cfg.monitoring.textfile, cfg.dataset, success=True, finished=_now(),
                   seconds=time.monotonic() - started, raw_bytes=manifest.raw_bytes, stored_bytes=manifest.stored_bytes)

    try:
        return _backup(cfg, full=full, dry_run=False, echo=echo, on_commit=record_commit)
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
    local_snapshots.check_snapshot_names_fit(cfg)
    rclone = rclone_for(cfg)
    delegation.require(cfg.dataset, lambda: _delegated_needs(cfg), "backup")
    tools = capabilities.zfs_tools()
    with DatasetLock(cfg.dataset, "backup"), step(f"backing up {cfg.dataset}"):
        local = zfs.list_snapshots(cfg.dataset)
        encrypted = tools.raw_send and capabilities.dataset_is_encrypted(cfg.dataset)
        options = send_plan.stream_options(cfg, tools, encrypted)
        codec = get_codec(options.compressor)
        bookmarks = zfs.list_bookmarks(cfg.dataset) if local_snapshots.uses_bookmarks(cfg, tools) else []
        catalog = load_catalog(cfg, rclone)
        raw = "-w" in options.send_flags
        partial = resume.find(cfg, rclone, catalog, local)
        if partial is not None:
            not_now = resume.why_not(partial, full=full, send_flags=options.send_flags,
                                     compressor=options.compressor, level=options.level,
                                     limit=cfg.max_object_size, base=resume.base_of(partial, local, bookmarks))
            if not_now:
                log.warning("%s@%s: the interrupted backup is not resumed (%s): its %d stored volume(s) are "
                            "removed", cfg.dataset, partial.snapshot, not_now, len(partial.volumes))
                partial = None
        local = local_snapshots.remove_leftovers(cfg, rclone, catalog, local, dry_run, echo, resuming=partial)
        leftovers.abort_unfinished_uploads(rclone, catalog, dry_run, echo)

        if partial is not None:
            plan = Plan(f"{cfg.dataset}@{partial.snapshot}", resume.base_of(partial, local, bookmarks),
                        partial.object, f"resuming the interrupted {partial.kind}: {len(partial.volumes)} "
                        f"volume(s), {human_bytes(partial.stored_bytes)}, are stored", partial.send_flags,
                        partial.compressor, partial.level, partial)
        else:
            base, why = (None, "full: --full given") if full else \
                send_plan.choose_base(catalog, local, bookmarks, raw, cfg.chain, _now())
            taken = {s.short_name for s in local} | {m.snapshot for m in catalog.manifests}
            short = local_snapshots.new_snapshot_name(cfg.snapshot_prefix, _now(), taken)
            kind = "full" if base is None else "incremental"
            plan = Plan(f"{cfg.dataset}@{short}", base, data_object_name(short, kind, codec.suffix), why,
                        options.send_flags, options.compressor, options.level)

        send_argv = zfs.send_argv(plan.snapshot, plan.base_name, plan.send_flags)
        sizing = _upload_sizing(cfg, None)
        rcat_argv = rclone.rcat_argv(catalog.path(plan.object_name), data_storage_class(cfg.storage_class, None),
                                     [*sizing.rclone_flags(), *rclone.unused_check_flags(cfg.remote, sizing.multipart)])
        if dry_run:
            if options.note:
                echo(f"# {options.note}")
            _print_plan(cfg, rclone, catalog, plan, local, bookmarks,
                        [send_argv, codec.compress_argv(plan.level, cfg.threads), rcat_argv], echo)
            return None

        if options.note:
            log.info("%s", options.note)
        # A full that was not asked for costs a whole upload (and storage) more: make it stand out.
        unasked_full = plan.base is None and catalog.manifests and not full and partial is None
        log.log(logging.WARNING if unasked_full else logging.INFO,
                "%s: %s", plan.snapshot, plan.why)
        manifest = _stream_and_commit(cfg, rclone, catalog, plan, send_argv)
        on_commit(manifest)
        with step(f"after committing {plan.snapshot}: updating the index, holds and local snapshots"):
            # The index (a cache: its failure is a warning) is written while the local snapshots are seen to.
            indexing = Background(lambda: write_index(rclone, catalog, manifest), "write: index")
            try:
                _after_commit(cfg, tools, manifest, catalog.guids | {manifest.guid})
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


MIN_SIZE_CLASSES = frozenset({"STANDARD_IA", "ONEZONE_IA", "GLACIER_IR"})
MIN_BILLED_BYTES = 128 * 1024


def _upload_sizing(cfg: BackupConfig, expected: int | None) -> UploadSizing:
    return size_upload(expected, cfg.max_upload_parts, cfg.upload_concurrency, cfg.upload_memory)


def data_storage_class(configured: str | None, expected_bytes: int | None) -> str | None:
    """[rclone] storage_class for a data object, except a stream known to be smaller than the minimum its
    class bills, which stays in the bucket's default class."""
    if configured in MIN_SIZE_CLASSES and expected_bytes is not None and expected_bytes < MIN_BILLED_BYTES:
        log.info("storing the %d-byte stream in the default storage class, not %s (which bills %d KiB at least)",
                 expected_bytes, configured, MIN_BILLED_BYTES // 1024)
        return None
    return configured


def _print_plan(cfg: BackupConfig, rclone: Rclone, catalog: Catalog, plan: Plan, local: list[Snapshot],
                bookmarks: list[Bookmark], pipeline: list[list[str]], echo: Callable[[str], None]) -> None:
    """What a run would do, as commands a person can paste."""
    echo(f"# {plan.why}")
    if plan.resumed is None:
        echo(proc.render(zfs.snapshot_argv(plan.snapshot, "DRY-RUN")))
    echo(proc.render_pipeline(pipeline) + "  # compression runs in-process (the command shown writes the same "
                                          "format); the part size follows the stream's estimate")
    small = "STANDARD" if cfg.storage_class else None  # manifests and the index are read on every run
    echo(proc.render(rclone.rcat_argv(catalog.path(manifest_name(plan.short_name)), small))
         + "  < manifest.json")
    echo(proc.render(zfs.clear_pending_argv(plan.snapshot)))
    echo(proc.render(rclone.rcat_argv(catalog.path(manifest_index.INDEX_NAME), small))
         + "  < index.json  # a copy of every manifest")
    # In a differential chain the next base stays the chain's full, which is held already.
    stays = cfg.chain.differential and isinstance(plan.base, Snapshot)
    keep = plan.base.name if stays and plan.base is not None else None
    if capabilities.zfs_tools().holds and not stays:
        echo(proc.render(zfs.hold_argv(local_snapshots.HOLD_TAG, plan.snapshot)) + "  # the next incremental's base")
        if isinstance(plan.base, Snapshot):
            echo(proc.render(zfs.release_argv(local_snapshots.HOLD_TAG, plan.base.name)))
    if local_snapshots.uses_bookmarks(cfg, capabilities.zfs_tools()) and not stays:
        bookmark = local_snapshots.bookmark_name(plan.snapshot)
        echo(proc.render(zfs.bookmark_argv(plan.snapshot, bookmark)) + "  # a base that outlives the snapshot")
        for mark in bookmarks:
            if mark.guid in catalog.guids and local_snapshots.is_own_snapshot(mark.short_name, cfg.snapshot_prefix):
                echo(proc.render(zfs.destroy_bookmark_argv(mark.name)))
    for old in local_snapshots.to_prune(cfg, local, catalog.guids, about_to_add=1, keep=keep):
        echo(proc.render(zfs.destroy_snapshot_argv(old.name)))


class _Volumes:
    """The volumes of one backup: how to upload them, and which the resume record holds."""

    def __init__(self, cfg: BackupConfig, rclone: Rclone, catalog: Catalog, plan: Plan, expected: int | None) -> None:
        self._cfg, self._rclone, self._catalog, self._plan = cfg, rclone, catalog, plan
        self.limit = cfg.max_object_size
        self.recorded: list[Volume] = list(plan.resumed.volumes) if plan.resumed else []
        self.record = partial_name(plan.short_name)
        volume_bytes = expected if self.limit is None or expected is None else min(expected, self.limit)
        self.sizing = _upload_sizing(cfg, volume_bytes)
        self.storage_class = data_storage_class(cfg.storage_class, expected)

    def target(self, stored: tuple[Volume, ...]) -> VolumeTarget:
        flags = [*self.sizing.rclone_flags(), *self._rclone.unused_check_flags(self._cfg.remote, self.sizing.multipart)]

        def rcat_argv(name: str) -> list[str]:
            return self._rclone.rcat_argv(self._catalog.path(name), self.storage_class, flags)

        resumable = resume.can_resume(self._plan.level, self.limit)
        return VolumeTarget(rcat_argv, self.name, self.limit, stored, self._write_record if resumable else None)

    def name(self, number: int) -> str:
        return volume_name(self._plan.object_name, number)

    def _write_record(self, volumes: list[Volume]) -> None:
        plan, short = self._plan, self._plan.short_name
        snapshot = next(s for s in zfs.list_snapshots(self._cfg.dataset) if s.short_name == short)
        record = resume.PartialBackup(
            self._cfg.dataset, short, snapshot.guid, plan.base.short_name if plan.base else None,
            plan.base.guid if plan.base else None, plan.send_flags, plan.compressor, int(plan.level),
            self.limit or 0, plan.object_name, tuple(volumes))
        self._rclone.write(self._catalog.path(self.record), record.to_json())
        self.recorded = list(volumes)
        log.info("%s: volume %d stored (%s in all so far)", plan.snapshot, len(volumes),
                 human_bytes(record.stored_bytes))

    def forget(self) -> list[str]:
        """The stored volumes and the record are of no use any more: their names, to delete."""
        names = [v.object for v in self.recorded] + [self.record]
        self.recorded = []
        return names


def _stream_and_commit(cfg: BackupConfig, rclone: Rclone, catalog: Catalog, plan: Plan,
                       send_argv: list[str]) -> Manifest:
    codec = get_codec(plan.compressor)
    object_path = catalog.path(plan.object_name)
    manifest_object = manifest_name(plan.short_name)
    manifest_tried = False
    progress: Progress | None = None
    volumes: _Volumes | None = None
    try:
        # Inside the try: a signal that stops `zfs snapshot`, or comes just after it, still gets the
        # snapshot destroyed (the kernel, or zfs-fuse's daemon, finishes the work of a killed `zfs`).
        if plan.resumed is None:
            with step(f"making the snapshot {plan.snapshot}"):
                zfs.create_snapshot(plan.snapshot, zfs.new_pending_mark())
        expected = estimate.stream_bytes(plan.snapshot, plan.base_name, plan.send_flags, capabilities.zfs_tools())
        if expected is not None:
            log.info("%s: the stream will be about %s", plan.snapshot, human_bytes(expected))
        progress = Progress(f"backup {plan.snapshot}", expected)
        volumes = _Volumes(cfg, rclone, catalog, plan, expected if expected is not None else
                           estimate.referenced(plan.snapshot))
        log.info("%s: %s", plan.snapshot, volumes.sizing.describe())
        with step(f"sending {plan.snapshot} ({plan.kind}) to {object_path}"):
            stats = _send(cfg, rclone, catalog, plan, send_argv, volumes, codec, progress)
            _check_stored(rclone, catalog, stats)
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
            created=_now().isoformat(timespec="seconds"),
            host=socket.gethostname(),
            tool_version=__version__,
            send_flags=plan.send_flags,
            volumes=stats.volumes if len(stats.volumes) > 1 else (),
            storage_class=volumes.storage_class,
        )
        manifest_tried = True
        with step(f"committing {plan.snapshot}: writing {catalog.path(manifest_object)}"):
            rclone.write(catalog.path(manifest_object), committed.to_json())
    except BaseException as exc:
        if progress is not None:
            progress.close()
        # A manifest upload that failed may still have landed: remove it first, then the data.
        tried = [manifest_object] if manifest_tried else []
        if volumes is not None and volumes.recorded:
            _keep_for_resume(plan, rclone, catalog, volumes, tried, exc)
        else:
            _undo(plan, rclone, catalog, [*tried, partial_name(plan.short_name)], exc)
        raise
    progress.close()
    if volumes.recorded or plan.resumed:
        _delete_quietly(rclone, catalog, volumes.record)
    parts = f" (+{len(stats.volumes) - 1} more volume(s))" if len(stats.volumes) > 1 else ""
    log.info("backed up %s: %s, %s -> %s%s", plan.snapshot, plan.kind,
             summary_line(stats.raw_bytes, stats.stored_bytes, stats.seconds), object_path, parts)
    return committed


def _send(cfg: BackupConfig, rclone: Rclone, catalog: Catalog, plan: Plan, send_argv: list[str],
          volumes: _Volumes, codec: Codec, progress: Progress) -> StreamStats:
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


def _data_objects(plan: Plan, listed: set[str] | None) -> list[str]:
    """The volumes of this backup's stream on the remote, complete or not; without a listing, the first."""
    if listed is None:
        return [plan.object_name]
    short = plan.short_name
    return sorted(name for name in listed if snapshot_of_data_object(name) == short)


def _listed(rclone: Rclone, catalog: Catalog) -> set[str] | None:
    try:
        return {o.name for o in rclone.list_dir(catalog.directory)}
    except ZfsglacierError:
        return None  # cannot tell


def _keep_for_resume(plan: Plan, rclone: Rclone, catalog: Catalog, volumes: _Volumes, tried: list[str],
                     cause: BaseException) -> None:
    """The run failed after some volumes were stored: keep them, the record and the snapshot (still
    marked pending) for the next run to resume; remove the rest."""
    log.debug("keeping the stored volumes after %r", cause)
    keep = {v.object for v in volumes.recorded}
    listed = _listed(rclone, catalog)
    unfinished = volume_name(plan.object_name, len(volumes.recorded) + 1)
    objects = _data_objects(plan, listed) if listed is not None else [unfinished]
    for name in tried + [n for n in objects if n not in keep]:
        if listed is None or name in listed:
            _delete_quietly(rclone, catalog, name)
    leftovers.abort_unfinished_uploads(rclone, catalog, dry_run=False, echo=print)
    log.warning("%s: kept its %d stored volume(s) (%s) and the snapshot: the next backup resumes after them",
                plan.snapshot, len(volumes.recorded), human_bytes(sum(v.stored_bytes for v in volumes.recorded)))


def _delete_quietly(rclone: Rclone, catalog: Catalog, name: str) -> None:
    try:
        rclone.delete(catalog.path(name))
        log.info("removed %s", catalog.path(name))
    except ZfsglacierError as exc:
        log.warning("could not remove %s (the next backup removes it): %s", catalog.path(name), exc)


def _undo(plan: Plan, rclone: Rclone, catalog: Catalog, names: list[str], cause: BaseException) -> None:
    """Best effort: leave nothing of a failed run. Each step is tried even if an earlier one fails.
    `names`: objects to remove besides the stream's volumes (a manifest that may have landed)."""
    log.debug("cleaning up after %r", cause)
    snapshot = plan.snapshot
    listed = _listed(rclone, catalog)
    for name in names + _data_objects(plan, listed):
        if listed is not None and name not in listed:
            continue
        try:
            rclone.delete(catalog.path(name))
            log.info("removed partial object %s", catalog.path(name))
        except ZfsglacierError as exc:
            log.warning("could not remove %s (the next backup removes it): %s", catalog.path(name), exc)
    leftovers.abort_unfinished_uploads(rclone, catalog, dry_run=False, echo=print)
    try:
        if snapshot in {s.name for s in zfs.list_snapshots(snapshot.partition("@")[0])}:  # made before the failure?
            zfs.destroy_snapshot(snapshot)
            log.info("destroyed snapshot %s made by this run", snapshot)
    except ZfsglacierError as exc:
        log.warning("could not destroy %s (the next backup destroys it): %s", snapshot, exc)


