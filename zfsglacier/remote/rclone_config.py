"""The rclone config as zfsglacier needs it: the remotes of a plain config file read in-process (one
rclone call fewer per run), and what a remote's options say about it: whether it is on the local disk,
whether it can keep unfinished multipart uploads, which upload check it cannot make. Pure functions over
{remote name: {option: value}}, as `rclone config dump` gives it."""

from __future__ import annotations

import configparser
from collections.abc import Mapping
from pathlib import Path

Remotes = Mapping[str, Mapping[str, str]]

_ENCRYPTED_CONFIG = "RCLONE_ENCRYPT_V0:"
# Remotes that store through another one (their option `remote`).
_WRAPPERS = frozenset({"alias", "crypt", "compress", "chunker", "hasher"})


def read_plain_config(path: Path, environ: Mapping[str, str]) -> dict[str, dict[str, str]] | None:
    """The remotes of an rclone config file, read here rather than by an rclone call, when that is all
    rclone would read: None when the file is encrypted or unparsable, or when the environment defines or
    overrides remotes (RCLONE_CONFIG_<NAME>_<KEY>), which only rclone itself resolves."""
    if any(name.startswith("RCLONE_CONFIG_") and name != "RCLONE_CONFIG_PASS" for name in environ):
        return None
    parser = configparser.ConfigParser(interpolation=None, strict=False, default_section="\0")
    try:
        text = path.read_text(encoding="utf-8")
        if _ENCRYPTED_CONFIG in text:
            return None
        parser.read_string(text)
    except (OSError, UnicodeDecodeError, configparser.Error):
        return None
    return {name: dict(parser[name]) for name in parser.sections()}


def may_keep_uploads(remotes: Remotes, directory: str) -> bool:
    """False when the remote (for a crypt remote, the one it wraps) is known to be no S3: only S3 keeps
    unfinished multipart uploads, invisible and billed, after the upload that made them died."""
    options = remotes.get(directory.partition(":")[0], {})
    if options.get("type") == "crypt":
        options = remotes.get(options.get("remote", "").partition(":")[0], {})
    return options.get("type") in (None, "s3")


def on_local_disk(remotes: Remotes, remote: str) -> bool:
    """True for a remote on this machine's filesystem: `local`, or a wrapper (alias, crypt, compress,
    chunker, hasher) of a local path or of such a remote. Reading one over several connections only
    costs CPU."""
    seen: set[str] = set()
    while remote not in seen:
        seen.add(remote)
        options = remotes.get(remote, {})
        kind, below = options.get("type"), options.get("remote", "")
        if kind == "local":
            return True
        if kind not in _WRAPPERS or not below:
            return False
        if ":" not in below:  # a path: on this machine
            return True
        remote = below.partition(":")[0]
    return False


def unused_check_flags(remotes: Remotes, remote: str, multipart: bool) -> list[str]:
    """Flags for a data upload that spare rclone a check it cannot make: rclone rcat hashes the stream
    (MD5, about 1 s of CPU per GB) to compare it with the stored object's, but an S3 object uploaded in
    parts has no MD5 to compare with (rclone logs "Dst hash empty - aborting Src hash check"). The size
    is still compared, and the manifest's own sha256 is checked on every restore and verify."""
    seen: set[str] = set()
    while remote not in seen:  # through aliases, to the remote that stores
        seen.add(remote)
        options = remotes.get(remote, {})
        if options.get("type") == "alias" and ":" in options.get("remote", ""):
            remote = options["remote"].partition(":")[0]
            continue
        return ["--ignore-checksum"] if multipart and options.get("type") == "s3" else []
    return []


def storing_type(remotes: Remotes, remote: str) -> str | None:
    """The type of the remote that stores what `remote` is given (through aliases and other wrappers): s3,
    local, drive...; None when the config does not say (a remote defined in the environment)."""
    seen: set[str] = set()
    while remote not in seen:
        seen.add(remote)
        options = remotes.get(remote)
        if options is None:
            return None
        kind, below = options.get("type"), options.get("remote", "")
        if kind not in _WRAPPERS:
            return kind
        if ":" not in below:
            return "local"
        remote = below.partition(":")[0]
    return None
