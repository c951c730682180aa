"""Running as a non-root user: which `zfs allow` permissions each command needs, and a check that
finds the missing ones before anything is changed.

`zfs allow DATASET` prints one block per dataset that carries permissions (DATASET, then its
ancestors). On DATASET itself its "Local" and "Local+Descendent" entries apply; on an ancestor its
"Descendent" and "Local+Descendent" entries apply. An entry names a user, a group or everyone, and
permissions or permission sets (`@name`, defined on that dataset or an ancestor). "Create time"
permissions only apply to datasets the user creates, so they count for nothing here.

As root nothing is checked: root needs no delegation.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from zfsglacier import proc
from zfsglacier.errors import RUN_AS_ROOT, UsageError, ZfsError
from zfsglacier.zfs.cmd import ZFS

ZFS_DEVICE = "/dev/zfs"  # OpenZFS's control device; zfs-fuse has none
_BLOCK = re.compile(r"^---- Permissions on (?P<dataset>\S+) -+$")
_SECTIONS = {
    "Permission sets:": "sets",
    "Create time permissions:": "create_time",
    "Local permissions:": "local",
    "Descendent permissions:": "descendent",
    "Local+Descendent permissions:": "local_descendent",
}


@dataclass(frozen=True)
class Grant:
    kind: str  # "user", "group" or "everyone"
    who: str  # a user or group name (or number); "" for everyone
    permissions: frozenset[str]  # permission names and @set names


@dataclass
class Block:
    """The permissions `zfs allow` shows as set on one dataset."""

    dataset: str
    sets: dict[str, frozenset[str]] = field(default_factory=dict)
    local: list[Grant] = field(default_factory=list)
    descendent: list[Grant] = field(default_factory=list)
    local_descendent: list[Grant] = field(default_factory=list)


@dataclass(frozen=True)
class Identity:
    user: str
    uid: int
    groups: frozenset[str]  # names and numbers of every group the process is in

    def matches(self, grant: Grant) -> bool:
        if grant.kind == "everyone":
            return True
        if grant.kind == "user":
            return grant.who in (self.user, str(self.uid))
        return grant.kind == "group" and grant.who in self.groups


def allow_argv(dataset: str) -> list[str]:
    return [ZFS, "allow", dataset]


def _split(permissions: str) -> frozenset[str]:
    return frozenset(p for p in permissions.split(",") if p)


def parse_allow(text: str) -> list[Block]:
    """`zfs allow DATASET`'s output -> its blocks, DATASET's first."""
    blocks: list[Block] = []
    section = ""
    for line in text.splitlines():
        header = _BLOCK.match(line.strip())
        if header:
            blocks.append(Block(header["dataset"]))
            section = ""
        elif line.strip() in _SECTIONS:
            section = _SECTIONS[line.strip()]
        elif line.startswith(("\t", " ")) and line.strip() and blocks and section:
            words = line.split()
            block = blocks[-1]
            if section == "sets" and len(words) == 2:
                block.sets[words[0]] = _split(words[1])
            elif section in ("local", "descendent", "local_descendent"):
                if words[0] == "everyone" and len(words) == 2:
                    grant = Grant("everyone", "", _split(words[1]))
                elif words[0] in ("user", "group") and len(words) == 3:
                    grant = Grant(words[0], words[1], _split(words[2]))
                else:
                    continue
                getattr(block, section).append(grant)
    return blocks


def effective(blocks: list[Block], dataset: str, identity: Identity) -> frozenset[str]:
    """The permissions `identity` holds on `dataset`, with permission sets expanded."""
    granted: set[str] = set()
    for block in blocks:
        if block.dataset == dataset:
            grants = [*block.local, *block.local_descendent]
        elif dataset.startswith(block.dataset + "/"):
            grants = [*block.descendent, *block.local_descendent]
        else:
            continue
        for grant in grants:
            if identity.matches(grant):
                granted |= grant.permissions
    return frozenset(_expand(granted, blocks))


def _expand(permissions: Iterable[str], blocks: list[Block], seen: frozenset[str] = frozenset()) -> set[str]:
    """@set names -> their permissions; a set is looked up on the dataset first, then its ancestors."""
    expanded: set[str] = set()
    for permission in permissions:
        if not permission.startswith("@"):
            expanded.add(permission)
            continue
        if permission in seen:
            continue
        definition = next((b.sets[permission] for b in blocks if permission in b.sets), frozenset())
        expanded |= _expand(definition, blocks, seen | {permission})
    return expanded


def backup_needs(*, holds: bool, bookmarks: bool) -> frozenset[str]:
    """On the dataset: snapshot (with a user property marking it unfinished), send it, and destroy
    snapshots (a failed run's, and those snapshot_retention prunes); OpenZFS wants `mount` alongside
    `destroy`. Holds keep the next incremental's base; bookmarks outlive it."""
    needed = {"snapshot", "send", "userprop", "destroy", "mount"}
    if holds:
        needed |= {"hold", "release"}
    if bookmarks:
        needed.add("bookmark")
    return frozenset(needed)


# On the target (or its parent while the target does not exist yet): receive a full into a new dataset
# (create), incrementals with -F (rollback), the unfinished-restore mark (userprop), and destroying a
# target whose full failed. The restore itself receives with -u: mounting needs root on Linux.
RESTORE_NEEDS = frozenset({"create", "mount", "receive", "rollback", "userprop", "destroy"})


def current_identity() -> Identity:
    uid = os.geteuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    groups: set[str] = set()
    for gid in {os.getegid(), *os.getgroups()}:
        groups.add(str(gid))
        with contextlib.suppress(KeyError):
            groups.add(grp.getgrgid(gid).gr_name)
    return Identity(user, uid, frozenset(groups))


def is_root() -> bool:
    return os.geteuid() == 0


def missing_message(identity: Identity, dataset: str, missing: Iterable[str], purpose: str) -> str:
    names = sorted(missing)
    return (f"user {identity.user} lacks zfs permissions on {dataset} that {purpose} needs: {', '.join(names)}; "
            f"as root, delegate them with: zfs allow -u {identity.user} {','.join(names)} {dataset}")


def require(dataset: str, needed: Callable[[], frozenset[str]], purpose: str) -> None:
    """Refuse (exit 2) when a non-root user lacks any of `needed()` on `dataset`; nothing for root.
    `needed` is asked only after zfs answered (zfs-fuse's daemon answers root only)."""
    if is_root():
        return
    identity = current_identity()
    if os.path.exists(ZFS_DEVICE) and not os.access(ZFS_DEVICE, os.R_OK | os.W_OK):
        raise UsageError(f"user {identity.user} cannot open {ZFS_DEVICE}, so zfs refuses it whatever zfs allow "
                         f"delegates: run zfsglacier as root, or give {ZFS_DEVICE} mode 0666 as OpenZFS's udev rule "
                         "(90-zfs.rules) does")
    result = proc.run("zfs allow", allow_argv(dataset), error=ZfsError, check=False)
    if result.returncode != 0:
        raise ZfsError("zfs allow", f"cannot read the permissions delegated on {dataset} as user {identity.user} "
                       f"({RUN_AS_ROOT}, or on OpenZFS as a user given permissions with zfs allow)",
                       result.stderr)
    have = effective(parse_allow(result.stdout.decode("utf-8", "replace")), dataset, identity)
    missing = needed() - have
    if missing:
        raise UsageError(missing_message(identity, dataset, missing, purpose))
