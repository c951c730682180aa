"""What rclone's complaints mean, and what of them may be shown.

rclone's stderr may quote secrets (a config line it cannot parse is echoed whole), so every message
built from it passes through `redact` first. A mistake in the rclone config (unparsable file, missing
remote, unknown backend) is a configuration error, told apart from a remote failure; a read refused
because the object is in an archive tier is ObjectFrozen, whatever the listing said of its class.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from zfsglacier.errors import AccessDenied, ObjectFrozen, RemoteError

STDERR_TAIL_LINES = 20
_LOG_TIMESTAMP = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ")

# --- secrets in rclone's output --------------------------------------------------------------------

# Names of environment variables and rclone config keys whose values are secrets (or identify one).
_SECRET_NAME = re.compile(r"pass|secret|token|credential|sas_url|connection_string|(^|_)key(_|$)", re.IGNORECASE)
_NOT_SECRETS = {"true", "false"}
_MIN_SECRET_LENGTH = 4
# rclone echoes a config line it cannot parse, which may be `secret_access_key SECRET`.
_UNPARSABLE_LINE = re.compile(r"(could not parse line:).*")
_CONFIG_ENTRY = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*=\s*(.*?)\s*$")
REDACTED = "[redacted]"


def _secret_values(config_path: Path | None) -> set[str]:
    values = {value for name, value in os.environ.items() if _SECRET_NAME.search(name)}
    try:
        text = config_path.read_text(encoding="utf-8", errors="replace") if config_path else ""
    except OSError:
        text = ""
    for line in text.splitlines():
        entry = _CONFIG_ENTRY.match(line)
        if entry and _SECRET_NAME.search(entry.group(1)):
            values.add(entry.group(2))
    return {v for v in values if len(v) >= _MIN_SECRET_LENGTH and v.lower() not in _NOT_SECRETS}


def redact(text: str, config_path: Path | None) -> str:
    """`text` without any secret of the environment or the rclone config file."""
    text = _UNPARSABLE_LINE.sub(rf"\1 {REDACTED} (the line is not shown: it may hold a secret)", text)
    for secret in sorted(_secret_values(config_path), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text



def stderr_tail(stderr: str, config_path: Path | None) -> str:
    """The last lines of rclone's stderr on one line, without log timestamps or secrets."""
    lines = [_LOG_TIMESTAMP.sub("", line) for line in stderr.splitlines()]
    return redact(" | ".join(lines[-STDERR_TAIL_LINES:]), config_path)


def config_problem(stderr: str, config_name: str, remote_names: Callable[[], list[str]]) -> str | None:
    """What is wrong with the rclone config (`config_name` says which file, and why that one), going by
    rclone's complaint; None if it is not that. `remote_names` lists the config's remotes, asked only
    when a remote is missing."""
    if "Failed to load config file" in stderr:
        return (f"{config_name}: rclone cannot parse it (fix it, or recreate the remote with `rclone config`; "
                "its lines are not shown, they may hold secrets)")
    missing = re.search(r"didn't find section in config file \(\"([^\"]*)\"\)", stderr)
    if missing:
        known = remote_names()
        listed = "remotes " + ", ".join(known) if known else "no remotes"
        return (f"[rclone] remote = {missing.group(1)!r}: no such remote in {config_name}, which has {listed} "
                "(create it with `rclone config`, or fix [rclone] remote)")
    unknown = re.search(r"didn't find backend called \"([^\"]*)\"", stderr)
    if unknown:
        return (f"[rclone] remote: its type {unknown.group(1)!r} in {config_name} is not a backend this rclone "
                "knows (`rclone help backends` lists them; fix it with `rclone config`)")
    return None


# How S3 (through rclone) refuses to read an object of an archive tier that is not thawed: rclone's own
# "Object in GLACIER, restore first" when it knows the tier, else the S3 error code.
_FROZEN_SIGNS = ("restore first", "InvalidObjectState")


def says_frozen(stderr: str) -> bool:
    return any(sign in stderr for sign in _FROZEN_SIGNS)


# How S3 (through rclone) refuses a request the credential may not make: the S3 error code, or the
# status of an answer without a body (a HEAD, or a DELETE some providers answer bare).
_DENIED_SIGNS = ("AccessDenied", "StatusCode: 403")


def says_denied(stderr: str) -> bool:
    return any(sign in stderr for sign in _DENIED_SIGNS)


def read_error(stage: str, detail: str, stderr_tail: str = "") -> RemoteError:
    """The error for a failed rclone call: ObjectFrozen when the remote refused to read an object that is
    in an archive tier, whatever the listing or the manifest said of its storage class; AccessDenied when
    it refused for want of permission."""
    if says_frozen(stderr_tail):
        return ObjectFrozen(stage, detail, stderr_tail)
    if says_denied(stderr_tail):
        return AccessDenied(stage, detail, stderr_tail)
    return RemoteError(stage, detail, stderr_tail)
