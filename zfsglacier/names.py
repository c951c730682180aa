"""Validation of ZFS and rclone names. Pure functions: each returns None when the name is fine,
else the reason, so that callers can name the option or argument in their message."""

from __future__ import annotations

import re

# ZFS accepts letters, digits, '_', '-', '.', ':' and space in dataset and snapshot names
# (zfs_namecheck.c). Anything else would be refused by zfs anyway; refusing it here gives a clear message
# before a snapshot is made.
_ZFS_COMPONENT = re.compile(r"[A-Za-z0-9_.: -]+")
ZFS_MAX_NAME = 255

# rclone remote names: letters, digits, '_', '-', '.', '+', '@' and space; not starting with '-' or space.
_RCLONE_REMOTE = re.compile(r"[A-Za-z0-9_.+@][A-Za-z0-9_.+@ -]*")


def dataset_problem(name: str) -> str | None:
    if not name:
        return "is empty"
    if len(name) > ZFS_MAX_NAME:
        return f"is longer than {ZFS_MAX_NAME} characters"
    if "@" in name or "#" in name:
        return "must name a filesystem, not a snapshot or bookmark"
    components = name.split("/")
    if not name[0].isalpha():
        return "must start with a letter (the pool name)"
    for component in components:
        if not component:
            return "has an empty component ('//' or a trailing '/')"
        if component in (".", ".."):
            return "has a '.' or '..' component"
        if not _ZFS_COMPONENT.fullmatch(component):
            return "may contain only letters, digits and _ - . : space"
    return None


def snapshot_component_problem(name: str) -> str | None:
    """The part after '@'."""
    if not name:
        return "is empty"
    if not _ZFS_COMPONENT.fullmatch(name) or name in (".", ".."):
        return "may contain only letters, digits and _ - . : space"
    return None


def snapshot_name_problem(full_name: str) -> str | None:
    """A whole `dataset@snapshot` name: ZFS's length limit counts both parts."""
    if len(full_name) > ZFS_MAX_NAME:
        return f"is longer than {ZFS_MAX_NAME} characters"
    return None


def remote_problem(name: str) -> str | None:
    if not name:
        return "is empty"
    if not _RCLONE_REMOTE.fullmatch(name) or name.endswith(" "):
        return "must be an rclone remote name: letters, digits, _ - . + @ and space, not starting with '-'"
    return None


def remote_path_problem(path: str) -> str | None:
    if not path:
        return "is empty"
    if path.startswith("-"):
        return "must not start with '-'"
    if any(ch in path for ch in "\0\n\r"):
        return "must not contain control characters"
    if any(part in (".", "..") for part in path.strip("/").split("/")):
        return "must not contain '.' or '..' components"
    return None
