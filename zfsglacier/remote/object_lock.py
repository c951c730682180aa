"""S3 Object Lock as the remote takes and reports it: the lock an object is uploaded with, the probe that
shows a bucket applies it (before a backup makes its snapshot), and the check that the objects of a
backup carry it once uploaded. How long a lock lasts is policy/chain_lock.py's business.

Nothing here trusts a provider's word: a bucket is probed with a real locked object, and each backup's
objects are read back (rclone's metadata object-lock-mode and object-lock-retain-until-date), since a
provider that does not implement Object Lock may store the object and drop its lock.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from zfsglacier import proc
from zfsglacier.errors import ConfigError, RemoteError, UsageError

if TYPE_CHECKING:
    from zfsglacier.config import BackupConfig
    from zfsglacier.remote.rclone import Rclone

log = logging.getLogger(__name__)

# The probe: a few bytes, locked for a day (long enough that no clock skew makes its date the past).
PROBE_NAME = ".zfsglacier-lock-probe"
PROBE_LOCK = timedelta(days=1)
_PROBE_TEXT = b"zfsglacier: does this bucket lock objects? (written by each backup run with [rclone] object_lock)\n"
_probed: set[tuple[str, str, str]] = set()  # (rclone config, bucket folder, mode) shown to lock, this run
_probing = threading.Lock()  # datasets backed up side by side probe their shared bucket once


@dataclass(frozen=True)
class Lock:
    mode: str  # GOVERNANCE or COMPLIANCE
    until: datetime  # aware, UTC, whole seconds

    @property
    def until_text(self) -> str:
        """RFC 3339 in UTC, as S3 and rclone's --s3-object-lock-retain-until-date take it."""
        return stamp(self.until)


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_until(text: str | None) -> datetime | None:
    """A manifest's `lock_until`, or what the remote says of an object; None when absent or unreadable."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _key(cfg: BackupConfig) -> str:
    return f"[rclone] object_lock = {(cfg.object_lock or '').lower()}"


def require_lockable(cfg: BackupConfig, mode: str, rclone: Rclone, now: datetime) -> None:
    """Refuse, naming the key, a remote whose bucket cannot lock the backups' objects in `mode` ([rclone]
    object_lock): not S3, or a bucket without versioning or Object Lock, or a provider that stores a locked
    object without its lock."""
    kind = rclone.storing_type(cfg.remote)
    if kind is not None and kind != "s3":
        raise ConfigError(f"{_key(cfg)}: the remote {cfg.remote}: stores on a remote of type {kind}, and Object "
                          "Lock is a feature of S3 (AWS, Wasabi, Backblaze B2's S3 API, MinIO, Ceph RGW): back up to "
                          "an S3 remote, or leave object_lock out")
    folder = f"{cfg.remote}:{cfg.bucket_name.strip('/')}"
    seen = (str(rclone.config_path), folder, mode)
    with _probing:
        if seen not in _probed:
            _probe(cfg, mode, rclone, now, folder, seen)


def _probe(cfg: BackupConfig, mode: str, rclone: Rclone, now: datetime, folder: str,
           seen: tuple[str, str, str]) -> None:
    lock = Lock(mode, (now + PROBE_LOCK).astimezone(UTC).replace(microsecond=0))
    path = f"{folder}/{PROBE_NAME}"
    try:
        rclone.write(path, _PROBE_TEXT, why="a locked test object: does the bucket apply Object Lock?", lock=lock)
    except RemoteError as exc:
        raise ConfigError(f"{_key(cfg)}: {_refusal(cfg, rclone, exc)}") from None
    if proc.dry_running():
        return
    state = rclone.locks_of(folder, [PROBE_NAME]).get(PROBE_NAME)
    if state is None or state.mode != lock.mode or parse_until(state.until) is None:
        said = f"mode {state.mode}, until {state.until}" if state else "nothing"
        raise ConfigError(f"{_key(cfg)}: the remote stored a test object, {path}, locked in {lock.mode} mode, but "
                          f"reports {said} of its lock: this provider (or the rclone remote's provider setting) "
                          "does not apply S3 Object Lock, so the backups could not be locked")
    _probed.add(seen)


def _refusal(cfg: BackupConfig, rclone: Rclone, exc: RemoteError) -> str:
    bucket = cfg.bucket_name.strip("/").partition("/")[0]
    target, _ = rclone.backend_path(f"{cfg.remote}:{bucket}")
    status = rclone.versioning(target)
    if status != "Enabled":
        return (f"the bucket {bucket} refused a locked object; its versioning is {status or 'unknown'}, and Object "
                "Lock needs a bucket made with it (which turns versioning on): make one (`rclone mkdir "
                f"--s3-bucket-object-lock-enabled {cfg.remote}:NEWBUCKET`, or the provider's console) and point "
                f"[rclone] bucket_name at it; rclone said: {exc.detail}: {exc.stderr_tail}")
    return (f"the bucket {bucket} has versioning but refused a locked object (has it no Object Lock configuration, or "
            f"may this credential not set a retention, s3:PutObjectRetention?); rclone said: {exc.detail}: "
            f"{exc.stderr_tail}")


def check_as_of(rclone: Rclone, remote: str, as_of: str) -> None:
    """--as-of reads earlier versions of S3 objects (rclone --s3-version-at), which any other remote would
    silently ignore, showing what is there now."""
    kind = rclone.storing_type(remote)
    if kind is not None and kind != "s3":
        raise UsageError(f"--as-of {as_of}: reads the earlier versions of objects in a versioned S3 bucket, and the "
                         f"remote {remote}: stores on a remote of type {kind}, which keeps no versions")
    log.info("reading %s: as it was at %s (its objects' versions of then)", remote, as_of)


def uploaded_lock(rclone: Rclone, directory: str, names: list[str], wanted: Lock) -> Lock:
    """The lock the uploaded objects `names` carry, as the remote reports it: `wanted`'s mode, until the
    earliest of their ends. A RemoteError when one of them is not locked as asked."""
    if proc.dry_running():
        return wanted
    states = rclone.locks_of(directory, names)
    ends = []
    for name in names:
        state = states.get(name)
        until = parse_until(state.until if state else None)
        if state is None or state.mode != wanted.mode or until is None or until < wanted.until - timedelta(seconds=1):
            said = f"mode {state.mode}, until {state.until}" if state else "is not listed"
            raise RemoteError("rclone rcat", f"{directory}/{name} was uploaded with an Object Lock in {wanted.mode} "
                                             f"mode until {wanted.until_text}, but the remote reports {said}")
        ends.append(until)
    return Lock(wanted.mode, min(ends))
