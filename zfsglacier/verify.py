"""`zfsglacier verify`: download stored backups and check them against their manifests.

Each object's size, sha256 and decompressed size must match its manifest. Every manifest object is read
itself (restore may use the index's copy instead) and must pass its self-check and equal its copy in
the index; a committed manifest that is missing while its data is not fails too. With --deep, the chain is
also received into a throwaway dataset beside the configured one (and destroyed after), since only a
`zfs receive` proves a stream. One line per backup; any failure makes the exit code non-zero.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from . import delegation, zfs
from .catalog import Catalog, load_catalog
from .codecs import get_codec
from .config import BackupConfig
from .errors import EXIT_INTEGRITY, EXIT_OK, ZfsglacierError
from .lock import DatasetLock
from .manifest import Manifest
from .pipeline import Expected, check_remote_object
from .progress import Progress, human_bytes
from .rclone import Rclone, rclone_for
from .restore import check_objects, download_parts, receive_backup, resolve_chain

log = logging.getLogger(__name__)
SCRATCH_PREFIX = "zfsglacier-verify-"


@dataclass(frozen=True)
class Outcome:
    manifest: Manifest
    error: ZfsglacierError | None

    def line(self) -> str:
        m = self.manifest
        if self.error is None:
            return f"OK      {m.snapshot}  {m.kind}  {human_bytes(m.stored_bytes)} stored, sha256 and sizes match"
        return f"FAILED  {m.snapshot}  {self.error}"


def to_verify(catalog: Catalog, snapshot: str | None, every: bool) -> list[Manifest]:
    """--all: every committed backup; else the chain a restore of `snapshot` (default the newest) needs,
    refused for the same reasons a restore would be (a damaged or missing manifest it may need)."""
    if every and catalog.manifests:
        return list(catalog.manifests)
    return resolve_chain(catalog, snapshot)  # with no backups at all: a ChainError that says so


def verify(cfg: BackupConfig, *, snapshot: str | None = None, every: bool = False, deep: bool = False,
           echo: Callable[[str], None] = print) -> int:
    rclone = rclone_for(cfg)
    catalog = load_catalog(cfg, rclone, read_manifests=True)
    outcomes = [_check(rclone, catalog, m) for m in to_verify(catalog, snapshot, every)]
    for outcome in outcomes:
        echo(outcome.line())
    errors = [o.error for o in outcomes if o.error is not None]
    if deep and not errors:
        chain = resolve_chain(catalog, snapshot)
        scratch = _receive_into_scratch(cfg, rclone, catalog, chain)
        echo(f"OK      chain of {len(chain)} backup(s) up to {chain[-1].snapshot} received into {scratch} "
             "(destroyed again), every snapshot's guid matches")
    for problem in catalog.damaged:
        echo(f"FAILED  {problem}")
    if errors:
        echo(f"{len(errors)} of {len(outcomes)} backup(s) failed verification")
        return errors[0].exit_code
    if catalog.unusable:  # a damaged manifest (5) or a committed one gone missing (8)
        return min(error.exit_code for error in catalog.unusable.values())
    return EXIT_INTEGRITY if catalog.damaged else EXIT_OK


def _check(rclone: Rclone, catalog: Catalog, manifest: Manifest) -> Outcome:
    path = catalog.path(manifest.object)
    progress = Progress(f"verify {manifest.snapshot}", manifest.raw_bytes)
    try:
        check_objects([manifest], catalog)
        check_remote_object(download_parts(rclone, catalog, manifest), get_codec(manifest.compressor),
                            Expected(path, manifest.stored_bytes, manifest.sha256, manifest.raw_bytes),
                            progress.update, rclone.stall_timeout,
                            rclone.redact)
    except ZfsglacierError as exc:
        log.debug("verify %s: %r", manifest.snapshot, exc)
        return Outcome(manifest, exc)
    finally:
        progress.close()
    return Outcome(manifest, None)


def _receive_into_scratch(cfg: BackupConfig, rclone: Rclone, catalog: Catalog, chain: list[Manifest]) -> str:
    pool = cfg.dataset.split("/", 1)[0]
    delegation.require(pool, lambda: delegation.RESTORE_NEEDS, "verify --deep")
    scratch = f"{pool}/{SCRATCH_PREFIX}{secrets.token_hex(4)}"
    with DatasetLock(scratch, "verify"):
        try:
            for position, manifest in enumerate(chain):
                receive_backup(rclone, catalog, manifest, scratch, force=position > 0)
        finally:
            if zfs.dataset_exists(scratch):
                zfs.destroy_dataset(scratch)
    return scratch
