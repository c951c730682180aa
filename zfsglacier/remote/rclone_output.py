"""What rclone prints on stdout, parsed: listings (`lsjson`), the answers of `backend restore` (thaw
requests) and of `backend list-multipart-uploads`. Pure functions; a surprise is a RemoteError that
names the call."""

from __future__ import annotations

import json
from dataclasses import dataclass

from zfsglacier.errors import RemoteError


@dataclass(frozen=True)
class RemoteObject:
    name: str
    size: int
    tier: str | None = None  # the storage class, on remotes that have them (S3: STANDARD, DEEP_ARCHIVE...)


def parse_lsjson(output: bytes) -> list[RemoteObject]:
    try:
        entries = json.loads(output)
        return [RemoteObject(str(e["Name"]), int(e["Size"]), e.get("Tier") or None)
                for e in entries if not e.get("IsDir")]
    except (ValueError, KeyError, TypeError) as exc:
        raise RemoteError("rclone lsjson", f"unexpected output: {exc}") from None


@dataclass(frozen=True)
class ObjectLockState:
    """What the remote says of an object's S3 Object Lock (rclone's metadata object-lock-*)."""

    mode: str | None
    until: str | None  # RFC 3339


def parse_locks(output: bytes) -> dict[str, ObjectLockState]:
    """`rclone lsjson --metadata` output -> each object's lock (mode and until None where it has none)."""
    try:
        entries = json.loads(output)
        return {str(e["Name"]): ObjectLockState((e.get("Metadata") or {}).get("object-lock-mode") or None,
                                                (e.get("Metadata") or {}).get("object-lock-retain-until-date") or None)
                for e in entries if not e.get("IsDir")}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RemoteError("rclone lsjson", f"unexpected output: {exc}") from None


def parse_lsjson_tree(output: bytes) -> dict[str, list[RemoteObject]]:
    """`rclone lsjson --recursive --files-only` output -> its objects by folder ("" for the top)."""
    try:
        found: dict[str, list[RemoteObject]] = {}
        for e in json.loads(output):
            if e.get("IsDir"):
                continue
            folder = str(e["Path"]).rpartition("/")[0]
            found.setdefault(folder, []).append(RemoteObject(str(e["Name"]), int(e["Size"]), e.get("Tier") or None))
        return found
    except (ValueError, KeyError, TypeError) as exc:
        raise RemoteError("rclone lsjson", f"unexpected output: {exc}") from None


def parse_thaw_statuses(output: bytes) -> dict[str, str]:
    try:
        entries = json.loads(output)
        if not isinstance(entries, list):
            raise TypeError(f"a list of statuses expected, not {type(entries).__name__}")
        return {str(entry["Remote"]).rpartition("/")[2]: str(entry["Status"]) for entry in entries}
    except (ValueError, KeyError, TypeError) as exc:
        raise RemoteError("rclone backend restore", f"unexpected output: {exc}") from None


def parse_upload_listing(output: bytes) -> list[str]:
    """`rclone backend list-multipart-uploads` output: {bucket: [{"Key": ...}, ...]} -> the keys."""
    try:
        buckets = json.loads(output)
        return sorted(str(upload["Key"]) for uploads in buckets.values() for upload in uploads or [])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RemoteError("rclone backend", f"unexpected multipart upload listing: {exc}") from None
