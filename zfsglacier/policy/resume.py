"""Resuming a backup of several volumes that was cut off.

While such a backup runs, each volume that is complete (its `rclone rcat` exited 0) is recorded in
`<snapshot>.partial.json` beside it. When the run then fails or is stopped, its snapshot (still
marked pending) and the recorded volumes are kept. The next backup sends the same snapshot again,
from the same base with the same flags, codec and level, hashes the regenerated volumes while
discarding them, compares each with the record, and uploads only the rest. When one differs (the
stream is not byte-identical: another zfs version, a codec with other output), that snapshot is sent
again from the start, and the run says so.

`level = auto` picks levels by measured speed, so its output is never the same twice: such backups
write no record and start over. A record is not a backup: list and restore never read it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from typing import Any

from zfsglacier.codec.registry import AUTO, Level
from zfsglacier.config import BackupConfig
from zfsglacier.errors import RemoteError
from zfsglacier.remote import json_record
from zfsglacier.remote.catalog import Catalog
from zfsglacier.remote.manifest import Volume, snapshot_of_partial
from zfsglacier.remote.rclone import Rclone
from zfsglacier.zfs.cmd import Bookmark, Snapshot

log = logging.getLogger(__name__)

FORMAT = "zfsglacier-partial"
FORMAT_VERSION = 1
_HEX64 = re.compile(r"[0-9a-f]{64}")


def can_resume(level: Level, limit: int | None) -> bool:
    """Only a stream cut into volumes, compressed reproducibly, is worth recording."""
    return limit is not None and level != AUTO


@dataclass(frozen=True)
class PartialBackup:
    """What an interrupted backup stored, and how its stream was made."""

    dataset: str
    snapshot: str  # the part after '@'
    guid: str
    base: str | None  # short name of the base snapshot or bookmark
    base_guid: str | None
    send_flags: tuple[str, ...]
    compressor: str
    level: int
    max_object_size: int
    object: str  # the first volume's name
    volumes: tuple[Volume, ...]

    @property
    def kind(self) -> str:
        return "full" if self.base_guid is None else "incremental"

    @property
    def stored_bytes(self) -> int:
        return sum(v.stored_bytes for v in self.volumes)

    def to_json(self) -> bytes:
        return json_record.encode(FORMAT, FORMAT_VERSION, asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> PartialBackup:
        """ValueError when `data` is not a record this version reads."""
        doc = json_record.decode(data, FORMAT, FORMAT_VERSION, "partial-backup record")
        try:
            fields: dict[str, Any] = {name: doc[name] for name in cls.__dataclass_fields__}
            fields["send_flags"] = tuple(fields["send_flags"])
            fields["volumes"] = tuple(Volume(**v) for v in fields["volumes"])
            record = cls(**fields)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"incomplete ({exc})") from None
        if not record.volumes or not all(
                isinstance(v.object, str) and "/" not in v.object and isinstance(v.stored_bytes, int)
                and isinstance(v.sha256, str) and _HEX64.fullmatch(v.sha256) for v in record.volumes):
            raise ValueError("its volumes are not a list of {object, stored_bytes, sha256}")
        return record


def find(cfg: BackupConfig, rclone: Rclone, catalog: Catalog, local: list[Snapshot]) -> PartialBackup | None:
    """The interrupted backup to resume: a record whose snapshot is still here, pending, with the same guid,
    and whose volumes are on the remote with their recorded sizes. Other records are leftovers."""
    pending = {s.short_name: s for s in local if s.pending}
    found: list[tuple[int, PartialBackup]] = []
    for name in sorted(catalog.objects):
        short = snapshot_of_partial(name)
        if short is None or short not in pending:
            continue
        try:
            record = PartialBackup.from_json(rclone.read(catalog.path(name)))
        except (ValueError, RemoteError) as exc:
            log.warning("%s: %s (that interrupted backup is not resumed)", catalog.path(name), exc)
            continue
        snapshot = pending[short]
        if (record.dataset, record.snapshot, record.guid) != (cfg.dataset, short, snapshot.guid):
            log.warning("%s: describes another snapshot (not resumed)", catalog.path(name))
            continue
        missing = [v.object for v in record.volumes
                   if (o := catalog.objects.get(v.object)) is None or o.size != v.stored_bytes]
        if missing:
            log.warning("%s: its volume %s is missing or has another size (not resumed)",
                        catalog.path(name), catalog.path(missing[0]))
            continue
        found.append((snapshot.createtxg, record))
    return max(found, key=lambda pair: pair[0])[1] if found else None


def why_not(record: PartialBackup, *, full: bool, send_flags: tuple[str, ...], compressor: str, level: Level,
            limit: int | None, base: Snapshot | Bookmark | None) -> str | None:
    """Why the recorded backup cannot be resumed by this run (None: it can)."""
    if full and record.kind == "incremental":
        return "--full given"
    if (record.send_flags, record.compressor, record.level) != (send_flags, compressor, level):
        return "the compressor, level or send flags changed since"
    if record.max_object_size != limit:
        return "[rclone] max_object_size changed since"
    if record.base_guid is not None and base is None:
        return f"its base {record.base} (guid {record.base_guid}) is gone"
    return None


def base_of(record: PartialBackup, local: list[Snapshot], bookmarks: list[Bookmark]) -> Snapshot | Bookmark | None:
    """The local snapshot (or else bookmark) the recorded stream was sent from."""
    if record.base_guid is None:
        return None
    return (next((s for s in local if s.guid == record.base_guid), None)
            or next((b for b in bookmarks if b.guid == record.base_guid), None))
