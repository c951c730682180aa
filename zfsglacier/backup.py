"""`zfsglacier backup`: snapshot, stream to the remote, commit a manifest, prune.

The commit protocol: the data object is uploaded and its size checked, every stage has exited 0,
and only then is the manifest uploaded. On any failure or signal before that, the snapshot this run
made is destroyed and its partial object deleted, so nothing that looks like a backup is left.
"""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from . import __version__, capabilities, estimate, index, leftovers, local_snapshots, proc, send_plan, zfs
from .catalog import Catalog, load_catalog, write_index
from .codecs import Level, get_codec
from .config import BackupConfig
from .errors import RemoteError, ZfsglacierError
from .lock import DatasetLock
from .manifest import Manifest, data_object_name, manifest_name
from .pipeline import send_to_remote
from .progress import Progress, human_bytes
from .prune import prune_after_backup
from .rclone import Rclone, rclone_for
from .uploads import UploadSizing, size_upload
from .zfs import Bookmark, Snapshot

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

    @property
    def base_name(self) -> str | None:
        return self.base.name if self.base else None

    @property
    def kind(self) -> str:
        return "full" if self.base is None else "incremental"


def backup(cfg: BackupConfig, *, full: bool = False, dry_run: bool = False,
           echo: Callable[[str], None] = print) -> Manifest | None:
    local_snapshots.check_snapshot_names_fit(cfg)
    rclone = rclone_for(cfg)
    tools = capabilities.zfs_tools()
    with DatasetLock(cfg.dataset, "backup"):
        local = zfs.list_snapshots(cfg.dataset)
        encrypted = tools.raw_send and capabilities.dataset_is_encrypted(cfg.dataset)
        options = send_plan.stream_options(cfg, tools, encrypted)
        codec = get_codec(options.compressor)
        bookmarks = zfs.list_bookmarks(cfg.dataset) if local_snapshots.uses_bookmarks(cfg, tools) else []
        catalog = load_catalog(cfg, rclone)
        local = local_snapshots.remove_leftovers(cfg, rclone, catalog, local, dry_run, echo)
        leftovers.abort_unfinished_uploads(rclone, catalog, dry_run, echo)

        raw = "-w" in options.send_flags
        base, why = (None, "full: --full given") if full else \
            send_plan.choose_base(catalog, local, bookmarks, raw, cfg.chain, _now())
        taken = {s.short_name for s in local} | {m.snapshot for m in catalog.manifests}
        short = local_snapshots.new_snapshot_name(cfg.snapshot_prefix, _now(), taken)
        kind = "full" if base is None else "incremental"
        plan = Plan(f"{cfg.dataset}@{short}", base, data_object_name(short, kind, codec.suffix), why,
                    options.send_flags, options.compressor, options.level)

        send_argv = zfs.send_argv(plan.snapshot, plan.base_name, plan.send_flags)
        rcat_argv = rclone.rcat_argv(catalog.path(plan.object_name), data_storage_class(cfg.storage_class, None),
                                     _upload_sizing(cfg, None).rclone_flags())
        if dry_run:
            if options.note:
                echo(f"# {options.note}")
            _print_plan(cfg, rclone, catalog, plan, local, bookmarks,
                        [send_argv, codec.compress_argv(plan.level, cfg.threads), rcat_argv], echo)
            return None

        if options.note:
            log.info("%s", options.note)
        # A full that was not asked for costs a whole upload (and storage) more: make it stand out.
        log.log(logging.WARNING if base is None and catalog.manifests and not full else logging.INFO,
                "%s: %s", plan.snapshot, plan.why)
        manifest = _stream_and_commit(cfg, rclone, catalog, plan, send_argv)
        zfs.clear_pending(plan.snapshot)
        write_index(rclone, catalog, manifest)
        committed = catalog.guids | {manifest.guid}
        base_next = local_snapshots.next_base_snapshot(cfg, manifest)
        local_snapshots.hold_base(zfs.list_snapshots(cfg.dataset), base_next, committed)
        if local_snapshots.uses_bookmarks(cfg, tools):
            local_snapshots.bookmark_base(cfg, base_next, committed)
        local_snapshots.prune_local(cfg, zfs.list_snapshots(cfg.dataset), committed, keep=base_next)
        if cfg.retention.active:
            prune_after_backup(cfg, rclone)
        return manifest


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
    echo(proc.render(zfs.snapshot_argv(plan.snapshot, "DRY-RUN")))
    echo(proc.render_pipeline(pipeline) + "  # compression runs in-process (the command shown writes the same "
                                          "format); the part size follows the stream's estimate")
    small = "STANDARD" if cfg.storage_class else None  # manifests and the index are read on every run
    echo(proc.render(rclone.rcat_argv(catalog.path(manifest_name(plan.snapshot.partition("@")[2])), small))
         + "  < manifest.json")
    echo(proc.render(zfs.clear_pending_argv(plan.snapshot)))
    echo(proc.render(rclone.rcat_argv(catalog.path(index.INDEX_NAME), small))
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


def _stream_and_commit(cfg: BackupConfig, rclone: Rclone, catalog: Catalog, plan: Plan,
                       send_argv: list[str]) -> Manifest:
    codec = get_codec(plan.compressor)
    object_path = catalog.path(plan.object_name)
    manifest_object = manifest_name(plan.snapshot.partition("@")[2])
    manifest_tried = False
    progress: Progress | None = None
    try:
        # Inside the try: a signal that stops `zfs snapshot`, or comes just after it, still gets the
        # snapshot destroyed (the kernel, or zfs-fuse's daemon, finishes the work of a killed `zfs`).
        zfs.create_snapshot(plan.snapshot, f"{socket.gethostname()}:{uuid.uuid4()}")
        expected = estimate.stream_bytes(plan.snapshot, plan.base_name, plan.send_flags, capabilities.zfs_tools())
        if expected is not None:
            log.info("%s: the stream will be about %s", plan.snapshot, human_bytes(expected))
        progress = Progress(f"backup {plan.snapshot}", expected)
        sizing = _upload_sizing(cfg, expected if expected is not None else estimate.referenced(plan.snapshot))
        log.info("%s: %s", plan.snapshot, sizing.describe())
        rcat_argv = rclone.rcat_argv(object_path, data_storage_class(cfg.storage_class, expected),
                                     sizing.rclone_flags())
        stats = send_to_remote(send_argv, rcat_argv, codec, plan.level, cfg.threads, progress.update,
                               rclone.stall_timeout, rclone.redact)
        stored = {o.name: o.size for o in rclone.list_dir(catalog.directory)}.get(plan.object_name)
        if stored != stats.stored_bytes:
            raise RemoteError("rclone rcat", f"{object_path} holds {stored} bytes after upload, "
                                             f"{stats.stored_bytes} were sent")
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
        )
        manifest_tried = True
        rclone.write(catalog.path(manifest_object), committed.to_json())
    except BaseException as exc:
        if progress is not None:
            progress.close()
        # A manifest upload that failed may still have landed: remove it first, then the data.
        _undo(plan.snapshot, rclone, catalog, [manifest_object, plan.object_name] if manifest_tried else
              [plan.object_name], exc)
        raise
    progress.close()
    seconds = max(stats.seconds, 1e-9)
    ratio = stats.raw_bytes / stats.stored_bytes if stats.stored_bytes else 0.0
    log.info(
        "backed up %s (%s): %s raw, %s stored, ratio %.2f, %.1f s, %s/s -> %s",
        plan.snapshot, plan.why, human_bytes(stats.raw_bytes), human_bytes(stats.stored_bytes), ratio,
        stats.seconds, human_bytes(stats.raw_bytes / seconds), object_path,
    )
    return committed


def _undo(snapshot: str, rclone: Rclone, catalog: Catalog, names: list[str], cause: BaseException) -> None:
    """Best effort: leave nothing of a failed run. Each step is tried even if an earlier one fails."""
    log.debug("cleaning up after %r", cause)
    try:
        present = {o.name for o in rclone.list_dir(catalog.directory)}
    except ZfsglacierError:
        present = set(names)  # cannot tell: try every one
    for name in names:
        if name not in present:
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


