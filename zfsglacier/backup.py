"""`zfsglacier backup`: snapshot, stream to the remote, commit a manifest, prune.

The commit protocol: the data object is uploaded and its size checked, every stage has exited 0,
and only then is the manifest uploaded. On any failure or signal before that, the snapshot this run
made is destroyed and its partial object deleted, so nothing that looks like a backup is left.
"""

from __future__ import annotations

import logging
import re
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from . import __version__, capabilities, estimate, index, leftovers, names, proc, zfs
from .cadence import ChainPolicy, next_base
from .capabilities import ZfsTools
from .catalog import Catalog, load_catalog, write_index
from .codecs import NO_COMPRESSION, Level, get_codec
from .config import BackupConfig
from .errors import RemoteError, UsageError, ZfsError, ZfsglacierError
from .lock import DatasetLock
from .manifest import Manifest, chain_is_complete, data_object_name, manifest_name
from .pipeline import send_to_remote
from .progress import Progress, human_bytes
from .prune import prune_after_backup
from .rclone import Rclone, rclone_for
from .uploads import UploadSizing, size_upload
from .zfs import Bookmark, Snapshot

log = logging.getLogger(__name__)
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
HOLD_TAG = "zfsglacier"  # on the base of the next incremental
NO_POLICY = ChainPolicy()
_TIMESTAMP = r"\d{8}T\d{6}Z(-\d+)?"
# The timestamp and room for a collision counter ("-99").
_SUFFIX_ROOM = len("20261126T031500Z-99")


def _now() -> datetime:
    """The clock snapshot names and manifests are stamped with (a seam for tests)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class StreamOptions:
    """How the stream is made and stored: zfs send's flags, and the codec."""

    send_flags: tuple[str, ...]
    compressor: str
    level: Level
    note: str | None = None  # said in the log when the configured compressor is not used


def stream_options(cfg: BackupConfig, tools: ZfsTools, encrypted: bool) -> StreamOptions:
    """-L -e where zfs has them; -w for an encrypted dataset unless [zfs] send_raw = no: the data leaves
    the host encrypted, no key is needed, and since encrypted blocks do not compress it is stored as
    sent. -c ([zfs] send_compressed) sends blocks as compressed on disk."""
    flags = capabilities.send_options(tools)
    if encrypted and cfg.send_raw:
        if not tools.raw_send:
            raise UsageError(f"{cfg.dataset} is encrypted and this zfs has no raw send (zfs send -w): "
                             "set [zfs] send_raw = no to send it decrypted (its key must be loaded)")
        return StreamOptions((*flags, "-w"), NO_COMPRESSION, 0,
                             f"{cfg.dataset} is encrypted: raw send (zfs send -w), stored as sent, not compressed "
                             "(encrypted data does not compress)")
    if cfg.send_compressed:
        if not tools.compressed_send:
            raise UsageError("[zfs] send_compressed = yes: this zfs has no compressed send (zfs send -c)")
        flags.append("-c")
    return StreamOptions(tuple(flags), cfg.compressor, cfg.level)


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


def choose_base(catalog: Catalog, local: list[Snapshot], bookmarks: Sequence[Bookmark] = (),
                raw: bool = False, policy: ChainPolicy = NO_POLICY,
                now: datetime | None = None) -> tuple[Snapshot | Bookmark | None, str]:
    """The newest local snapshot, or else bookmark, whose backup is committed (same guid), restorable
    from a full, and sent the same way (raw or not: a raw chain takes only raw incrementals); then
    [chain] decides: that one, the chain's full (differential), or a new full (full_every).
    Snapshots without a committed backup (made by hand, even in our name form) are never a base."""
    committed = {m.guid: m for m in catalog.manifests}
    snapshot_guids = {s.guid for s in local}
    candidates: list[Snapshot | Bookmark] = [*local, *(b for b in bookmarks if b.guid not in snapshot_guids)]
    for candidate in sorted(candidates, key=lambda c: c.createtxg, reverse=True):
        manifest = committed.get(candidate.guid)
        if manifest is None:
            continue
        if manifest.raw != raw:
            log.warning("not basing on %s: it was sent %s, this backup is sent %s ([zfs] send_raw)",
                        candidate.name, _sent(manifest.raw), _sent(raw))
            continue
        if not chain_is_complete(catalog.manifests, manifest):
            log.warning("not basing on %s: its chain on the remote has a gap", candidate.name)
            continue
        base_manifest, kind = next_base(policy, catalog.manifests, manifest, now or _now())
        if base_manifest is None:
            return None, kind
        if base_manifest.guid != candidate.guid:  # differential: the chain's full
            found = next((c for c in candidates if c.guid == base_manifest.guid), None)
            if found is None:
                return None, (f"full: differential backups are based on the chain's full {base_manifest.snapshot}, "
                              "which no longer exists locally (nor a bookmark of it)")
            candidate = found
        source = candidate.short_name if isinstance(candidate, Snapshot) else \
            f"bookmark {candidate.name} (the snapshot is gone)"
        return candidate, f"{kind} from {source}{_newest_gone_note(catalog, candidates, candidate)}"
    return None, _why_full(catalog, local, raw)


def _sent(raw: bool) -> str:
    return "raw (zfs send -w)" if raw else "decrypted"


def _newest_gone_note(catalog: Catalog, candidates: list[Snapshot | Bookmark], base: Snapshot | Bookmark) -> str:
    newest = catalog.manifests[-1]
    if newest.guid == base.guid or newest.guid in {c.guid for c in candidates}:
        return ""
    return f" ({newest.snapshot}, the newest backed-up snapshot, no longer exists locally)"


def _why_full(catalog: Catalog, local: list[Snapshot], raw: bool = False) -> str:
    if not catalog.manifests:
        return "full: no committed backup on the remote yet"
    if catalog.manifests[-1].raw != raw:
        return (f"full: the backups so far were sent {_sent(not raw)}, this one is sent {_sent(raw)} "
                "([zfs] send_raw): a chain is all one or the other")
    newest = catalog.manifests[-1]
    same_name = next((s for s in local if s.short_name == newest.snapshot), None)
    if same_name is not None and same_name.guid != newest.guid:
        return (f"full: {same_name.name} is not the snapshot that was backed up (guid {same_name.guid}, "
                f"the backup has {newest.guid}): it was destroyed and made again")
    guids = {s.guid for s in local}
    if any(m.guid in guids for m in catalog.manifests):
        return "full: every local snapshot with a committed backup has a gap in its chain on the remote"
    return (f"full: the snapshot of the newest committed backup, {newest.snapshot}, no longer exists locally, "
            f"nor any other of the {len(catalog.manifests)} backed up")


def backup(cfg: BackupConfig, *, full: bool = False, dry_run: bool = False,
           echo: Callable[[str], None] = print) -> Manifest | None:
    check_snapshot_names_fit(cfg)
    rclone = rclone_for(cfg)
    tools = capabilities.zfs_tools()
    with DatasetLock(cfg.dataset, "backup"):
        local = zfs.list_snapshots(cfg.dataset)
        options = stream_options(cfg, tools, tools.raw_send and capabilities.dataset_is_encrypted(cfg.dataset))
        codec = get_codec(options.compressor)
        bookmarks = zfs.list_bookmarks(cfg.dataset) if _uses_bookmarks(cfg, tools) else []
        catalog = load_catalog(cfg, rclone)
        local = _remove_leftovers(cfg, rclone, catalog, local, dry_run, echo)
        leftovers.abort_unfinished_uploads(rclone, catalog, dry_run, echo)

        raw = "-w" in options.send_flags
        base, why = (None, "full: --full given") if full else choose_base(catalog, local, bookmarks, raw, cfg.chain)
        taken = {s.short_name for s in local} | {m.snapshot for m in catalog.manifests}
        short = new_snapshot_name(cfg.snapshot_prefix, _now(), taken)
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
        base_next = next_base_snapshot(cfg, manifest)
        _hold_base(zfs.list_snapshots(cfg.dataset), base_next, committed)
        if _uses_bookmarks(cfg, tools):
            _bookmark_base(cfg, base_next, committed)
        _prune(cfg, zfs.list_snapshots(cfg.dataset), committed, keep=base_next)
        if cfg.retention.active:
            prune_after_backup(cfg, rclone)
        return manifest


def next_base_snapshot(cfg: BackupConfig, committed: Manifest) -> str:
    """The snapshot the next backup is based on: the one just committed, or, in a differential chain,
    its full. It is held, bookmarked, and never pruned."""
    if cfg.chain.differential and committed.kind == "incremental" and committed.base:
        return f"{cfg.dataset}@{committed.base}"
    return committed.full_snapshot


def _uses_bookmarks(cfg: BackupConfig, tools: ZfsTools) -> bool:
    return tools.bookmarks and tools.parsable_list and \
        capabilities.pool_has_feature(cfg.dataset.partition("/")[0], "bookmarks")


def bookmark_name(snapshot: str) -> str:
    """dataset@snap -> dataset#snap"""
    dataset, _, short = snapshot.partition("@")
    return f"{dataset}#{short}"


def _bookmark_base(cfg: BackupConfig, base: str, committed_guids: set[str]) -> None:
    """Bookmark the newest committed snapshot, so that the next incremental can be sent from it even
    after the snapshot itself is destroyed (by pruning, or by another tool); the bookmarks of older
    bases are destroyed. A failure here is a warning: the backup is committed."""
    try:
        zfs.create_bookmark(base, bookmark_name(base))
        for old in zfs.list_bookmarks(cfg.dataset):
            if old.name != bookmark_name(base) and old.guid in committed_guids \
                    and is_own_snapshot(old.short_name, cfg.snapshot_prefix):
                zfs.destroy_bookmark(old.name)
    except ZfsError as exc:
        log.warning("the backup is committed, but bookmarking it (the next incremental's base if the "
                    "snapshot goes) failed: %s", exc)


# These classes bill every object as at least 128 KiB (and hold it for 30 days or more).
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
        echo(proc.render(zfs.hold_argv(HOLD_TAG, plan.snapshot)) + "  # the next incremental's base")
        if isinstance(plan.base, Snapshot):
            echo(proc.render(zfs.release_argv(HOLD_TAG, plan.base.name)))
    if _uses_bookmarks(cfg, capabilities.zfs_tools()) and not stays:
        bookmark = bookmark_name(plan.snapshot)
        echo(proc.render(zfs.bookmark_argv(plan.snapshot, bookmark)) + "  # a base that outlives the snapshot")
        for mark in bookmarks:
            if mark.guid in catalog.guids and is_own_snapshot(mark.short_name, cfg.snapshot_prefix):
                echo(proc.render(zfs.destroy_bookmark_argv(mark.name)))
    for old in _to_prune(cfg, local, catalog.guids, about_to_add=1, keep=keep):
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


def _remove_leftovers(cfg: BackupConfig, rclone: Rclone, catalog: Catalog, local: list[Snapshot],
                      dry_run: bool, echo: Callable[[str], None]) -> list[Snapshot]:
    """Remove what an earlier run that was killed left behind (we hold the dataset's lock)."""
    committed = {m.snapshot for m in catalog.manifests}
    kept: list[Snapshot] = []
    for snapshot in local:
        if not snapshot.pending:
            kept.append(snapshot)
        elif snapshot.short_name in committed:
            # Killed between the commit and clearing the mark: it is a good backup.
            kept.append(snapshot)
            if dry_run:
                echo(proc.render(zfs.clear_pending_argv(snapshot.name)))
            else:
                zfs.clear_pending(snapshot.name)
        elif dry_run:
            echo(proc.render(zfs.destroy_snapshot_argv(snapshot.name)) + "  # left by an interrupted run")
        else:
            log.warning("destroying %s: left uncommitted by an interrupted run", snapshot.name)
            zfs.destroy_snapshot(snapshot.name)
    leftovers.remove_orphans(rclone, catalog, dry_run, echo)
    return kept


def _to_prune(cfg: BackupConfig, local: list[Snapshot], committed_guids: set[str],
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


def _hold_base(local: list[Snapshot], base: str, committed_guids: set[str]) -> None:
    """The newest committed snapshot, the next incremental's base, carries the hold HOLD_TAG, so that
    another tool (sanoid, zfs-auto-snapshot, a person) cannot destroy it; the bases it replaces are
    released, so that pruning can take them. A failure here is a warning: the backup is committed."""
    if not capabilities.zfs_tools().holds:
        return
    try:
        zfs.hold(HOLD_TAG, base)
        for snapshot in local:
            if snapshot.name != base and snapshot.holds and snapshot.guid in committed_guids:
                zfs.release(HOLD_TAG, snapshot.name)
    except ZfsError as exc:
        log.warning("the backup is committed, but moving the hold %r to %s failed: %s", HOLD_TAG, base, exc)


def _prune(cfg: BackupConfig, local: list[Snapshot], committed_guids: set[str], keep: str) -> None:
    failed: list[str] = []
    for snapshot in _to_prune(cfg, local, committed_guids, keep=keep):
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
