"""What is on the remote for one dataset: committed backups (manifests) and leftovers."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .config import BackupConfig
from .errors import IntegrityError
from .manifest import Manifest, snapshot_of_data_object, snapshot_of_manifest
from .rclone import Rclone, RemoteObject, join

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Catalog:
    directory: str  # rclone path of the dataset's directory
    manifests: list[Manifest]  # committed backups, oldest first
    objects: dict[str, RemoteObject]  # every object in the directory, by name
    orphans: list[str]  # data objects without a manifest: not backups
    damaged: list[str]  # manifests that cannot be read or trusted, with the reason

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
    manifests: list[Manifest] = []
    damaged: list[str] = []
    manifest_snapshots: set[str] = set()
    for name in sorted(objects):
        snapshot = snapshot_of_manifest(name)
        if snapshot is None:
            continue
        manifest_snapshots.add(snapshot)
        path = join(directory, name)
        try:
            manifest = Manifest.from_json(rclone.read(path), where=path)
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
    # An object is an orphan only when no manifest file names its snapshot at all: a damaged
    # manifest must never turn its data into something a cleanup deletes.
    orphans = [
        name for name in sorted(objects)
        if (snapshot := snapshot_of_data_object(name)) is not None and snapshot not in manifest_snapshots
    ]
    manifests.sort(key=lambda m: (m.createtxg, m.created))
    return Catalog(directory, manifests, objects, orphans, damaged)
