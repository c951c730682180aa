"""What is on the remote for one dataset: committed backups (manifests) and leftovers.

Loading costs one listing, one read of the index (remote/manifest_index.py) and one batched read of
whatever manifests the index does not hold (verify reads every manifest object itself, and compares
each with its copy in the index).

The manifest objects are the truth: a backup whose manifest object is damaged or missing is not
used, even when the index holds a good copy. But a data object whose manifest is missing while the
index still holds that committed manifest is not an orphan either: it is kept, and reported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from zfsglacier.background import Background
from zfsglacier.config import BackupConfig
from zfsglacier.errors import ChainError, IntegrityError, RemoteError, ZfsglacierError
from zfsglacier.remote import manifest_index
from zfsglacier.remote.manifest import (
    MANIFEST_SUFFIX,
    Manifest,
    manifest_name,
    snapshot_of_data_object,
    snapshot_of_manifest,
)
from zfsglacier.remote.rclone import Rclone, join
from zfsglacier.remote.rclone_output import RemoteObject

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LostManifest:
    """A committed manifest that is gone from the remote while its data object is still there."""

    manifest: str  # the missing manifest object's name
    data_objects: list[str]
    copy: bytes  # its committed bytes, from the index


@dataclass(frozen=True)
class Catalog:
    directory: str  # rclone path of the dataset's directory
    manifests: list[Manifest]  # committed backups, oldest first
    objects: dict[str, RemoteObject]  # every object in the directory, by name
    orphans: list[str]  # data objects without a manifest, committed or not: not backups
    damaged: list[str]  # manifests that cannot be read or trusted, with the reason
    # manifest object name -> its bytes, for the good manifests (what the index copies)
    manifest_bytes: dict[str, bytes] = field(default_factory=dict)
    # snapshot -> why its backup cannot be used (a damaged or missing manifest)
    unusable: dict[str, ZfsglacierError] = field(default_factory=dict)
    lost: list[LostManifest] = field(default_factory=list)
    # manifests taken from the index's copies, not read from their objects (restore_plan rereads those)
    from_index: frozenset[str] = frozenset()

    def path(self, name: str) -> str:
        return join(self.directory, name)

    @property
    def guids(self) -> set[str]:
        return {m.guid for m in self.manifests}


def load_catalog(cfg: BackupConfig, rclone: Rclone, *, read_manifests: bool = False) -> Catalog:
    """`read_manifests`: read every manifest object instead of trusting the index's copies (verify)."""
    directory = cfg.remote_dir
    index_path = join(directory, manifest_index.INDEX_NAME)
    # Read at the same time as the listing, and used only if the listing shows it: one wait, not two.
    reading = Background(lambda: rclone.read(index_path), "read: index")
    try:
        objects = {o.name: o for o in rclone.list_dir(directory)}
    finally:
        index_read = _outcome(reading)
    return assemble(cfg, rclone, objects, index_read, read_manifests=read_manifests)


def assemble(cfg: BackupConfig, rclone: Rclone, objects: dict[str, RemoteObject], index_read: bytes | RemoteError,
             *, read_manifests: bool = False) -> Catalog:
    """The catalog of a dataset from its folder's listing (`objects`) and what reading its index gave."""
    directory = cfg.remote_dir
    index_path = join(directory, manifest_index.INDEX_NAME)
    if not objects:
        _warn_if_undecryptable(rclone, cfg.remote)
    manifest_names = sorted(name for name in objects if snapshot_of_manifest(name) is not None)
    copies = _read_index(index_path, index_read) if manifest_index.INDEX_NAME in objects else {}
    if read_manifests:
        texts = _read_manifests(rclone, directory, manifest_names)
        from_index: frozenset[str] = frozenset()
    else:
        texts, from_index = _manifest_texts(rclone, directory, objects, manifest_names, copies)

    manifests: list[Manifest] = []
    manifest_bytes: dict[str, bytes] = {}
    unusable: dict[str, ZfsglacierError] = {}
    damaged: list[str] = []
    for name in manifest_names:
        snapshot = snapshot_of_manifest(name) or name
        try:
            manifest = _parse(cfg, join(directory, name), snapshot, texts[name])
        except IntegrityError as exc:
            log.warning("%s (ignored: that backup cannot be used)", exc)
            damaged.append(str(exc))
            unusable[snapshot] = exc
            continue
        manifests.append(manifest)
        manifest_bytes[name] = texts[name]
    if read_manifests:  # otherwise the copies were used only where they match
        damaged += _differences_from_index(directory, manifest_bytes, copies)
    lost = _lost_manifests(objects, copies)
    for gone in lost:
        error = ChainError(_lost_message(directory, gone))
        log.warning("%s", error)
        damaged.append(str(error))
        unusable[snapshot_of_manifest(gone.manifest) or gone.manifest] = error
    # An object is an orphan only when no manifest file names its snapshot at all: a damaged
    # manifest must never turn its data into something a cleanup deletes.
    manifest_snapshots = {snapshot_of_manifest(name) for name in manifest_names}
    orphans = [
        name for name in sorted(objects)
        if (of := snapshot_of_data_object(name)) is not None and of not in manifest_snapshots
    ]
    manifests.sort(key=lambda m: (m.createtxg, m.created))
    return Catalog(directory, manifests, objects, orphans, damaged, manifest_bytes, unusable, lost, from_index)


def _warn_if_undecryptable(rclone: Rclone, remote: str) -> None:
    """Through a crypt remote with another password than the backups were made with, their names cannot be
    decrypted and rclone skips them: the dataset's folder looks empty. Say so, rather than let a restore
    find nothing and a backup start a new chain without a word."""
    try:
        skipped = rclone.undecryptable_names(remote)
    except ZfsglacierError as exc:
        log.debug("could not check %s: for names its password cannot decrypt: %s", remote, exc)
        return
    if skipped:
        log.warning("%s holds %d name(s) this crypt remote's password cannot decrypt: if backups were made there, "
                    "they were made with another password (the password and password2 of [%s] in the rclone "
                    "config), and they stay unreadable until it is given back", f"{remote}:", skipped, remote)


def _parse(cfg: BackupConfig, path: str, snapshot: str, text: bytes) -> Manifest:
    manifest = Manifest.from_json(text, where=path)
    if manifest.dataset != cfg.dataset or manifest.snapshot != snapshot:
        raise IntegrityError(
            f"manifest {path}: describes {manifest.dataset}@{manifest.snapshot}, not {cfg.dataset}@{snapshot}"
        )
    return manifest


def _lost_manifests(objects: dict[str, RemoteObject], copies: dict[str, bytes]) -> list[LostManifest]:
    """Manifests the index holds (so they were committed) that are gone while their data is not."""
    lost = []
    for name, copy in sorted(copies.items()):
        if name in objects or (snapshot := snapshot_of_manifest(name)) is None:
            continue
        data = sorted(o for o in objects if snapshot_of_data_object(o) == snapshot)
        if data:
            lost.append(LostManifest(name, data, copy))
    return lost


def _lost_message(directory: str, gone: LostManifest) -> str:
    return (f"manifest {join(directory, gone.manifest)}: missing, though its backup was committed (the index "
            f"{manifest_index.INDEX_NAME} holds a copy) and its data {', '.join(gone.data_objects)} is still on the "
            "remote; put the manifest back from the index's copy, or delete the data if that backup is unwanted")


def _read_manifests(rclone: Rclone, directory: str, names: list[str]) -> dict[str, bytes]:
    texts = rclone.read_many(directory, names, pattern=f"*{MANIFEST_SUFFIX}")
    _require_all(directory, names, texts)
    return texts


def _differences_from_index(directory: str, texts: dict[str, bytes], copies: dict[str, bytes]) -> list[str]:
    """Manifest objects that differ from the committed copy in the index: one of the two was changed."""
    return [
        f"manifest {join(directory, name)}: differs from its committed copy in {manifest_index.INDEX_NAME} "
        f"({len(texts[name])} bytes, the copy {len(copy)}): the stored manifest was changed after the commit"
        for name, copy in sorted(copies.items()) if name in texts and texts[name] != copy
    ]


def _manifest_texts(rclone: Rclone, directory: str, objects: dict[str, RemoteObject],
                    names: list[str], copies: dict[str, bytes]) -> tuple[dict[str, bytes], frozenset[str]]:
    """The bytes of every listed manifest: from the index where it is current, the rest read; and the names
    taken from the index."""
    sizes = {name: objects[name].size for name in names}
    texts = manifest_index.usable_entries(copies, sizes)
    from_index = frozenset(texts)
    missing = [name for name in names if name not in texts]
    if missing:
        log.debug("reading %d manifest(s) the index does not hold", len(missing))
        # Most of them missing (no index yet): fetch every manifest by pattern, one listing.
        pattern = f"*{MANIFEST_SUFFIX}" if len(missing) > len(names) // 4 else None
        texts |= rclone.read_many(directory, missing, pattern=pattern)
        _require_all(directory, missing, texts)
    return texts, from_index


def _require_all(directory: str, names: list[str], texts: dict[str, bytes]) -> None:
    unread = [name for name in names if name not in texts]
    if unread:
        raise RemoteError("rclone copy", f"could not read {len(unread)} manifest(s) in {directory}: "
                                         f"{', '.join(unread[:5])}{' ...' if len(unread) > 5 else ''}")


def _outcome(reading: Background[bytes]) -> bytes | RemoteError:
    try:
        return reading.result()
    except RemoteError as exc:
        return exc


def _read_index(path: str, read: bytes | RemoteError) -> dict[str, bytes]:
    try:
        if isinstance(read, RemoteError):
            raise read
        return manifest_index.decode(read)
    except (ValueError, RemoteError) as exc:
        log.warning("index %s: %s (ignored: every manifest is read instead)", path, exc)
        return {}


def rewrite_index(rclone: Rclone, catalog: Catalog, without: set[str]) -> None:
    """Rewrite the index without the manifests named in `without` (before prune deletes them: a manifest
    the index still held would make its data look like a committed backup that lost its manifest)."""
    lost = {gone.manifest: gone.copy for gone in catalog.lost}
    entries = {name: data for name, data in {**lost, **catalog.manifest_bytes}.items() if name not in without}
    rclone.write(catalog.path(manifest_index.INDEX_NAME), manifest_index.encode(entries),
                 why=f"the index without the {len(without)} backup(s) deleted below")


def write_index(rclone: Rclone, catalog: Catalog, committed: Manifest) -> None:
    """Rewrite the index after a commit. Its failure costs the next run time, not correctness.

    The copies of lost manifests are kept: they are what keeps their data from being taken for orphans."""
    lost = {gone.manifest: gone.copy for gone in catalog.lost}
    entries = {**lost, **catalog.manifest_bytes, manifest_name(committed.snapshot): committed.to_json()}
    path = catalog.path(manifest_index.INDEX_NAME)
    try:
        rclone.write(path, manifest_index.encode(entries))
    except RemoteError as exc:
        log.warning("backup %s is committed, but rewriting the index %s failed (the next backup "
                    "rewrites it): %s", committed.snapshot, path, exc)
