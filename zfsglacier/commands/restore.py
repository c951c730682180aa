"""`zfsglacier restore`: chain the committed backups by guid, confirm, then stream each one
`rclone cat` -> verify + decompress -> `zfs receive`, and check every received snapshot's guid.

A chain is received backup by backup, so a damaged incremental is found after the backups before it
were committed. Such a target must not look complete: once the full is received, the target carries
the user property `org.zfsglacier:restore=incomplete` and stays unmounted until the last backup is
received. What was received is kept; the same restore run again continues after it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from zfsglacier import names
from zfsglacier.codec.registry import get_codec
from zfsglacier.commands.restore_plan import (
    INCOMPLETE,
    RESTORE_PROPERTY,
    Space,
    chain_from_manifests,
    check_objects,
    check_target_names,
    dry_run_lines,
    plan_lines,
)
from zfsglacier.commands.restore_properties import TargetProperties
from zfsglacier.config import BackupConfig
from zfsglacier.errors import IntegrityError, ObjectFrozen, RefusedError, UsageError, ZfsglacierError
from zfsglacier.lock import DatasetLock
from zfsglacier.remote import object_lock, thaw
from zfsglacier.remote.catalog import Catalog, load_catalog
from zfsglacier.remote.manifest import Manifest
from zfsglacier.remote.rclone import Rclone, rclone_for
from zfsglacier.signals import step
from zfsglacier.stream.pipeline import Expected, Source, receive_from_remote
from zfsglacier.stream.progress import Progress, summary_line
from zfsglacier.stream.ranged_reads import Part, ReadSettings
from zfsglacier.zfs import capabilities, delegation
from zfsglacier.zfs import cmd as zfs

log = logging.getLogger(__name__)

# Asked with a prompt, returns what the user typed; None when there is no terminal to ask on.
Confirm = Callable[[str], str | None]


def read_settings(cfg: BackupConfig, rclone: Rclone, streams: int | None = None) -> ReadSettings:
    """How restore and verify read objects: [restore] streams and range_size (`streams`: --streams, which
    wins). A remote on the local disk is read as one stream: ranges there cost CPU and gain nothing."""
    if streams is None:
        streams = 1 if rclone.on_local_disk(cfg.remote) else cfg.restore.streams
    return ReadSettings(streams, cfg.restore.range_bytes, cfg.stall_timeout)


def source_of(rclone: Rclone, catalog: Catalog, manifest: Manifest, reads: ReadSettings) -> Source:
    """Where and how to download the objects of a backup, in order."""
    return Source([Part(catalog.path(v.object), v) for v in manifest.parts], rclone.cat_argv, reads, rclone.redact)


def restore(cfg: BackupConfig, target: str, *, snapshot: str | None = None, yes: bool = False,
            force: bool = False, confirm: Confirm, echo: Callable[[str], None] = print,
            thaw_options: thaw.ThawOptions = thaw.NO_WAIT, dry_run: bool = False,
            streams: int | None = None, as_of: str | None = None, keep_mountpoint: bool = False) -> list[Manifest]:
    """`as_of`: restore from the remote as it was at that time (RFC 3339, UTC; a versioned S3 bucket).
    `keep_mountpoint`: set the backed-up dataset's mountpoint on the target too."""
    problem = names.dataset_problem(target)
    if problem:
        raise UsageError(f"--target-dataset {target!r}: dataset name {problem}")
    rclone = rclone_for(cfg, as_of)
    if as_of is not None:
        object_lock.check_as_of(rclone, cfg.remote, as_of)
    with DatasetLock(target, "restore"), step(f"restoring {cfg.dataset} into {target}"):
        catalog, chain = chain_from_manifests(cfg, rclone, load_catalog(cfg, rclone), snapshot)
        check_target_names(target, chain)
        check_objects(chain, catalog)
        exists = zfs.dataset_exists(target)
        if not exists and not zfs.dataset_exists(parent_of(target)):
            raise UsageError(f"--target-dataset {target}: its parent {parent_of(target)} does not exist (zfs receive "
                             "creates the last part of the name only)")
        delegation.require(target if exists else parent_of(target), lambda: delegation.RESTORE_NEEDS,
                           f"restore into {target}")
        received = already_received(target, chain) if exists else 0
        if exists and not force and not received:
            raise RefusedError(f"{target} already exists: choose a new --target-dataset, or give --force "
                               "to overwrite it (zfs receive -F)")
        frozen = thaw.frozen_objects(rclone, catalog, chain[received:])
        thaw.check_priority(frozen, thaw_options.priority)
        space = Space.of(target if exists else parent_of(target), chain[received:])
        props = TargetProperties.here(keep_mountpoint)
        for line in [*plan_lines(chain, catalog, target, received), *props.plan_lines(chain, target),
                     *space.lines(), *thaw.plan_lines(frozen, thaw_options)]:
            echo(line)
        if dry_run:
            for line in dry_run_lines(rclone, catalog, chain, received, target, frozen, thaw_options, props,
                                      exists=exists, force=force):
                echo(line)
            return chain
        _confirm(target, yes, confirm, thaw_needed=bool(frozen), space=space)
        if frozen:
            thaw.thaw(rclone, catalog, frozen, thaw_options)
        if exists:
            _abort_partial_receive(target)
            # Received over while mounted, zfs-fuse at times fails the receive with an I/O error
            # after writing the snapshot; unmounted, it does not. OpenZFS would unmount it itself.
            zfs.unmount_if_mounted(target)
        started = time.monotonic()
        reads = read_settings(cfg, rclone, streams)
        log.info("reading each object with %s", reads.describe())
        thawing = Thawing(rclone, catalog, chain, target, thaw_options, lambda state: _confirm(
            target, yes, confirm, thaw_needed=True, space=space, state=state), echo)
        position = received
        try:
            while position < len(chain):
                try:
                    receive_in_chain(rclone, catalog, chain, position, target, force=force, reads=reads,
                                     props=props)
                except ObjectFrozen as refused:
                    if position == 0 and not exists:
                        _remove_failed_new_target(target)
                    thawing.after_refused_read(position, refused)
                    continue  # thawed (--wait): the same backup again
                position += 1
        except BaseException:
            if not exists and position == 0:  # the full itself failed: nothing was received
                _remove_failed_new_target(target)
            raise
        _set_restore_state(target, None)
        props.finish(target, chain)
        _mount_or_say_how(target, chain[-1])
        done = chain[received:]
        log.info("restored %s@%s: %d backup(s), %s", target, chain[-1].snapshot, len(done),
                 summary_line(sum(m.raw_bytes for m in done), sum(m.stored_bytes for m in done),
                              time.monotonic() - started))
    return chain


def _confirm(target: str, yes: bool, confirm: Confirm, *, thaw_needed: bool, space: Space,
             state: str = "nothing was changed") -> None:
    """The user's go-ahead; `state`: what a refusal leaves. A thaw is billed and takes hours: for a chain
    that may not fit the target it is never requested on --yes alone."""
    risky = thaw_needed and not space.fits
    if yes and not risky:
        return
    if yes:
        raise RefusedError(f"{space.problem()}: not requesting a billed thaw for a restore that may not fit; free "
                           "space, choose a --target-dataset in a larger pool, or run without --yes on a terminal "
                           f"to confirm it anyway; {state}")
    question = (f"Type the target dataset name ({target}) to request the thaw and restore anyway: " if risky
                else f"Type the target dataset name ({target}) to start the restore: ")
    answer = confirm(question)
    if answer is None:
        raise RefusedError(f"no terminal to confirm on: give --yes to restore without asking; {state}")
    if answer.strip() != target:
        raise RefusedError(f"not confirmed (the name typed does not match): {state}")


class Thawing:
    """A read the remote refused because the object is frozen, though neither the listing nor its manifest
    put it in a cold class (a lifecycle rule moved it, or a provider lists no tiers): find what of the
    rest of the chain is frozen, and thaw it after the same confirmation as a planned thaw."""

    def __init__(self, rclone: Rclone, catalog: Catalog, chain: list[Manifest], target: str,
                 options: thaw.ThawOptions, confirm: Callable[[str], None], echo: Callable[[str], None]) -> None:
        self._rclone, self._catalog, self._chain, self._target = rclone, catalog, chain, target
        self._options, self._confirm, self._echo = options, confirm, echo
        self._found_nothing = 0

    def after_refused_read(self, position: int, refused: ObjectFrozen) -> None:
        """Returns once the rest of the chain is readable (--wait); else raises ThawPending."""
        frozen = thaw.frozen_objects(self._rclone, self._catalog, self._chain[position:], probe_all=True)
        if not frozen:
            self._found_nothing += 1
            if self._found_nothing > 1:  # refused again, yet every object reads: not a thaw's business
                raise refused
            log.warning("%s; every object reads now: trying again", refused)
            return
        log.warning("the remote refused to read %s: it is in an archive tier and not thawed, though the listing "
                    "and its manifest named no cold storage class", self._catalog.path(frozen[0].volume.object))
        thaw.check_priority(frozen, self._options.priority)
        for line in thaw.plan_lines(frozen, self._options):
            self._echo(line)
        meanwhile = unfinished_note(self._target, self._chain, position, thawing=True) if position else ""
        self._confirm(f"no thaw was requested; {meanwhile or 'nothing was received'}")
        thaw.thaw(self._rclone, self._catalog, frozen, self._options, meanwhile=meanwhile)


def _abort_partial_receive(target: str) -> None:
    """A `zfs receive -s` that was cut off (zfsglacier never uses -s; a by-hand receive may have) keeps
    its partial state in the target, and every other receive is refused while it is there."""
    if capabilities.zfs_tools().resumable_receive and zfs.abort_partial_receive(target):
        log.warning("%s held the partial state of an interrupted zfs receive -s: aborted it (zfs receive -A)",
                    target)


def parent_of(dataset: str) -> str:
    return dataset.rpartition("/")[0] or dataset


def _mount_or_say_how(target: str, newest: Manifest) -> None:
    """A raw backup restores encrypted, with the original key: it cannot mount until that key is loaded.
    Mounting needs root on Linux, whatever zfs allow delegates."""
    steps = []
    if newest.raw and zfs.get_property(target, "keystatus") == "unavailable":
        steps.append(f"it is encrypted with the key of {newest.dataset}: load that key with zfs load-key {target} "
                     f"(a key file: zfs load-key -L file:///PATH {target})")
    if not delegation.is_root():
        steps.append(f"mounting needs root: zfs mount {target}")
    elif steps:
        steps.append(f"then zfs mount {target}")
    if steps:
        log.warning("%s is not mounted: %s", target, "; ".join(steps))
        return
    zfs.mount_if_mountable(target)


def _remove_failed_new_target(target: str, settle: float = 10.0) -> None:
    """A target this run created, whose full was never received, must not stay behind. OpenZFS has
    already removed it when `zfs receive` exits; zfs-fuse's daemon takes a moment more, and may leave
    an empty dataset. Anything holding a snapshot is never destroyed here."""
    deadline = time.monotonic() + settle
    try:
        while zfs.dataset_exists(target):
            if time.monotonic() > deadline:
                if not zfs.list_snapshots(target):
                    log.info("destroying %s: created by this restore, its full was not received", target)
                    zfs.destroy_dataset(target)
                return
            time.sleep(0.2)
    except ZfsglacierError as exc:  # the error being raised is the one that matters
        log.warning("could not remove the unfinished target %s: %s", target, exc)


def receive_in_chain(rclone: Rclone, catalog: Catalog, chain: list[Manifest], position: int, target: str, *,
                     force: bool, reads: ReadSettings, props: TargetProperties) -> None:
    """Receive chain[position]; after the full, mark the target unfinished until the end of the chain."""
    manifest = chain[position]
    try:
        with step(f"receiving {manifest.snapshot} ({position + 1} of {len(chain)}) into {target}"):
            receive_backup(rclone, catalog, manifest, target, force=force or position > 0, reads=reads,
                           properties=props.at_receive(manifest))
    except ObjectFrozen:
        raise  # thawed, and then continued (restore)
    except ZfsglacierError as exc:
        if position > 0:
            exc.args = (f"{exc}; {unfinished_note(target, chain, position)}",)
        raise
    if position == 0 and len(chain) > 1:
        _set_restore_state(target, INCOMPLETE)
        zfs.unmount_if_mounted(target)
    log.info("restored %s@%s (%d of %d)", target, manifest.snapshot, position + 1, len(chain))


def unfinished_note(target: str, chain: list[Manifest], failed: int, *, thawing: bool = False) -> str:
    then = "the same restore run again continues from there" if thawing else \
        f"run the same restore again to continue once {chain[failed].object} is fixed, or zfs destroy -r {target}"
    return (f"{target} is unfinished: it holds {target}@{chain[failed - 1].snapshot} ({failed} of {len(chain)} "
            f"backups), is marked {RESTORE_PROPERTY}={INCOMPLETE} and not mounted; {then}")


def already_received(target: str, chain: list[Manifest]) -> int:
    """How much of `chain` an unfinished restore left in `target` (0 when it holds none)."""
    if _restore_state(target) != INCOMPLETE:
        return 0
    guids = [s.guid for s in zfs.list_snapshots(target)]
    if not guids or guids != [m.guid for m in chain[: len(guids)]]:
        raise RefusedError(
            f"{target} holds an unfinished restore ({RESTORE_PROPERTY}={INCOMPLETE}) of other backups than "
            f"this chain: choose another --target-dataset, or zfs destroy -r {target} first"
        )
    return len(guids)


def _restore_state(dataset: str) -> str:
    return zfs.get_property(dataset, RESTORE_PROPERTY)


def _set_restore_state(dataset: str, state: str | None) -> None:
    zfs.set_property(dataset, RESTORE_PROPERTY, state)


def receive_backup(rclone: Rclone, catalog: Catalog, manifest: Manifest, target: str, *, force: bool,
                   reads: ReadSettings, properties: Mapping[str, str] | None = None) -> None:
    """Stream one backup into `target` and check the received snapshot's guid against its manifest.
    `properties`: set on the target by the receive (-o)."""
    codec = get_codec(manifest.compressor)
    path = catalog.path(manifest.object)
    progress = Progress(f"restore {manifest.snapshot}", manifest.raw_bytes)
    try:
        stats = receive_from_remote(
            source_of(rclone, catalog, manifest, reads), codec,
            Expected(path, manifest.stored_bytes, manifest.sha256, manifest.raw_bytes), progress.update,
            # -F on incrementals rolls back whatever touched the target since the previous receive
            # (a mount updating atimes); the chain itself guarantees we only move forward.
            # -u where zfs has it: the target is mounted once, at the end of the chain (never as non-root).
            zfs.receive_argv(target, force=force, unmounted=capabilities.zfs_tools().receive_unmounted,
                             properties=properties))
    finally:
        progress.close()
    received = {s.short_name: s for s in zfs.list_snapshots(target)}.get(manifest.snapshot)
    if received is None:
        raise IntegrityError(f"zfs receive of {path} exited 0 but {target}@{manifest.snapshot} is missing")
    if received.guid != manifest.guid:
        raise IntegrityError(
            f"{target}@{manifest.snapshot} has guid {received.guid}, the backup's manifest says {manifest.guid}"
        )
    seconds = max(stats.seconds, 1e-9)
    log.info("received %s: %s, %s, guid %s verified", manifest.snapshot, manifest.kind,
             summary_line(stats.raw_bytes, stats.stored_bytes, seconds), received.guid)
