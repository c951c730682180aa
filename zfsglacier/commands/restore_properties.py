"""The dataset properties a restore sets on its target (which ones: policy/properties.py): as each backup
is received where zfs takes `zfs receive -o` (OpenZFS), else with `zfs set` once the chain is received
(zfs-fuse; a raw backup, whose receive brings its encryption and takes no -o). What the newest backup
recorded is what the target ends with; a property an earlier backup of the chain set and the newest no
longer has is inherited again. A property this zfs does not know (a backup made by a newer zfs) is not
set, and said so; neither is one zfs refuses: the data is restored, a property is a warning."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from zfsglacier.errors import ZfsError
from zfsglacier.policy import properties
from zfsglacier.remote.manifest import Manifest
from zfsglacier.zfs import capabilities
from zfsglacier.zfs import cmd as zfs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TargetProperties:
    keep_mountpoint: bool
    known: frozenset[str]  # the native properties the zfs that receives can set
    with_receive: bool  # zfs receive takes -o

    @classmethod
    def here(cls, keep_mountpoint: bool) -> TargetProperties:
        """For the zfs of this host."""
        return cls(keep_mountpoint, capabilities.settable_properties(), capabilities.zfs_tools().receive_properties)

    def wanted(self, manifest: Manifest) -> dict[str, str]:
        """What of `manifest`'s recorded properties this zfs can set on the target."""
        chosen = properties.to_restore(manifest.property_map, keep_mountpoint=self.keep_mountpoint)
        return {name: value for name, value in chosen.items() if ":" in name or name in self.known}

    def unknown(self, manifest: Manifest) -> list[str]:
        chosen = properties.to_restore(manifest.property_map, keep_mountpoint=self.keep_mountpoint)
        return sorted(name for name in chosen if ":" not in name and name not in self.known)

    def at_receive(self, manifest: Manifest) -> dict[str, str]:
        """The -o settings of `manifest`'s receive; {} where they are set afterwards."""
        return self.wanted(manifest) if self.with_receive and not manifest.raw else {}

    def plan_lines(self, chain: list[Manifest], target: str) -> list[str]:
        newest = chain[-1]
        if newest.properties is None:
            return [f"properties: none recorded in {newest.snapshot} (made by an older zfsglacier): {target} gets "
                    "its parent's and the pool's"]
        wanted = self.wanted(newest)
        lines = [f"properties set on {target}, as {newest.snapshot} recorded them: "
                 f"{_shown(wanted) if wanted else 'none (all inherited or default)'}"]
        skipped = properties.left_out(newest.property_map, keep_mountpoint=self.keep_mountpoint)
        if skipped:
            lines.append(f"  not set: {_shown(skipped)}" + ("  (--keep-mountpoint sets mountpoint too)"
                                                             if properties.MOUNTPOINT in skipped else ""))
        if self.unknown(newest):
            lines.append(f"  not set, unknown to this zfs: {', '.join(self.unknown(newest))}")
        return lines

    def finish(self, target: str, chain: list[Manifest]) -> None:
        """After the last receive: the newest backup's properties, set where the receive did not; those only
        earlier backups set, inherited again."""
        newest = chain[-1]
        wanted = self.wanted(newest)
        if not self.at_receive(newest):
            for name, value in sorted(wanted.items()):
                _set(target, name, value)
        earlier = {name for m in chain[:-1] for name in self.at_receive(m)}
        for name in sorted(earlier - set(wanted)):
            _set(target, name, None)
        for name in self.unknown(newest):
            log.warning("%s: not set on %s: this zfs has no such property (the backup was made by another zfs)",
                        name, target)


def _set(target: str, name: str, value: str | None) -> None:
    """Set (or with None inherit) one property; a failure is a warning: the data is restored."""
    try:
        zfs.set_property(target, name, value)
    except ZfsError as exc:
        what = f"setting {name}={value}" if value is not None else f"inheriting {name} (the newest backup has none)"
        log.warning("%s on %s failed (the data is restored; set it by hand): %s", what, target, exc)


def _shown(props: Mapping[str, str]) -> str:
    return ", ".join(f"{name}={value}" for name, value in sorted(props.items()))
