"""What a restore will do, decided and shown before anything is received: the chain to restore and its
checks (names that fit, every object present with its size), the space it needs against the target's,
the plan's lines, and the commands of a dry run."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from zfsglacier import names, proc
from zfsglacier.codec.registry import NO_COMPRESSION, get_codec
from zfsglacier.commands.restore_properties import TargetProperties
from zfsglacier.config import BackupConfig
from zfsglacier.errors import ChainError, IntegrityError, UsageError
from zfsglacier.remote import manifest_index, thaw
from zfsglacier.remote.catalog import Catalog, load_catalog
from zfsglacier.remote.manifest import ChainGap, Manifest, build_chain, manifest_name
from zfsglacier.remote.rclone import Rclone
from zfsglacier.units import human_bytes
from zfsglacier.zfs import capabilities
from zfsglacier.zfs import cmd as zfs

log = logging.getLogger(__name__)

# The mark of a target whose chain is not all received yet (restore.receive_in_chain).
RESTORE_PROPERTY = "org.zfsglacier:restore"
INCOMPLETE = "incomplete"


def plan_lines(chain: list[Manifest], catalog: Catalog, target: str, received: int = 0) -> list[str]:
    lines = [f"restore into {target}, {len(chain)} object(s) in order:"]
    if received:
        lines[0] = (f"continue the unfinished restore into {target}: {received} of {len(chain)} object(s) "
                    "already received:")
    for position, m in enumerate(chain):
        source = "full" if m.base is None else f"incremental from {m.base}"
        source += ", raw encrypted" if m.raw else ""
        done = "  (already received)" if position < received else ""
        volumes = f" (+{len(m.parts) - 1} more volume(s))" if len(m.parts) > 1 else ""
        lines.append(f"  {m.snapshot}  {source}  {human_bytes(m.stored_bytes)} stored, "
                     f"{human_bytes(m.raw_bytes)} raw  {catalog.path(m.object)}{volumes}{done}")
    return lines


def resolve_chain(catalog: Catalog, snapshot: str | None) -> list[Manifest]:
    """The chain to restore. A backup whose manifest is damaged or missing is named, never skipped:
    without --snapshot it might be the newest, so a restore of "the newest" is refused."""
    if snapshot is None and catalog.unusable:
        name, error = sorted(catalog.unusable.items())[0]
        raise type(error)(f"{error}; so the newest backup is unknown: give --snapshot NAME to restore a backup "
                          f"whose chain does not need {name}")
    wanted = snapshot.partition("@")[2] if snapshot and "@" in snapshot else snapshot
    if wanted in catalog.unusable:
        raise catalog.unusable[wanted]
    try:
        return build_chain(catalog.manifests, snapshot)
    except ChainGap as gap:
        cause = catalog.unusable.get(gap.missing_snapshot or "")
        if cause is None:
            raise
        raise type(cause)(f"{cause} (needed: {gap})") from None


def chain_from_manifests(cfg: BackupConfig, rclone: Rclone, catalog: Catalog,
                         snapshot: str | None) -> tuple[Catalog, list[Manifest]]:
    """The chain to restore, as its manifest objects describe it. The catalog may have taken the manifests
    from the index's copies, which anyone who may write to the remote can forge with the right sizes: those
    of the chain are read from their objects, and where one that is a valid manifest differs from what the plan
    used, the whole catalog is read again from the manifest objects. A manifest object that is damaged
    (its self-check fails) leaves its committed copy in the index in use, as loading the catalog did."""
    chain = resolve_chain(catalog, snapshot)
    names = [name for m in chain if (name := manifest_name(m.snapshot)) in catalog.from_index]
    if not names:  # every manifest of the chain was read from its object already
        return catalog, chain
    read = rclone.read_many(catalog.directory, names)
    differ = [name for name in names if read.get(name) != catalog.manifest_bytes.get(name)]
    valid = [name for name in differ if _valid(cfg, catalog, name, read.get(name))]
    for name in differ:
        if name not in valid:
            log.warning("%s: the manifest object is damaged or unreadable; its committed copy in the index %s is "
                        "used; run zfsglacier verify", catalog.path(name), manifest_index.INDEX_NAME)
    if not valid:
        return catalog, chain
    log.warning("%s: the copy in the index %s differs from the manifest object (the index was changed, or the "
                "manifest after its commit): the chain is planned again from the manifest objects; run zfsglacier "
                "verify", catalog.path(valid[0]), manifest_index.INDEX_NAME)
    catalog = load_catalog(cfg, rclone, read_manifests=True)
    return catalog, resolve_chain(catalog, snapshot)


def _valid(cfg: BackupConfig, catalog: Catalog, name: str, data: bytes | None) -> bool:
    """`data` is a sound manifest of the backup its object's name says."""
    if data is None:
        return False
    try:
        manifest = Manifest.from_json(data, where=catalog.path(name))
    except IntegrityError:
        return False
    return manifest.dataset == cfg.dataset and manifest_name(manifest.snapshot) == name


def check_target_names(target: str, chain: list[Manifest]) -> None:
    """A long target plus a long snapshot name may exceed ZFS's limit: say so before anything runs."""
    for m in chain:
        problem = names.snapshot_name_problem(f"{target}@{m.snapshot}")
        if problem:
            raise UsageError(f"--target-dataset {target!r}: the restored snapshot {target}@{m.snapshot} {problem}")


def check_objects(chain: list[Manifest], catalog: Catalog) -> None:
    """Every object of the chain is present with the size its manifest promises, before anything starts."""
    for m in chain:
        for part in m.parts:
            stored = catalog.objects.get(part.object)
            if stored is None:
                raise ChainError(f"{catalog.path(part.object)}: the data object of {m.snapshot} is missing")
            if stored.size != part.stored_bytes:
                raise IntegrityError(
                    f"{catalog.path(part.object)}: {stored.size} bytes on the remote, its manifest says "
                    f"{part.stored_bytes}"
                )


@dataclass(frozen=True)
class Space:
    """The chain's raw stream size against what the target (or its parent) can still hold."""

    dataset: str
    needed: int
    available: int | None

    @classmethod
    def of(cls, dataset: str, chain: list[Manifest]) -> Space:
        return cls(dataset, sum(m.raw_bytes for m in chain), zfs.available_bytes(dataset))

    @property
    def fits(self) -> bool:
        return self.available is None or self.needed <= self.available

    def problem(self) -> str:
        return (f"the chain's streams are {human_bytes(self.needed)} raw and {self.dataset} has "
                f"{human_bytes(self.available or 0)} available")

    def lines(self) -> list[str]:
        if self.available is None:
            return []
        if self.fits:
            return [f"space: {human_bytes(self.needed)} raw to receive, {human_bytes(self.available)} available "
                    f"in {self.dataset}"]
        return [f"WARNING: {self.problem()}: the restore may not fit (it needs less where the target "
                "compresses; zfs receive stops with 'out of space' if it does not)"]


def dry_run_lines(rclone: Rclone, catalog: Catalog, chain: list[Manifest], received: int, target: str,
                  frozen: list[thaw.Frozen], options: thaw.ThawOptions, props: TargetProperties, *, exists: bool,
                  force: bool) -> list[str]:
    """The commands a restore would run, as a person could paste them (each object read by one `rclone cat`,
    where a restore may read ranges of it at once). Left out: the checks of size, sha256 and guid made on
    the way."""
    lines = ["# dry run: nothing is changed; these are the commands the restore would run"]
    if frozen:
        target, called = rclone.backend_path(catalog.directory, [f.volume.object for f in frozen])
        lines.append(proc.render(rclone.thaw_argv(target, list(called), options.priority, options.days))
                     + "  # then wait until they are readable")
    if exists:
        lines.append(proc.render(zfs.unmount_argv(target)))
    for position in range(received, len(chain)):
        m = chain[position]
        downloads = [proc.render(rclone.cat_argv(catalog.path(v.object))) for v in m.parts]
        source = downloads[0] if len(downloads) == 1 else "( " + " && ".join(downloads) + " )"
        steps = [proc.render(get_codec(m.compressor).decompress_argv)] if m.compressor != NO_COMPRESSION else []
        receive = proc.render(zfs.receive_argv(target, force=force or position > 0,
                                               unmounted=capabilities.zfs_tools().receive_unmounted,
                                               properties=props.at_receive(m)))
        lines.append(" | ".join([source, *steps, receive]))
        if position == 0 and len(chain) > 1:
            lines.append(proc.render(zfs.set_property_argv(target, RESTORE_PROPERTY, INCOMPLETE))
                         + "  # unfinished until the last backup is received")
            lines.append(proc.render(zfs.unmount_argv(target)) + "  # if receiving mounted it")
    lines.append(proc.render(zfs.inherit_property_argv(target, RESTORE_PROPERTY)) + "  # the restore is complete")
    if not props.at_receive(chain[-1]):
        lines += [proc.render(zfs.set_property_argv(target, name, value)) + "  # as the backup recorded it"
                  for name, value in sorted(props.wanted(chain[-1]).items())]
    lines.append(proc.render(zfs.mount_argv(target)) + "  # if not mounted (as root; a raw backup: after zfs "
                                                         "load-key)")
    return lines
