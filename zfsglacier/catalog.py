"""What is on the remote for one dataset: committed backups (manifests) and leftovers.

Loading costs one listing, one read of the index (zfsglacier/index.py) and one batched read of
whatever manifests the index does not hold.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from . import index
from .config import BackupConfig
from .errors import IntegrityError, RemoteError
from .manifest import MANIFEST_SUFFIX, Manifest, manifest_name, snapshot_of_data_object, snapshot_of_manifest
from .rclone import Rclone, RemoteObject, join

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Catalog:
    directory: str  # rclone path of the dataset's directory
    manifests: list[Manifest]  # committed backups, oldest first
    objects: dict[str, RemoteObject]  # every object in the directory, by name
    orphans: list[str]  # data objects without a manifest: not backups
    damaged: list[str]  # manifests that cannot be read or trusted, with the reason
    # manifest object name -> its bytes, for the good manifests (what the index copies)
    manifest_bytes: dict[str, bytes] = field(default_factory=dict)

    def path(self, name: str) -> str:
        return join(self.directory, name)

    def by_snapshot(self, snapshot: str) -> Manifest | None:
        return next((m for m in self.manifests if m.snapshot == snapshot), None)

    @property
    def guids(self) -> set[str]:
        return {m.guid for m in self.manifests}


def load_catalog(cfg: BackupConfig, rclone: Rclone) -> Catalog:
    directory = cfg.remote_dir
    objects = {o.name: o for o in rclone.list_dir(directory)}
    manifest_names = sorted(name for name in objects if snapshot_of_manifest(name) is not None)
    texts = _manifest_texts(rclone, directory, objects, manifest_names)

    manifests: list[Manifest] = []
    manifest_bytes: dict[str, bytes] = {}
    damaged: list[str] = []
    for name in manifest_names:
        snapshot = snapshot_of_manifest(name)
        path = join(directory, name)
        try:
            manifest = Manifest.from_json(texts[name], where=path)
            if manifest.dataset != cfg.dataset or manifest.snapshot != snapshot:
                raise IntegrityError(
                    f"manifest {path}: describes {manifest.dataset}@{manifest.snapshot}, not "
                    f"{cfg.dataset}@{snapshot}"
                )
        except IntegrityError as exc:
            log.warning("%s (ignored: that backup cannot be used)", exc)
            damaged.append(str(exc))
            continue
        manifests.append(manifest)
        manifest_bytes[name] = texts[name]
    # An object is an orphan only when no manifest file names its snapshot at all: a damaged
    # manifest must never turn its data into something a cleanup deletes.
    manifest_snapshots = {snapshot_of_manifest(name) for name in manifest_names}
    orphans = [
        name for name in sorted(objects)
        if (snapshot := snapshot_of_data_object(name)) is not None and snapshot not in manifest_snapshots
    ]
    manifests.sort(key=lambda m: (m.createtxg, m.created))
    return Catalog(directory, manifests, objects, orphans, damaged, manifest_bytes)


def _manifest_texts(rclone: Rclone, directory: str, objects: dict[str, RemoteObject],
                    names: list[str]) -> dict[str, bytes]:
    """The bytes of every listed manifest: from the index where it is current, the rest read."""
    sizes = {name: objects[name].size for name in names}
    texts = index.usable_entries(_read_index(rclone, directory, objects), sizes)
    missing = [name for name in names if name not in texts]
    if missing:
        log.debug("reading %d manifest(s) the index does not hold", len(missing))
        # Most of them missing (no index yet): fetch every manifest by pattern, one listing.
        pattern = f"*{MANIFEST_SUFFIX}" if len(missing) > len(names) // 4 else None
        texts |= rclone.read_many(directory, missing, pattern=pattern)
        unread = [name for name in missing if name not in texts]
        if unread:
            raise RemoteError("rclone copy", f"could not read {len(unread)} manifest(s) in {directory}: "
                                             f"{', '.join(unread[:5])}{' ...' if len(unread) > 5 else ''}")
    return texts


def _read_index(rclone: Rclone, directory: str, objects: dict[str, RemoteObject]) -> dict[str, bytes]:
    if index.INDEX_NAME not in objects:
        return {}
    path = join(directory, index.INDEX_NAME)
    try:
        return index.decode(rclone.read(path))
    except (ValueError, RemoteError) as exc:
        log.warning("index %s: %s (ignored: every manifest is read instead)", path, exc)
        return {}


def write_index(rclone: Rclone, catalog: Catalog, committed: Manifest) -> None:
    """Rewrite the index after a commit. Its failure costs the next run time, not correctness."""
    entries = {**catalog.manifest_bytes, manifest_name(committed.snapshot): committed.to_json()}
    path = catalog.path(index.INDEX_NAME)
    try:
        rclone.write(path, index.encode(entries))
    except RemoteError as exc:
        log.warning("backup %s is committed, but rewriting the index %s failed (the next backup "
                    "rewrites it): %s", committed.snapshot, path, exc)
