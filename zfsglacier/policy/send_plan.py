"""What the next backup sends: zfs send's stream flags and codec (raw sends of encrypted datasets,
-c), and its base: a snapshot or bookmark with a committed backup, shaped by [chain]."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from zfsglacier.codec.registry import NO_COMPRESSION, Level
from zfsglacier.config import BackupConfig, ChainPolicy
from zfsglacier.errors import UsageError
from zfsglacier.policy import chain_lock
from zfsglacier.policy.chain import next_base
from zfsglacier.policy.resume import PartialBackup
from zfsglacier.remote.catalog import Catalog
from zfsglacier.remote.manifest import build_chain, chain_is_complete
from zfsglacier.remote.object_lock import Lock
from zfsglacier.zfs import capabilities
from zfsglacier.zfs.capabilities import ZfsTools
from zfsglacier.zfs.cmd import Bookmark, Snapshot

log = logging.getLogger(__name__)
NO_POLICY = ChainPolicy()


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
        base_manifest, kind = next_base(policy, catalog.manifests, manifest, now or datetime.now(UTC))
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


Base = Snapshot | Bookmark | None


def lock_for(cfg: BackupConfig, catalog: Catalog, base: Base, why: str, now: datetime) -> tuple[Base, str, Lock | None]:
    """With [rclone] object_lock: the lock of the next backup, and a new full instead of an incremental
    whose chain's lock would end before the incremental may (policy/chain_lock.py). Else no lock."""
    mode = cfg.object_lock
    if mode is None:
        return base, why, None
    if base is not None:
        chain = build_chain(catalog.manifests, next(m for m in catalog.manifests if m.guid == base.guid).snapshot)
        ended = chain_lock.why_new_chain(cfg, mode, chain, now)
        lock = chain_lock.chain_lock(chain)
        if ended is None and lock is not None:
            return base, why, lock
        base, why = None, ended or why
    return None, why, chain_lock.for_full(cfg, mode, now)


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


@dataclass(frozen=True)
class Plan:
    snapshot: str  # full name of the snapshot to create
    base: Snapshot | Bookmark | None
    object_name: str
    why: str  # why full or incremental
    send_flags: tuple[str, ...] = ()  # stream flags zfs send gets (stream_options)
    compressor: str = "zstd"
    level: Level = 3
    resumed: PartialBackup | None = None  # the interrupted backup of `snapshot` this run completes
    lock: Lock | None = None  # the S3 Object Lock of its objects ([rclone] object_lock)
    premade: bool = False  # the snapshot was made already, with those of its tree (one atomic zfs snapshot)

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
