"""Which of a dataset's own properties a restore sets again. Each backup records the properties set on the
dataset itself (`zfs get -s local,received`: compression, recordsize, atime, xattr, acltype, quotas,
user properties...) in its manifest; without them a restored dataset would get the pool's defaults
(POSIX ACLs silently not enforced, quotas gone). Pure functions.

Not set again: `mountpoint` unless asked (--keep-mountpoint), so that a restore never mounts over the
live dataset; what zfs takes only when a dataset is created or keyed (volsize, volblocksize, the
encryption properties: a raw backup brings its own); and zfsglacier's own marks.
"""

from __future__ import annotations

from collections.abc import Mapping

OWN_PREFIX = "org.zfsglacier:"
MOUNTPOINT = "mountpoint"
NEVER_SET = frozenset({"volsize", "volblocksize", "encryption", "keyformat", "keylocation", "pbkdf2iters",
                       "pbkdf2salt", "encryptionroot", "keystatus"})


def recorded(found: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """What a backup records of the dataset's own properties: all but zfsglacier's marks."""
    return tuple(sorted((name, value) for name, value in found.items() if not name.startswith(OWN_PREFIX)))


def to_restore(properties: Mapping[str, str], *, keep_mountpoint: bool) -> dict[str, str]:
    return {name: value for name, value in properties.items()
            if name not in NEVER_SET and not name.startswith(OWN_PREFIX)
            and (keep_mountpoint or name != MOUNTPOINT)}


def left_out(properties: Mapping[str, str], *, keep_mountpoint: bool) -> dict[str, str]:
    restored = to_restore(properties, keep_mountpoint=keep_mountpoint)
    return {name: value for name, value in properties.items() if name not in restored}
