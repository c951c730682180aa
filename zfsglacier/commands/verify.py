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

from zfsglacier.codec.registry import get_codec
from zfsglacier.commands.restore import Confirm, read_settings, receive_backup, source_of
from zfsglacier.commands.restore_plan import check_objects, resolve_chain
from zfsglacier.config import BackupConfig
from zfsglacier.errors import EXIT_INTEGRITY, EXIT_OK, ObjectFrozen, RefusedError, SignalReceived, ZfsglacierError
from zfsglacier.lock import DatasetLock
from zfsglacier.remote import object_lock, thaw
from zfsglacier.remote.catalog import Catalog, load_catalog
from zfsglacier.remote.manifest import Manifest
from zfsglacier.remote.rclone import Rclone, rclone_for
from zfsglacier.signals import step
from zfsglacier.stream.pipeline import Expected, receive_from_remote
from zfsglacier.stream.progress import Progress
from zfsglacier.stream.ranged_reads import ReadSettings
from zfsglacier.units import human_bytes
from zfsglacier.zfs import cmd as zfs
from zfsglacier.zfs import delegation

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
        if isinstance(self.error, ObjectFrozen):
            return f"FROZEN  {m.snapshot}  not verified: in an archive tier and not thawed"
        return f"FAILED  {m.snapshot}  {self.error}"


def to_verify(catalog: Catalog, snapshot: str | None, every: bool) -> list[Manifest]:
    """--all: every committed backup; else the chain a restore of `snapshot` (default the newest) needs,
    refused for the same reasons a restore would be (a damaged or missing manifest it may need)."""
    if every and catalog.manifests:
        return list(catalog.manifests)
    return resolve_chain(catalog, snapshot)  # with no backups at all: a ChainError that says so


def verify(cfg: BackupConfig, *, snapshot: str | None = None, every: bool = False, deep: bool = False,
           echo: Callable[[str], None] = print, yes: bool = False, confirm: Confirm = lambda _: None,
           thaw_options: thaw.ThawOptions = thaw.NO_WAIT, streams: int | None = None, as_of: str | None = None) -> int:
    """`as_of`: verify the backups as the remote held them at that time (RFC 3339, UTC; versioned S3)."""
    with step(f"verifying {cfg.dataset}"):
        rclone = rclone_for(cfg, as_of)
        if as_of is not None:
            object_lock.check_as_of(rclone, cfg.remote, as_of)
        return _verify(cfg, rclone, snapshot, every, deep, echo, yes, confirm, thaw_options, streams)


def _verify(cfg: BackupConfig, rclone: Rclone, snapshot: str | None, every: bool, deep: bool,
            echo: Callable[[str], None], yes: bool, confirm: Confirm, thaw_options: thaw.ThawOptions,
            streams: int | None) -> int:
    reads = read_settings(cfg, rclone, streams)
    catalog = load_catalog(cfg, rclone, read_manifests=True)
    manifests = to_verify(catalog, snapshot, every)
    frozen = thaw.frozen_objects(rclone, catalog, manifests)
    if frozen:
        _thaw(rclone, catalog, frozen, thaw_options, yes, confirm, echo)
    outcomes = [check_backup(rclone, catalog, m, reads) for m in manifests]
    refused = [n for n, outcome in enumerate(outcomes) if isinstance(outcome.error, ObjectFrozen)]
    if refused:  # frozen, though neither the listing nor the manifest said so
        frozen = thaw.frozen_objects(rclone, catalog, [outcomes[n].manifest for n in refused], probe_all=True)
        try:
            _thaw(rclone, catalog, frozen, thaw_options, yes, confirm, echo)
        except ZfsglacierError:
            for outcome in outcomes:
                echo(outcome.line())
            raise
        for n in refused:
            outcomes[n] = check_backup(rclone, catalog, outcomes[n].manifest, reads)
    for outcome in outcomes:
        echo(outcome.line())
    errors = [o.error for o in outcomes if o.error is not None]
    if deep and not errors:
        chain = resolve_chain(catalog, snapshot)
        scratch = receive_into_scratch(cfg, rclone, catalog, chain, reads)
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


def _thaw(rclone: Rclone, catalog: Catalog, frozen: list[thaw.Frozen], options: thaw.ThawOptions, yes: bool,
          confirm: Confirm, echo: Callable[[str], None]) -> None:
    """Objects to verify are frozen: show what their thaw costs, and request it once confirmed. Returns
    once they are readable (--wait); else raises ThawPending."""
    if not frozen:
        return
    thaw.check_priority(frozen, options.priority)
    for line in thaw.plan_lines(frozen, options):
        echo(line)
    if not yes:
        answer = confirm(f"Type thaw to request the thaw of {len(frozen)} object(s) for this verify: ")
        if answer is None:
            raise RefusedError(f"{len(frozen)} object(s) to verify are frozen in an archive tier: verify requests "
                               "their billed thaw only when asked: give --yes, or run it on a terminal")
        if answer.strip() != "thaw":
            raise RefusedError("the thaw was not confirmed: nothing was requested")
    thaw.thaw(rclone, catalog, frozen, options, command="verify")


def check_backup(rclone: Rclone, catalog: Catalog, manifest: Manifest, reads: ReadSettings) -> Outcome:
    """Download one backup's objects and check them against its manifest; the outcome, never an error."""
    path = catalog.path(manifest.object)
    progress = Progress(f"verify {manifest.snapshot}", manifest.raw_bytes)
    try:
        with step(f"verifying {manifest.snapshot} ({path})"):
            check_objects([manifest], catalog)
            receive_from_remote(source_of(rclone, catalog, manifest, reads), get_codec(manifest.compressor),
                                Expected(path, manifest.stored_bytes, manifest.sha256, manifest.raw_bytes),
                                progress.update, receive_argv=None)
    except SignalReceived:
        raise  # stops the verify, not one backup's check
    except ZfsglacierError as exc:
        log.debug("verify %s: %r", manifest.snapshot, exc)
        return Outcome(manifest, exc)
    finally:
        progress.close()
    return Outcome(manifest, None)


def receive_into_scratch(cfg: BackupConfig, rclone: Rclone, catalog: Catalog, chain: list[Manifest],
                         reads: ReadSettings) -> str:
    """Receive `chain` into a throwaway dataset on [verify] scratch_pool (else the dataset's own pool),
    destroyed after; returns its name."""
    pool = cfg.verify.scratch_pool or cfg.dataset.split("/", 1)[0]
    delegation.require(pool, lambda: delegation.RESTORE_NEEDS, "verify --deep")
    scratch = f"{pool}/{SCRATCH_PREFIX}{secrets.token_hex(4)}"
    with DatasetLock(scratch, "verify"), step(f"receiving the chain of {chain[-1].snapshot} into {scratch}"):
        try:
            for position, manifest in enumerate(chain):
                receive_backup(rclone, catalog, manifest, scratch, force=position > 0, reads=reads)
        finally:
            if zfs.dataset_exists(scratch):
                zfs.destroy_dataset(scratch)
    return scratch
