"""Object names on the remote, the manifest format, and chains of backups.

Layout under `<remote>:<bucket>/<dataset>/`:
    <snapshot>.full.zfs.zst        a full stream, compressed (.gz for gzip/pigz)
    <snapshot>.incr.zfs.zst        an incremental stream from the manifest's base snapshot
    <snapshot>.full.zfs.zst.0002   the stream's second volume, when it is longer than
                                   [rclone] max_object_size (then .0003, ...)
    <snapshot>.manifest.json       the commit: written last, only after the data object is complete
    <snapshot>.partial.json        the volumes an interrupted backup stored (see policy/resume.py): not a backup
    zfsglacier.index.json          a copy of every committed manifest, rewritten after each commit
A data object without its manifest is not a backup.

A backup of several volumes has a version 3 manifest: `volumes` lists each object with its size and
sha256, while `object` names the first, and `stored_bytes` and `sha256` cover the whole stream (the
volumes concatenated). A backup of one object keeps the version 2 form.

A manifest carries its own checksum (format version 2): `manifest_sha256`, the sha256 of its other
keys as canonical JSON, so a flipped byte that still parses (a digit of a size or of `sha256`) is
reported as a damaged manifest, not as a damaged data object. Version 1 manifests, without it, are
still read.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from zfsglacier.codec.registry import CODECS
from zfsglacier.errors import ChainError, IntegrityError

FORMAT = "zfsglacier-manifest"
FORMAT_VERSION = 2
VOLUMES_VERSION = 3  # the first version with `volumes`; written only by backups of several
READABLE_VERSIONS = (1, 2, 3)
SELF_CHECK = "manifest_sha256"
MANIFEST_SUFFIX = ".manifest.json"
PARTIAL_SUFFIX = ".partial.json"
KINDS = {"full": "full", "incremental": "incr"}
_DATA_NAME = re.compile(r"(?P<snapshot>.+)\.(?P<kind>full|incr)\.zfs(?P<suffix>\.[a-z]+[a-z0-9]*)?(\.\d{4,})?")


def data_object_name(snapshot: str, kind: str, suffix: str) -> str:
    return f"{snapshot}.{KINDS[kind]}.zfs{suffix}"


def volume_name(first: str, number: int) -> str:
    """Volume 1 is the data object's own name; volume 2 of `x.full.zfs.zst` is `x.full.zfs.zst.0002`."""
    return first if number == 1 else f"{first}.{number:04d}"


@dataclass(frozen=True)
class Volume:
    object: str  # name, relative to the dataset's directory
    stored_bytes: int
    sha256: str


def manifest_name(snapshot: str) -> str:
    return f"{snapshot}{MANIFEST_SUFFIX}"


def snapshot_of_data_object(name: str) -> str | None:
    match = _DATA_NAME.fullmatch(name)
    return match["snapshot"] if match else None


def snapshot_of_manifest(name: str) -> str | None:
    return name.removesuffix(MANIFEST_SUFFIX) if name.endswith(MANIFEST_SUFFIX) else None


def partial_name(snapshot: str) -> str:
    return f"{snapshot}{PARTIAL_SUFFIX}"


def snapshot_of_partial(name: str) -> str | None:
    return name.removesuffix(PARTIAL_SUFFIX) if name.endswith(PARTIAL_SUFFIX) else None


@dataclass(frozen=True)
class Manifest:
    dataset: str
    snapshot: str  # the part after '@'
    guid: str
    createtxg: int
    kind: str  # "full" or "incremental"
    base: str | None
    base_guid: str | None
    compressor: str
    level: int | str  # a number, or "auto"
    raw_bytes: int
    stored_bytes: int
    sha256: str
    object: str  # data object name, relative to the dataset's directory
    created: str  # ISO 8601, UTC
    host: str
    tool_version: str
    send_flags: tuple[str, ...] = ()  # zfs send's stream flags (-L, -e...); none in older manifests
    volumes: tuple[Volume, ...] = ()  # when the stream was cut into several objects, each in order
    # The S3 storage class the data objects were uploaded with ([rclone] storage_class), when one was
    # asked for: restore and verify probe the objects of a cold class even where the listing shows none.
    storage_class: str | None = None
    # The S3 Object Lock of every object of this backup ([rclone] object_lock), as the remote reported it
    # after the upload: the mode, and the earliest end (RFC 3339, UTC) of the locks of its objects.
    lock_mode: str | None = None
    lock_until: str | None = None
    # The dataset's own properties when it was backed up (`zfs get -s local,received`), by name; None in
    # manifests written before they were recorded. A restore sets them again (policy/properties.py).
    properties: tuple[tuple[str, str], ...] | None = None

    def to_json(self) -> bytes:
        fields = asdict(self)
        for optional in ("storage_class", "lock_mode", "lock_until", "properties"):
            if fields[optional] is None:
                del fields[optional]
        if self.properties is not None:
            fields["properties"] = dict(self.properties)
        if len(self.volumes) > 1:
            doc: dict[str, Any] = {"format": FORMAT, "version": VOLUMES_VERSION, **fields}
        else:
            del fields["volumes"]
            doc = {"format": FORMAT, "version": FORMAT_VERSION, **fields}
        doc[SELF_CHECK] = content_sha256(doc)
        return (json.dumps(doc, indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> Manifest:
        """Parse and check a manifest; `where` names the object in errors."""
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise IntegrityError(f"manifest {where}: not valid JSON ({exc})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise IntegrityError(f"manifest {where}: not a zfsglacier manifest")
        if doc.get("version") not in READABLE_VERSIONS:
            raise IntegrityError(
                f"manifest {where}: format version {doc.get('version')!r} is not supported by this "
                f"version of zfsglacier (supports {', '.join(map(str, READABLE_VERSIONS))})"
            )
        _check_self(doc, where)
        fields = {name: doc.get(name) for name in cls.__dataclass_fields__}
        fields["send_flags"] = doc.get("send_flags", [])
        fields["volumes"] = doc.get("volumes", []) if doc["version"] >= VOLUMES_VERSION else []
        problems = [p for p in _field_problems(fields) if p] + _volume_problems(fields)
        if problems:
            raise IntegrityError(f"manifest {where}: {'; '.join(problems)}")
        fields["send_flags"] = tuple(fields["send_flags"] or ())
        fields["volumes"] = tuple(Volume(**v) for v in fields["volumes"] or ())
        if fields["properties"] is not None:
            fields["properties"] = tuple(sorted(fields["properties"].items()))
        return cls(**fields)  # type: ignore[arg-type]  # each field's type was checked above

    @property
    def parts(self) -> tuple[Volume, ...]:
        """The stored objects of this backup, in order (one, unless the stream was cut into volumes)."""
        return self.volumes or (Volume(self.object, self.stored_bytes, self.sha256),)

    @property
    def property_map(self) -> dict[str, str]:
        """The recorded properties ({} when none were, or none are set)."""
        return dict(self.properties or ())

    @property
    def raw(self) -> bool:
        """A raw send (zfs send -w) of an encrypted dataset: restores encrypted, opens with its key."""
        return "-w" in self.send_flags

    @property
    def full_snapshot(self) -> str:
        return f"{self.dataset}@{self.snapshot}"


def content_sha256(doc: dict[str, Any]) -> str:
    """sha256 of a manifest's keys other than its self-check, as canonical JSON."""
    content = {key: value for key, value in doc.items() if key != SELF_CHECK}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _check_self(doc: dict[str, Any], where: str) -> None:
    if doc["version"] == 1:
        return  # written before manifests checked themselves
    if doc.get(SELF_CHECK) != content_sha256(doc):
        problem = "is missing" if SELF_CHECK not in doc else "does not match its content"
        raise IntegrityError(f"manifest {where}: damaged: its {SELF_CHECK} {problem}")


def _field_problems(f: dict[str, Any]) -> list[str | None]:
    def need(name: str, kind: type | tuple[type, ...]) -> str | None:
        return None if isinstance(f[name], kind) and f[name] is not True else f"{name} is missing or invalid"

    problems = [
        need("dataset", str), need("snapshot", str), need("guid", str), need("createtxg", int),
        need("compressor", str), need("raw_bytes", int), need("stored_bytes", int),
        need("sha256", str), need("object", str), need("created", str), need("host", str),
        need("tool_version", str),
    ]
    if not (isinstance(f["level"], int) and f["level"] is not True) and f["level"] != "auto":
        problems.append("level is missing or invalid")
    if f["kind"] not in KINDS:
        problems.append("kind must be 'full' or 'incremental'")
    elif f["kind"] == "incremental" and not (isinstance(f["base"], str) and isinstance(f["base_guid"], str)):
        problems.append("an incremental needs base and base_guid")
    if f["compressor"] not in CODECS:
        problems.append(f"unknown compressor {f['compressor']!r}")
    if isinstance(f["sha256"], str) and not re.fullmatch(r"[0-9a-f]{64}", f["sha256"]):
        problems.append("sha256 is not 64 hex digits")
    if f["storage_class"] is not None and not (isinstance(f["storage_class"], str)
                                               and re.fullmatch(r"[A-Z][A-Z_]*", f["storage_class"])):
        problems.append("storage_class must be an S3 storage class such as DEEP_ARCHIVE")
    if (f["lock_mode"] is None) != (f["lock_until"] is None) or (
            f["lock_mode"] is not None and (f["lock_mode"] not in ("GOVERNANCE", "COMPLIANCE")
                                            or not isinstance(f["lock_until"], str) or not _is_time(f["lock_until"]))):
        problems.append("lock_mode (GOVERNANCE or COMPLIANCE) and lock_until (a time) go together")
    props = f["properties"]
    if props is not None and not (isinstance(props, dict) and all(isinstance(k, str) and isinstance(v, str)
                                                                  for k, v in props.items())):
        problems.append("properties must map names to values")
    flags = f["send_flags"]
    if not isinstance(flags, list) or not all(isinstance(x, str) and re.fullmatch(r"-[A-Za-z]", x) for x in flags):
        problems.append("send_flags must be a list of one-letter flags such as -L")
    return problems


def _is_time(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _volume_problems(f: dict[str, Any]) -> list[str]:
    volumes = f["volumes"]
    if volumes == []:
        return []
    keys = {"object", "stored_bytes", "sha256"}
    if not isinstance(volumes, list) or len(volumes) < 2 or not all(
            isinstance(v, dict) and set(v) == keys and isinstance(v["object"], str) and "/" not in v["object"]
            and isinstance(v["stored_bytes"], int) and v["stored_bytes"] > 0
            and isinstance(v["sha256"], str) and re.fullmatch(r"[0-9a-f]{64}", v["sha256"]) for v in volumes):
        return ["volumes must be a list of at least two {object, stored_bytes, sha256}"]
    if volumes[0]["object"] != f["object"] or sum(v["stored_bytes"] for v in volumes) != f["stored_bytes"]:
        return ["volumes do not add up to object and stored_bytes"]
    return []


class ChainGap(ChainError):
    """The chain needs a backup that has no usable manifest on the remote."""

    def __init__(self, message: str, missing_snapshot: str | None) -> None:
        super().__init__(message)
        self.missing_snapshot = missing_snapshot


def build_chain(manifests: list[Manifest], snapshot: str | None = None) -> list[Manifest]:
    """The backups to restore, full first, ending at `snapshot` (the newest when None).

    Links follow guids, not names, so a renamed or recreated snapshot can never be spliced in.
    """
    if not manifests:
        raise ChainError("no committed backups on the remote for this dataset")
    by_guid = {m.guid: m for m in manifests}
    if snapshot is None:
        tip = max(manifests, key=lambda m: (m.createtxg, m.created))
    else:
        wanted = snapshot.partition("@")[2] if "@" in snapshot else snapshot
        matches = [m for m in manifests if m.snapshot == wanted]
        if not matches:
            raise ChainError(f"snapshot {wanted!r} has no committed backup on the remote")
        tip = matches[0]
    chain = [tip]
    seen = {tip.guid}
    while chain[-1].kind == "incremental":
        current = chain[-1]
        base = by_guid.get(current.base_guid or "")
        if base is None:
            raise ChainGap(
                f"chain broken: {current.snapshot} is an incremental from {current.base} "
                f"(guid {current.base_guid}), which has no committed backup on the remote",
                current.base,
            )
        if base.guid in seen:
            raise IntegrityError(f"manifests form a loop at {base.snapshot}")
        seen.add(base.guid)
        chain.append(base)
    chain.reverse()
    return chain


def chain_is_complete(manifests: list[Manifest], tip: Manifest) -> bool:
    try:
        build_chain(manifests, tip.snapshot)
    except ChainError:
        return False
    return True
