"""How each value of config.ini is read: one parser per kind of value, `(where, text) -> value`, each
raising a ConfigError that names `[section] key` (`where`) and the value. The schema that says which
key takes which parser is config.py. Over 300 lines: one parser for each kind of value of 30 keys, each
with the message that says what was expected."""

from __future__ import annotations

import getpass
import os
import pwd
import re
import shlex
from pathlib import Path

from zfsglacier import names
from zfsglacier.codec.registry import CODECS, default_threads
from zfsglacier.errors import ConfigError

# Leaves room for the timestamp and a collision counter within ZFS's 255-character names.
MAX_PREFIX_LENGTH = 64
MAX_RESTORE_STREAMS = 64
MAX_MONITORING_AGE = 3650 * 86400  # ten years: anything longer is a typo
_DURATION = re.compile(r"(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>s|m|h|d)?")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def bad(where: str, value: str, why: str) -> ConfigError:
    return ConfigError(f"{where} = {value!r}: {why}")


def datasets(where: str, value: str) -> tuple[str, ...]:
    """One dataset, or several, one per line (continuation lines indented, as INI lists go)."""
    found = [line.strip() for line in value.splitlines() if line.strip()]
    if not found:
        raise bad(where, value, "dataset name is empty")
    for name in found:
        problem = names.dataset_problem(name)
        if problem:
            raise bad(where, name, f"dataset name {problem}")
    repeated = sorted({name for name in found if found.count(name) > 1})
    if repeated:
        raise bad(where, repeated[0], "listed more than once")
    return tuple(found)


def pool(where: str, value: str) -> str | None:
    if value == "":
        return None
    problem = names.dataset_problem(value)
    if problem or "/" in value:
        raise bad(where, value, f"a pool name {problem}" if problem else "expected a pool's name, not a dataset's")
    return value


def prefix(where: str, value: str) -> str:
    problem = names.snapshot_component_problem(value)
    if problem:
        raise bad(where, value, f"snapshot prefix {problem}")
    if len(value) > MAX_PREFIX_LENGTH:
        raise bad(where, value, f"snapshot prefix is longer than {MAX_PREFIX_LENGTH} characters")
    return value


def whole_number(where: str, value: str, minimum: int, expected: str) -> int:
    try:
        number = int(value, 10)
    except ValueError:
        raise bad(where, value, expected) from None
    if number < minimum:
        raise bad(where, value, expected)
    return number


def whole_number_to(where: str, value: str, minimum: int, maximum: int, of_what: str) -> int:
    expected = f"expected a whole number of {of_what}, {minimum} to {maximum}"
    number = whole_number(where, value, minimum, expected)
    if number > maximum:
        raise bad(where, value, expected)
    return number


def non_negative_int(where: str, value: str) -> int:
    return whole_number(where, value, 0, "expected a whole number >= 0 (0 keeps every snapshot)")


def remote(where: str, value: str) -> str:
    value = value.removesuffix(":")
    problem = names.remote_problem(value)
    if problem:
        raise bad(where, value, problem)
    return value


def bucket(where: str, value: str) -> str:
    problem = names.remote_path_problem(value)
    if problem:
        raise bad(where, value, f"bucket/path {problem}")
    return value


def invoking_user() -> str:
    """Who ran zfsglacier: under sudo the user who invoked it (SUDO_USER), else the current user."""
    sudo_user = os.environ.get("SUDO_USER", "")
    if sudo_user and sudo_user != "root":
        return sudo_user
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return getpass.getuser()


_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def expand_path(where: str, value: str) -> Path:
    """`{user}` becomes invoking_user() (so `/home/{user}/.config/rclone/rclone.conf` finds the rclone
    config of whoever ran `sudo zfsglacier`), then `~` and `~user` expand as in a shell."""
    unknown = sorted({name for name in _PLACEHOLDER.findall(value) if name != "user"})
    if unknown:
        raise bad(where, value, f"unknown placeholder {{{unknown[0]}}} (only {{user}}: the user who ran "
                                 "zfsglacier, or who invoked sudo)")
    return Path(os.path.expanduser(value.replace("{user}", invoking_user())))


def config_path(where: str, value: str) -> Path | None:
    if value == "":
        return None
    path = expand_path(where, value)
    shown = repr(value) if str(path) == value else f"{value!r} (expanded to {path})"
    if not path.is_file():
        raise ConfigError(f"{where} = {shown}: no such file (leave the key out to use rclone's default config)")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{where} = {shown}: cannot read it: {exc.strerror}") from None
    return path


_BOOLEANS = {"yes": True, "true": True, "on": True, "1": True, "no": False, "false": False, "off": False, "0": False}


def boolean(where: str, value: str) -> bool:
    try:
        return _BOOLEANS[value.lower()]
    except KeyError:
        raise bad(where, value, "expected yes or no (also true/false, on/off, 1/0)") from None


def seconds(where: str, value: str, expected: str, bare_unit: str | None, units: str = "smhd") -> float:
    """A duration: a number and one of `units` (of s, m, h, d); a bare number is in `bare_unit`, or
    refused when that is None."""
    match = _DURATION.fullmatch(value)
    unit = match["unit"] or bare_unit if match else None
    if match is None or unit is None or unit not in units:
        raise bad(where, value, expected)
    return float(match["number"]) * _UNIT_SECONDS[unit]


def stall_timeout(where: str, value: str) -> float | None:
    limit = seconds(where, value, "expected a duration such as 90s, 10m or 1h (0 waits forever)", "s", "smh")
    return None if limit == 0 else limit


# S3 storage classes (rclone's --s3-storage-class). Those below bill a 128 KiB minimum per object.
STORAGE_CLASSES = ("STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING",
                   "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE")


def storage_class(where: str, value: str) -> str | None:
    if value == "":
        return None
    if value.upper() not in STORAGE_CLASSES:
        raise bad(where, value, f"expected one of {', '.join(STORAGE_CLASSES)}")
    return value.upper()


# S3 Object Lock modes ([rclone] object_lock): GOVERNANCE can be lifted by a user with
# s3:BypassGovernanceRetention; COMPLIANCE by nobody, the account's root included, until it ends.
OBJECT_LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")


def object_lock(where: str, value: str) -> str | None:
    if value.lower() in ("", "no", "off", "none"):
        return None
    if value.upper() not in OBJECT_LOCK_MODES:
        raise bad(where, value, "expected governance, compliance, or off")
    return value.upper()


_SIZE = re.compile(r"(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[KMGT]?)(i?B)?", re.IGNORECASE)
_UNIT_BYTES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def size_in_bytes(where: str, value: str, low: int, high: int | None, expected: str) -> int:
    """A size in binary units (512M, 1G, 1.5GiB) from `low` to `high` bytes; `expected` says what is."""
    match = _SIZE.fullmatch(value)
    if match is None:
        raise bad(where, value, expected)
    size = int(float(match["number"]) * _UNIT_BYTES[match["unit"].upper()])
    if size < low or (high is not None and size > high):
        raise bad(where, value, expected)
    return size


def upload_memory(where: str, value: str) -> int:
    return size_in_bytes(where, value, 16 << 20, None, "expected a size of at least 16M, such as 512M or 2G")


def object_size(where: str, value: str) -> int | None:
    """100G; 0: one object, however long."""
    if value.strip() == "0":
        return None
    return size_in_bytes(where, value, 1 << 20, None, "expected a size of at least 1M such as 100G, or 0 (never "
                                                      "cut the stream into volumes)")


def range_size(where: str, value: str) -> int:
    return size_in_bytes(where, value, 1 << 20, 1 << 30, "expected a size from 1M to 1G, such as 16M or 64M")


def streams(where: str, value: str) -> int:
    return whole_number_to(where, value, 1, MAX_RESTORE_STREAMS, "streams")


def parts(where: str, value: str) -> int:
    return whole_number(where, value, 1, "expected a whole number of parts, at least 1")


def concurrency(where: str, value: str) -> int:
    return whole_number(where, value, 1, "expected a whole number, at least 1")


_FULL_EVERY = re.compile(r"(?P<number>\d+)\s*(?P<days>d|days?)?", re.IGNORECASE)


def full_every(where: str, value: str) -> tuple[int | None, int | None]:
    """`30d`: a new full once the chain's full is 30 days old; `14`: at most 14 backups per chain; 0: never."""
    match = _FULL_EVERY.fullmatch(value)
    if match is None:
        raise bad(where, value, "expected a number of days (30d), a number of backups per chain (14), or 0")
    number = int(match["number"])
    if number == 0:
        return None, None
    return (number, None) if match["days"] else (None, number)


_DAYS = re.compile(r"(?P<number>\d+)\s*(d|days?)", re.IGNORECASE)


def max_age(where: str, value: str) -> int | None:
    """`90d`: days; 0: no limit."""
    if value == "0":
        return None
    match = _DAYS.fullmatch(value)
    if match is None or int(match["number"]) == 0:
        raise bad(where, value, "expected a number of days such as 90d, or 0 for no limit")
    return int(match["number"])


def keep_chains(where: str, value: str) -> int | None:
    number = whole_number(where, value, 0, "expected a whole number of chains (0: no limit)")
    return number or None


# rclone's --bwlimit grammar: entries separated by spaces, each `RATE` or a timetable's `[Day-]HH:MM,RATE`;
# RATE is `UP[:DOWN]`, each `off` or a number with an optional unit (KiB/s without one).
_RATE = re.compile(r"(?P<number>\d+(?:\.\d+)?)(?P<unit>[bBkKmMgGtTpP]?)(?:iB|i)?")
_WHEN = re.compile(r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)-)?\d{1,2}:\d{2}")
_RATE_UNIT_BYTES = {"": 1 << 10, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def _bwlimit_entries(value: str) -> list[tuple[str | None, list[str]]] | None:
    """Each entry's time (None for a plain rate) and its rates, or None when `value` is not rclone's grammar."""
    entries: list[tuple[str | None, list[str]]] = []
    for entry in value.split():
        when, comma, rate = entry.rpartition(",")
        if comma and not _WHEN.fullmatch(when):
            return None
        rates = rate.split(":")
        if len(rates) > 2 or not all(r == "off" or _RATE.fullmatch(r) for r in rates):
            return None
        entries.append((when if comma else None, rates))
    return entries or None


def bwlimit(where: str, value: str) -> str | None:
    """rclone's --bwlimit: `10M`, `10M:1M` (upload:download), or a timetable `08:00,512k 19:00,off`."""
    if value in ("", "off"):
        return None
    if _bwlimit_entries(value) is None:
        raise bad(where, value, "expected an rclone --bwlimit value such as 10M, 10M:1M or '08:00,512k 19:00,off'")
    return value


def rate_bytes(rate: str) -> float | None:
    """One rate of a --bwlimit (`512k`, `1.5Mi`, `off`) in bytes per second; None for `off`."""
    match = _RATE.fullmatch(rate)
    return None if match is None else float(match["number"]) * _RATE_UNIT_BYTES[match["unit"].lower()]


def split_bwlimit(value: str | None, ways: int) -> str | None:
    """The `--bwlimit` of one of `ways` uploads that share `value`: every rate in it divided by `ways` (in
    bytes per second), `off` left as it is. `value` is a valid setting (bwlimit() accepted it)."""
    if value is None or ways == 1:
        return value
    entries = _bwlimit_entries(value)
    if entries is None:
        raise ValueError(f"not an rclone --bwlimit value: {value!r}")

    def share(rate: str) -> str:
        whole = rate_bytes(rate)
        return f"{max(1, int(whole // ways))}B" if whole else rate

    return " ".join(f"{when + ',' if when is not None else ''}{':'.join(share(r) for r in rates)}"
                    for when, rates in entries)


MAX_PARALLEL = 32


def parallel(where: str, value: str) -> int:
    return whole_number_to(where, value, 1, MAX_PARALLEL, "datasets at once")


# rclone flags zfsglacier relies on, or that would change what it reads back: an extra flag may not
# override them (each has a key of its own, or must stay as zfsglacier sets it).
FORBIDDEN_RCLONE_FLAGS = frozenset({
    "config", "dry-run", "interactive", "ask-password", "progress", "quiet", "verbose", "log-level", "log-file",
    "syslog", "use-json-log", "dump", "dump-headers", "dump-bodies", "max-transfer", "max-duration", "cutoff-mode",
    "max-size", "min-size", "max-age", "min-age", "max-depth", "include", "exclude", "filter", "include-from",
    "exclude-from", "filter-from", "files-from", "files-from-raw", "error-on-no-transfer", "bwlimit",
    "s3-storage-class", "low-level-retries", "s3-chunk-size", "s3-upload-concurrency", "s3-max-upload-parts",
    "s3-object-lock-mode", "s3-object-lock-retain-until-date", "s3-object-lock-set-after-upload", "s3-version-at",
    "s3-versions", "s3-version-deleted", "s3-bypass-governance-retention",
})
_FLAG = re.compile(r"--(?P<name>[a-z0-9][a-z0-9-]*)(=.*)?")


def extra_flags(where: str, value: str) -> tuple[str, ...]:
    try:
        words = tuple(shlex.split(value))
    except ValueError as exc:
        raise bad(where, value, f"cannot split it into flags ({exc})") from None
    for word in words:
        match = _FLAG.fullmatch(word)
        if match is None:
            raise bad(where, value, f"{word!r}: write each flag as --name or --name=value")
        if match["name"] in FORBIDDEN_RCLONE_FLAGS:
            raise bad(where, value, f"--{match['name']} is set by zfsglacier (or by a key of its own) and "
                                     "cannot be overridden")
    return words


def age_threshold(where: str, value: str) -> int:
    """`36h`, `2d`, `90m`, `1.5d`: a whole number of seconds, more than 0. A unit is required: a bare
    `36` could mean hours as well as seconds."""
    exact = seconds(where, value, "expected a duration with its unit, such as 90m, 36h or 2d (units: s, m, h, d)",
                    None)  # a long enough number is inf
    if not exact <= MAX_MONITORING_AGE:
        raise bad(where, value, f"expected at most {MAX_MONITORING_AGE // 86400}d")
    whole = round(exact)
    if whole <= 0:
        raise bad(where, value, "expected a duration longer than 0, such as 36h")
    return whole


def textfile(where: str, value: str) -> Path | None:
    """node_exporter's textfile collector reads only `*.prom` files, from one directory: a file named
    otherwise would be written and never read. Whether the directory exists is checked when the file
    is written, where a problem is a warning, not a failed backup."""
    if value == "":
        return None
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise bad(where, value, "control characters in a path")
    path = Path(value)
    if not path.is_absolute():
        raise bad(where, value, "expected an absolute path, such as "
                                 "/var/lib/prometheus/node-exporter/zfsglacier.prom")
    if value.endswith("/") or not path.name.endswith(".prom") or path.name == ".prom":
        raise bad(where, value, "expected a file named *.prom (node_exporter's textfile collector reads "
                                 "only those), such as /var/lib/prometheus/node-exporter/zfsglacier.prom")
    return path


def compressor(where: str, value: str) -> str:
    if value not in CODECS:
        raise bad(where, value, f"expected one of {', '.join(sorted(CODECS))}")
    return value


def level_text(where: str, value: str) -> str:
    return value  # checked against the compressor's range once both are known


def threads(where: str, value: str) -> int:
    if value == "auto":
        return default_threads()
    return whole_number(where, value, 1, "expected 'auto' or a whole number >= 1")
