"""How big a `zfs send` stream will be, for progress and its ETA. Never a reason to fail a backup.

OpenZFS answers exactly with a dry run, `zfs send -nP` (the same flags and base as the real send).
zfs-fuse has no dry run: a full stream is about the snapshot's `referenced` size; an incremental's
size cannot be told (zfs-fuse has no `written@` property), and progress then runs without an ETA.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from zfsglacier import proc
from zfsglacier.errors import ZfsError
from zfsglacier.zfs.capabilities import ZfsTools
from zfsglacier.zfs.cmd import bytes_property_argv, send_argv

log = logging.getLogger(__name__)


def estimate_argv(snapshot: str, base: str | None, options: Sequence[str]) -> list[str]:
    argv = send_argv(snapshot, base, options)
    return [argv[0], argv[1], "-n", "-P", *argv[2:]]


def parse_estimate(output: str) -> int | None:
    """The `size` line of `zfs send -nP` output (tab-separated; the last one for several streams)."""
    sizes = [line.split()[-1] for line in output.splitlines() if line.startswith("size")]
    return int(sizes[-1]) if sizes and sizes[-1].isdigit() else None


def stream_bytes(snapshot: str, base: str | None, options: Sequence[str], tools: ZfsTools) -> int | None:
    if tools.send_estimate:
        result = proc.run("zfs send -nP", estimate_argv(snapshot, base, options), error=ZfsError, check=False)
        # OpenZFS 2.1 prints the estimate on stdout, older releases on stderr.
        size = parse_estimate(result.stdout.decode("utf-8", "replace") + "\n" + result.stderr)
        if result.returncode == 0 and size is not None:
            return size
        log.debug("no estimate from zfs send -nP (exit %d): %s", result.returncode, result.stderr)
        return None
    if base is None:
        return referenced(snapshot)
    return None


def referenced(snapshot: str) -> int | None:
    """The data a snapshot refers to: about its full stream, and for upload sizing an incremental's
    stand-in where nothing better is known (an incremental rarely exceeds its snapshot)."""
    result = proc.run("zfs get", bytes_property_argv(snapshot, "referenced"), error=ZfsError, check=False)
    text = result.stdout.decode().strip()
    return int(text) if result.returncode == 0 and text.isdigit() else None
