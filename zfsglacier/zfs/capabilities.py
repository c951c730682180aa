"""What the installed zfs can do, learnt from the tools themselves, never from version strings.

`zfs` run without arguments prints the usage of every subcommand it has, with the flags each one
takes; zfs-fuse (pool version 23) lists `send [-RDp]`, OpenZFS 2.1 `send [-DnPpRvLecwhb]` and
`receive -A`. Pool features (bookmarks, encryption) come from `zpool get`. This module is the one
place that knows; everything else asks it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from zfsglacier import proc
from zfsglacier.errors import ZfsError
from zfsglacier.zfs.cmd import ZFS

ZPOOL = "zpool"

_COMMAND_LINE = re.compile(r"^\t(?P<names>[a-z][a-z|-]*)(?P<rest>.*)$")
_FLAG_GROUP = re.compile(r"\[-([A-Za-z]+)\]")
_BARE_FLAG = re.compile(r"(?:^|[\s\[|])-([A-Za-z])(?=[\s\]|]|$)")


def parse_usage(text: str) -> dict[str, frozenset[str]]:
    """zfs's usage text -> each subcommand (and its aliases) with every one-letter flag its lines list."""
    commands: dict[str, set[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        match = _COMMAND_LINE.match(line)
        if match is not None:
            current = match["names"].split("|")
            rest = match["rest"]
        elif line.startswith("\t ") and current:  # a usage line continued
            rest = line
        else:
            current = []
            continue
        flags = {letter for group in _FLAG_GROUP.findall(rest) for letter in group}
        flags |= set(_BARE_FLAG.findall(rest))
        for name in current:
            commands.setdefault(name, set()).update(flags)
    return {name: frozenset(flags) for name, flags in commands.items()}


@dataclass(frozen=True)
class ZfsTools:
    commands: dict[str, frozenset[str]]  # subcommand -> the flags its usage lists

    def accepts(self, command: str, flag: str) -> bool:
        return flag in self.commands.get(command, frozenset())

    @property
    def send_estimate(self) -> bool:
        """`zfs send -nP`: a dry run that prints the stream's size."""
        return self.accepts("send", "n") and self.accepts("send", "P")

    @property
    def large_blocks(self) -> bool:
        return self.accepts("send", "L")

    @property
    def embedded_data(self) -> bool:
        return self.accepts("send", "e")

    @property
    def compressed_send(self) -> bool:
        return self.accepts("send", "c")

    @property
    def raw_send(self) -> bool:
        return self.accepts("send", "w")

    @property
    def resumable_receive(self) -> bool:
        """`zfs receive -s` keeps a cut-off stream's state, `zfs receive -A` drops it."""
        return self.accepts("receive", "s") and self.accepts("receive", "A")

    @property
    def receive_properties(self) -> bool:
        """`zfs receive -o property=value`: set properties as the dataset is received (OpenZFS)."""
        return self.accepts("receive", "o")

    @property
    def receive_unmounted(self) -> bool:
        """`zfs receive -u`: receive without mounting (zfs-fuse mounts every received filesystem)."""
        return self.accepts("receive", "u")

    @property
    def bookmarks(self) -> bool:
        return "bookmark" in self.commands

    @property
    def holds(self) -> bool:
        return "hold" in self.commands and "release" in self.commands

    @property
    def parsable_list(self) -> bool:
        """`zfs list -p` (zfs-fuse has only `zfs get -p`)."""
        return self.accepts("list", "p")

    def describe(self) -> str:
        found = [name for name in ("send_estimate", "large_blocks", "embedded_data", "compressed_send",
                                   "raw_send", "resumable_receive", "receive_unmounted", "receive_properties",
                                   "bookmarks", "holds", "parsable_list")
                 if getattr(self, name)]
        return ", ".join(found) or "none of the optional features"


def send_options(tools: ZfsTools) -> list[str]:
    """Stream flags every backup uses where zfs has them: -L keeps records over 128 KiB whole instead
    of splitting them, -e sends blocks embedded in their block pointers as they are (smaller)."""
    return [flag for flag, supported in (("-L", tools.large_blocks), ("-e", tools.embedded_data)) if supported]


@functools.cache
def zfs_tools() -> ZfsTools:
    """Asked of the installed zfs once per process."""
    result = proc.run("zfs", [ZFS], error=ZfsError, check=False)
    commands = parse_usage(result.stderr + "\n" + result.stdout.decode("utf-8", "replace"))
    if "send" not in commands or "receive" not in commands:
        raise ZfsError("zfs", "cannot tell what this zfs supports: its usage lists no send and receive",
                       result.stderr)
    return ZfsTools(commands)


_PROPERTY_ROW = re.compile(r"^\t(?P<name>[a-z][a-z0-9_]*)\s+(?P<edit>YES|NO)\s+(?P<inherit>YES|NO|-)\s")


def parse_property_table(text: str) -> frozenset[str]:
    """The properties `zfs get`'s usage lists as editable (EDIT YES): those a restore may set."""
    return frozenset(m["name"] for line in text.splitlines() if (m := _PROPERTY_ROW.match(line)) and m["edit"] == "YES")


@functools.cache
def settable_properties() -> frozenset[str]:
    """The native properties this zfs can set, filesystems' and volumes' alike (`zfs get` without
    arguments prints the table); asked once per process."""
    result = proc.run("zfs get", [ZFS, "get"], error=ZfsError, check=False)
    return parse_property_table(result.stderr + "\n" + result.stdout.decode("utf-8", "replace"))


def pool_has_feature(pool: str, feature: str) -> bool:
    """A pool feature (`bookmarks`, `encryption`...) that is enabled or active. Pools without feature
    flags (zfs-fuse, pool version 23) have none."""
    argv = [ZPOOL, "get", "-H", "-o", "value", f"feature@{feature}", pool]
    result = proc.run("zpool get", argv, error=ZfsError, check=False)
    return result.returncode == 0 and result.stdout.decode().strip() in ("enabled", "active")


def dataset_is_encrypted(dataset: str) -> bool:
    """Natively encrypted (OpenZFS); zfs without encryption has no such property: not encrypted."""
    argv = [ZFS, "get", "-H", "-o", "value", "encryption", dataset]
    result = proc.run("zfs get", argv, error=ZfsError, check=False)
    return result.returncode == 0 and result.stdout.decode().strip() not in ("off", "-", "")
