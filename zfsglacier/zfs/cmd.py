"""zfs: argv builders and output parsers (pure), and the few calls the tool makes (through proc).

Only commands and flags that both OpenZFS and zfs-fuse (pool version 23) accept are used:
`zfs get -Hp` instead of `zfs list -p`, full snapshot names for `send -i`. Over 300 lines: every zfs
argv is built here, so that a flag is chosen in one place.
"""

from __future__ import annotations

import re
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from zfsglacier import proc
from zfsglacier.errors import ZfsError

ZFS = "zfs"
# Marks a snapshot this tool made and has not yet committed to the remote. A snapshot that still
# carries it when no run holds the lock is a leftover of a killed run.
PENDING_PROPERTY = "org.zfsglacier:pending"
_PENDING_MARK = re.compile(r"[^\s:]*:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class Snapshot:
    name: str  # full name: dataset@snap
    guid: str  # decimal string: 64-bit guids do not survive JSON numbers
    createtxg: int
    creation: int  # seconds since the epoch
    pending: bool  # marked by a backup that has not committed it (PENDING_PROPERTY, a value we write)
    holds: int = 0  # user holds on it (zfs hold), by any tool
    foreign_mark: str | None = None  # PENDING_PROPERTY set to a value zfsglacier never writes (by hand)

    @property
    def short_name(self) -> str:
        return self.name.partition("@")[2]


@dataclass(frozen=True)
class Bookmark:
    """A snapshot's bookmark (OpenZFS): enough to send an incremental from after the snapshot is gone."""

    name: str  # full name: dataset#bookmark
    guid: str  # the guid of the snapshot it was made from
    createtxg: int

    @property
    def short_name(self) -> str:
        return self.name.partition("#")[2]


def new_pending_mark() -> str:
    """The value of PENDING_PROPERTY on a snapshot a backup makes: which host and run made it."""
    return f"{socket.gethostname()}:{uuid.uuid4()}"


def is_pending_mark(value: str) -> bool:
    """A value new_pending_mark writes. Any other is someone else's doing: never a reason to destroy."""
    return _PENDING_MARK.fullmatch(value) is not None


def snapshot_argv(name: str, pending_run: str, *, recursive: bool = False) -> list[str]:
    """`recursive` (-r): `name`'s dataset and every one below it, in one transaction group."""
    return [ZFS, "snapshot", *(["-r"] if recursive else []), "-o", f"{PENDING_PROPERTY}={pending_run}", name]


def hold_argv(tag: str, snapshot: str) -> list[str]:
    return [ZFS, "hold", tag, snapshot]


def release_argv(tag: str, snapshot: str) -> list[str]:
    return [ZFS, "release", tag, snapshot]


def clear_pending_argv(snapshot: str) -> list[str]:
    return [ZFS, "inherit", PENDING_PROPERTY, snapshot]


def get_property_argv(dataset: str, prop: str) -> list[str]:
    return [ZFS, "get", "-H", "-o", "value", prop, dataset]


def set_property_argv(dataset: str, prop: str, value: str) -> list[str]:
    return [ZFS, "set", f"{prop}={value}", dataset]


def inherit_property_argv(dataset: str, prop: str) -> list[str]:
    return [ZFS, "inherit", prop, dataset]


def destroy_snapshot_argv(snapshot: str) -> list[str]:
    if "@" not in snapshot:  # never hand a dataset name to a destroy
        raise ValueError(f"not a snapshot name: {snapshot!r}")
    return [ZFS, "destroy", snapshot]


def bookmark_argv(snapshot: str, bookmark: str) -> list[str]:
    return [ZFS, "bookmark", snapshot, bookmark]


def destroy_bookmark_argv(bookmark: str) -> list[str]:
    if "#" not in bookmark:  # never hand a dataset name to a destroy
        raise ValueError(f"not a bookmark name: {bookmark!r}")
    return [ZFS, "destroy", bookmark]


def bookmarks_argv(dataset: str) -> list[str]:
    """OpenZFS only (zfs-fuse has neither bookmarks nor `zfs list -p`)."""
    return [ZFS, "list", "-H", "-p", "-t", "bookmark", "-o", "name,guid,createtxg", "-d", "1", dataset]


def resume_token_argv(dataset: str) -> list[str]:
    return get_property_argv(dataset, "receive_resume_token")


def abort_receive_argv(dataset: str) -> list[str]:
    return [ZFS, "receive", "-A", dataset]


def send_argv(snapshot: str, base: str | None = None, options: Sequence[str] = ()) -> list[str]:
    """`options`: stream flags such as -L -e (see capabilities.send_options)."""
    argv = [ZFS, "send", *options]
    if base is not None:
        argv += ["-i", base]
    return [*argv, snapshot]


def receive_argv(target: str, *, force: bool, unmounted: bool = False,
                 properties: Mapping[str, str] | None = None) -> list[str]:
    """`unmounted` (-u, OpenZFS): leave the received filesystem unmounted; mounting needs root.
    `properties`: set on the received dataset as it is received (-o, OpenZFS)."""
    settings = [arg for name, value in sorted((properties or {}).items()) for arg in ("-o", f"{name}={value}")]
    return [ZFS, "receive", *(["-u"] if unmounted else []), *(["-F"] if force else []), *settings, target]


def local_properties_argv(dataset: str) -> list[str]:
    """The properties set on `dataset` itself (or by a receive), not inherited or defaults."""
    return [ZFS, "get", "-H", "-p", "-s", "local,received", "-o", "property,value", "all", dataset]


def parse_properties(output: str) -> dict[str, str]:
    found = {}
    for line in output.splitlines():
        name, tab, value = line.partition("\t")
        if tab:
            found[name] = value
    return found


def snapshot_props_argv(dataset: str) -> list[str]:
    # -d 1 lists the dataset, its snapshots and its direct children; the parser keeps the snapshots.
    return [ZFS, "get", "-Hp", "-d", "1", "-o", "name,property,value",
            f"guid,createtxg,creation,userrefs,{PENDING_PROPERTY}", dataset]


def destroy_dataset_argv(dataset: str) -> list[str]:
    return [ZFS, "destroy", "-r", dataset]


def mount_state_argv(dataset: str) -> list[str]:
    return [ZFS, "get", "-H", "-o", "property,value", "mounted,canmount,mountpoint", dataset]


def unmount_argv(dataset: str) -> list[str]:
    return [ZFS, "unmount", dataset]


def mount_argv(dataset: str) -> list[str]:
    return [ZFS, "mount", dataset]


def dataset_exists_argv(dataset: str) -> list[str]:
    return [ZFS, "list", "-H", "-o", "name", dataset]


def tree_argv(dataset: str) -> list[str]:
    return [ZFS, "list", "-H", "-o", "name", "-r", "-t", "filesystem,volume", dataset]


def parse_snapshots(dataset: str, output: str) -> list[Snapshot]:
    """Snapshots of `dataset` (not of its children), oldest first by creation txg."""
    props: dict[str, dict[str, str]] = {}
    for line in output.splitlines():
        fields = line.split("\t")
        if len(fields) != 3:
            continue
        name, prop, value = fields
        if name.startswith(dataset + "@"):
            props.setdefault(name, {})[prop] = value
    snapshots = []
    for name, p in props.items():
        mark = p.get(PENDING_PROPERTY, "-")
        marked = mark not in ("-", "")
        snapshots.append(Snapshot(
            name=name,
            guid=p["guid"],
            createtxg=int(p["createtxg"]),
            creation=int(p["creation"]),
            pending=marked and is_pending_mark(mark),
            holds=int(p["userrefs"]) if p.get("userrefs", "").isdigit() else 0,
            foreign_mark=mark if marked and not is_pending_mark(mark) else None,
        ))
    return sorted(snapshots, key=lambda s: s.createtxg)


def parse_bookmarks(dataset: str, output: str) -> list[Bookmark]:
    """Bookmarks of `dataset` from `zfs list -H -p -o name,guid,createtxg`, oldest first."""
    bookmarks = []
    for line in output.splitlines():
        fields = line.split("\t")
        if len(fields) == 3 and fields[0].startswith(dataset + "#") and fields[2].isdigit():
            bookmarks.append(Bookmark(fields[0], fields[1], int(fields[2])))
    return sorted(bookmarks, key=lambda b: b.createtxg)


def _is_missing(stderr: str) -> bool:
    return "dataset does not exist" in stderr


def dataset_exists(dataset: str) -> bool:
    result = proc.run("zfs list", dataset_exists_argv(dataset), error=ZfsError, check=False)
    if result.returncode == 0:
        return True
    if _is_missing(result.stderr):
        return False
    raise ZfsError("zfs list", f"exited with status {result.returncode}", result.stderr)


def _query(stage: str, argv: list[str], dataset: str) -> str:
    """The output of a zfs command about `dataset`; a missing dataset is said so."""
    result = proc.run(stage, argv, error=ZfsError, check=False)
    if result.returncode != 0:
        if _is_missing(result.stderr):
            raise ZfsError(stage, f"dataset {dataset} does not exist")
        raise ZfsError(stage, f"exited with status {result.returncode}", result.stderr)
    return result.stdout.decode("utf-8", "replace")


def list_tree(dataset: str) -> list[str]:
    """`dataset` and every filesystem and volume below it, parents first."""
    return [line for line in _query("zfs list", tree_argv(dataset), dataset).splitlines() if line]


def list_snapshots(dataset: str) -> list[Snapshot]:
    return parse_snapshots(dataset, _query("zfs get", snapshot_props_argv(dataset), dataset))


def local_properties(dataset: str) -> dict[str, str]:
    return parse_properties(_query("zfs get", local_properties_argv(dataset), dataset))


def create_snapshot(name: str, pending_run: str, *, recursive: bool = False) -> None:
    proc.run("zfs snapshot", snapshot_argv(name, pending_run, recursive=recursive), error=ZfsError, change=True)


def clear_pending(snapshot: str, why: str = "") -> None:
    proc.run("zfs inherit", clear_pending_argv(snapshot), error=ZfsError, change=True, why=why)


def get_property(dataset: str, prop: str) -> str:
    """A property's value ("-" when a user property is not set)."""
    result = proc.run("zfs get", get_property_argv(dataset, prop), error=ZfsError)
    return result.stdout.decode("utf-8", "replace").strip()


def bytes_property_argv(dataset: str, prop: str) -> list[str]:
    return [ZFS, "get", "-Hp", "-o", "value", prop, dataset]


def available_bytes(dataset: str) -> int | None:
    """What more `dataset` can hold (`available`: the pool's free space within quotas); None if unknown."""
    text = _query("zfs get", bytes_property_argv(dataset, "available"), dataset).strip()
    return int(text) if text.isdigit() else None


def set_property(dataset: str, prop: str, value: str | None) -> None:
    """Set a (user) property, or clear it with None."""
    if value is None:
        proc.run("zfs inherit", inherit_property_argv(dataset, prop), error=ZfsError, change=True)
    else:
        proc.run("zfs set", set_property_argv(dataset, prop, value), error=ZfsError, change=True)


def hold(tag: str, snapshot: str, why: str = "") -> None:
    """Place hold `tag` on a snapshot (already there is fine): it cannot be destroyed while held."""
    result = proc.run("zfs hold", hold_argv(tag, snapshot), error=ZfsError, check=False, change=True, why=why)
    if result.returncode != 0 and "tag already exists" not in result.stderr:
        raise ZfsError("zfs hold", f"exited with status {result.returncode}", result.stderr)


def release(tag: str, snapshot: str) -> None:
    """Release hold `tag` (not there is fine)."""
    result = proc.run("zfs release", release_argv(tag, snapshot), error=ZfsError, check=False, change=True)
    if result.returncode != 0 and "no such tag" not in result.stderr:
        raise ZfsError("zfs release", f"exited with status {result.returncode}", result.stderr)


def list_bookmarks(dataset: str) -> list[Bookmark]:
    result = proc.run("zfs list", bookmarks_argv(dataset), error=ZfsError)
    return parse_bookmarks(dataset, result.stdout.decode("utf-8", "replace"))


def create_bookmark(snapshot: str, bookmark: str, why: str = "") -> None:
    result = proc.run("zfs bookmark", bookmark_argv(snapshot, bookmark), error=ZfsError, check=False, change=True,
                      why=why)
    if result.returncode != 0 and "exists" not in result.stderr:  # made by an earlier, killed run
        raise ZfsError("zfs bookmark", f"exited with status {result.returncode}", result.stderr)


def destroy_bookmark(bookmark: str) -> None:
    proc.run("zfs destroy", destroy_bookmark_argv(bookmark), error=ZfsError, change=True)


def abort_partial_receive(dataset: str) -> bool:
    """Drop the state a cut-off `zfs receive -s` saved in `dataset` (OpenZFS): while it is there, every
    other receive into the dataset is refused. True when there was some."""
    token = proc.run("zfs get", resume_token_argv(dataset), error=ZfsError).stdout.decode().strip()
    if token in ("-", ""):
        return False
    proc.run("zfs receive", abort_receive_argv(dataset), error=ZfsError, change=True)
    return True


def destroy_snapshot(snapshot: str, why: str = "") -> None:
    proc.run("zfs destroy", destroy_snapshot_argv(snapshot), error=ZfsError, change=True, why=why)


def _mount_state(dataset: str) -> dict[str, str]:
    output = proc.run("zfs get", mount_state_argv(dataset), error=ZfsError).stdout.decode("utf-8", "replace")
    return dict(line.split("\t", 1) for line in output.splitlines() if "\t" in line)


def unmount_if_mounted(dataset: str) -> None:
    if _mount_state(dataset).get("mounted") == "yes":
        proc.run("zfs unmount", unmount_argv(dataset), error=ZfsError, change=True)


def mount_if_mountable(dataset: str) -> bool:
    """Mount a filesystem that is not mounted but would be at boot; True when it is mounted now."""
    state = _mount_state(dataset)
    if state.get("mounted") == "yes":
        return True
    if state.get("canmount") != "on" or state.get("mountpoint") in (None, "none", "legacy", "-"):
        return False
    proc.run("zfs mount", mount_argv(dataset), error=ZfsError, change=True)
    return True


def destroy_dataset(dataset: str, attempts: int = 10) -> None:
    """`zfs destroy -r`, retried while the dataset is busy (zfs-fuse reports busy for a moment after use)."""
    for attempt in range(attempts):
        result = proc.run("zfs destroy", destroy_dataset_argv(dataset), error=ZfsError, check=False, change=True)
        if result.returncode == 0 or _is_missing(result.stderr):
            return
        if "busy" not in result.stderr or attempt == attempts - 1:
            raise ZfsError("zfs destroy", f"exited with status {result.returncode}", result.stderr)
        time.sleep(0.5)
