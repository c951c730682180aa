"""The catalogs of many datasets at once, for `list` and `status` over a tree: per configured top, one
recursive listing of its folder and one rclone process that fetches every index below it, instead of a
listing and a read for each dataset (a Proxmox host has dozens, and a monitoring check must answer within
seconds). Each catalog is then assembled as load_catalog assembles one (remote/catalog.py): a manifest
the index does not hold is still read, the index is still never the truth.
"""

from __future__ import annotations

import dataclasses

from zfsglacier.config import BackupConfig
from zfsglacier.errors import RemoteError, SignalReceived, ZfsglacierError
from zfsglacier.remote import manifest_index
from zfsglacier.remote.catalog import Catalog, assemble
from zfsglacier.remote.rclone import Rclone


def load_catalogs(targets: list[BackupConfig], tops: tuple[str, ...],
                  rclone: Rclone) -> dict[str, Catalog | ZfsglacierError]:
    """Each target's catalog (or what prevented loading it), by dataset. `tops`: the configured datasets,
    whose folders are listed whole; a target below none of them is loaded alone."""
    loaded: dict[str, Catalog | ZfsglacierError] = {}
    for top in tops:
        below = [cfg for cfg in targets if cfg.dataset == top or cfg.dataset.startswith(f"{top}/")]
        below = [cfg for cfg in below if cfg.dataset not in loaded]
        if not below:
            continue
        folder = top_folder(below[0], top)
        try:
            listing = rclone.list_tree(folder)
            indexes = rclone.read_named_in_tree(folder, manifest_index.INDEX_NAME)
        except SignalReceived:
            raise
        except ZfsglacierError as exc:
            loaded.update(dict.fromkeys((cfg.dataset for cfg in below), exc))
            continue
        for cfg in below:
            relative = cfg.dataset.removeprefix(top).lstrip("/")
            objects = {o.name: o for o in listing.get(relative, [])}
            index = indexes.get(relative)
            read: bytes | RemoteError = index if index is not None else \
                RemoteError("rclone copy", f"{manifest_index.INDEX_NAME} was not fetched")
            try:
                loaded[cfg.dataset] = assemble(cfg, rclone, objects, read)
            except SignalReceived:
                raise
            except ZfsglacierError as exc:
                loaded[cfg.dataset] = exc
    return loaded


def top_folder(cfg: BackupConfig, top: str) -> str:
    """The remote folder of the configured dataset `top`, above `cfg`'s."""
    return dataclasses.replace(cfg, dataset=top).remote_dir

