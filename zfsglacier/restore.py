"""`zfsglacier restore`: chain the committed backups by guid, confirm, then stream each one
`rclone cat` -> verify + decompress -> `zfs receive`, and check every received snapshot's guid."""

from __future__ import annotations

import logging
from collections.abc import Callable

from . import names, zfs
from .catalog import Catalog, load_catalog
from .codecs import get_codec
from .config import BackupConfig
from .errors import ChainError, IntegrityError, RefusedError, UsageError
from .lock import DatasetLock
from .manifest import Manifest, build_chain
from .pipeline import Expected, receive_from_remote
from .progress import Progress, human_bytes
from .rclone import Rclone, find_rclone

log = logging.getLogger(__name__)

# Asked with a prompt, returns what the user typed; None when there is no terminal to ask on.
Confirm = Callable[[str], str | None]


def plan_lines(chain: list[Manifest], catalog: Catalog, target: str) -> list[str]:
    lines = [f"restore into {target}, {len(chain)} object(s) in order:"]
    for m in chain:
        source = "full" if m.base is None else f"incremental from {m.base}"
        lines.append(f"  {m.snapshot}  {source}  {human_bytes(m.stored_bytes)} stored, "
                     f"{human_bytes(m.raw_bytes)} raw  {catalog.path(m.object)}")
    return lines


def check_objects(chain: list[Manifest], catalog: Catalog) -> None:
    """Every object of the chain is present with the size its manifest promises, before anything starts."""
    for m in chain:
        stored = catalog.objects.get(m.object)
        if stored is None:
            raise ChainError(f"{catalog.path(m.object)}: the data object of {m.snapshot} is missing")
        if stored.size != m.stored_bytes:
            raise IntegrityError(
                f"{catalog.path(m.object)}: {stored.size} bytes on the remote, its manifest says "
                f"{m.stored_bytes}"
            )


def restore(cfg: BackupConfig, target: str, *, snapshot: str | None = None, yes: bool = False,
            force: bool = False, confirm: Confirm, echo: Callable[[str], None] = print) -> list[Manifest]:
    problem = names.dataset_problem(target)
    if problem:
        raise UsageError(f"--target-dataset {target!r}: dataset name {problem}")
    rclone = Rclone(find_rclone(), cfg.rclone_config)
    with DatasetLock(target, "restore"):
        catalog = load_catalog(cfg, rclone)
        chain = build_chain(catalog.manifests, snapshot)
        check_objects(chain, catalog)
        if zfs.dataset_exists(target) and not force:
            raise RefusedError(f"{target} already exists: choose a new --target-dataset, or give --force "
                               "to overwrite it (zfs receive -F)")
        for line in plan_lines(chain, catalog, target):
            echo(line)
        if not yes:
            answer = confirm(f"Type the target dataset name ({target}) to start the restore: ")
            if answer is None:
                raise RefusedError("no terminal to confirm on: give --yes to restore without asking")
            if answer.strip() != target:
                raise RefusedError("not confirmed (the name typed does not match): nothing was changed")
        if force and zfs.dataset_exists(target):
            # Received over while mounted, zfs-fuse at times fails the receive with an I/O error
            # after writing the snapshot; unmounted, it does not. OpenZFS would unmount it itself.
            zfs.unmount_if_mounted(target)
        for position, manifest in enumerate(chain):
            receive_backup(rclone, catalog, manifest, target, force=force or position > 0)
            log.info("restored %s@%s (%d of %d)", target, manifest.snapshot, position + 1, len(chain))
        zfs.mount_if_mountable(target)
    return chain


def receive_backup(rclone: Rclone, catalog: Catalog, manifest: Manifest, target: str, *, force: bool) -> None:
    """Stream one backup into `target` and check the received snapshot's guid against its manifest."""
    codec = get_codec(manifest.compressor)
    path = catalog.path(manifest.object)
    progress = Progress(f"restore {manifest.snapshot}", manifest.raw_bytes)
    try:
        stats = receive_from_remote(
            rclone.cat_argv(path),
            # -F on incrementals rolls back whatever touched the target since the previous receive
            # (a mount updating atimes); the chain itself guarantees we only move forward.
            zfs.receive_argv(target, force=force),
            codec,
            Expected(path, manifest.stored_bytes, manifest.sha256, manifest.raw_bytes),
            progress.update,
        )
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
    log.info("received %s: %s raw from %s stored, %.1f s, %s/s, guid %s verified", manifest.snapshot,
             human_bytes(stats.raw_bytes), human_bytes(stats.stored_bytes), stats.seconds,
             human_bytes(stats.raw_bytes / seconds), received.guid)
