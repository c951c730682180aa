"""config.ini -> a frozen BackupConfig. Every check lives here; every message names
`[section] key` and the bad value."""

from __future__ import annotations

import configparser
import getpass
import os
import pwd
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zfsglacier import names
from zfsglacier.codec.registry import AUTO, CODECS, DEFAULT_CODEC, Level, default_threads
from zfsglacier.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/zfsglacier/config.ini")
DEFAULT_SNAPSHOT_PREFIX = "glacier-backup-"
DEFAULT_RETENTION = 7
# Leaves room for the timestamp and a collision counter within ZFS's 255-character names.
MAX_PREFIX_LENGTH = 64
# Long enough for a slow link to drain rclone's buffers, short enough that a hung remote is noticed
# on the same night.
DEFAULT_STALL_TIMEOUT = 600.0  # seconds
DEFAULT_MAX_UPLOAD_PARTS = 10_000  # S3's limit; some S3-compatible providers allow 1,000
DEFAULT_UPLOAD_CONCURRENCY = 8  # twice rclone's default: measured through the WAN model (README)
DEFAULT_UPLOAD_MEMORY = 1 << 30
DEFAULT_MAX_OBJECT_SIZE = 100 << 30
# [restore]: chosen by measurement (make bench, the WAN model): see README "Performance".
DEFAULT_RESTORE_STREAMS = 6
DEFAULT_RANGE_BYTES = 16 << 20
MAX_RESTORE_STREAMS = 64
_DURATION = re.compile(r"(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>s|m|h)?")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}
# [monitoring]: `zfsglacier status` warns when the newest backup is older than warn_after, and is
# critical past crit_after. A daily timer with its randomized delay lands within 24h + a little; 26h
# and 50h allow for that, and for one missed night before it turns critical.
DEFAULT_WARN_AFTER = "26h"
DEFAULT_CRIT_AFTER = "50h"
MAX_MONITORING_AGE = 3650 * 86400  # ten years: anything longer is a typo


@dataclass(frozen=True)
class ChainPolicy:
    """[chain]: when a new full starts, and whether incrementals are differential (policy/chain.py)."""

    full_every_days: int | None = None  # a new full once the chain's full is this old
    full_every_backups: int | None = None  # at most this many backups (the full included) per chain
    differential: bool = False

    def describe(self) -> str:
        if self.full_every_days is not None:
            return f"{self.full_every_days}d"
        return str(self.full_every_backups)


@dataclass(frozen=True)
class RetentionPolicy:
    """[retention]: which whole chains the remote keeps (policy/retention.py)."""

    keep_chains: int | None = None
    max_age_days: int | None = None

    @property
    def active(self) -> bool:
        return self.keep_chains is not None or self.max_age_days is not None


@dataclass(frozen=True)
class MonitoringPolicy:
    """[monitoring]: the age thresholds of `zfsglacier status`, and the Prometheus textfile to write."""

    warn_after: int = 26 * 3600  # seconds; WARNING when the newest backup is older than this
    crit_after: int = 50 * 3600  # seconds; CRITICAL when older than this (always > warn_after)
    textfile: Path | None = None  # node_exporter textfile collector file (*.prom); None: none written


@dataclass(frozen=True)
class RestorePolicy:
    """[restore]: how restore and verify read each stored object: `streams` ranges of `range_bytes` at once,
    each on its own connection (1: one `rclone cat` per object)."""

    streams: int = DEFAULT_RESTORE_STREAMS
    range_bytes: int = DEFAULT_RANGE_BYTES


@dataclass(frozen=True)
class BackupConfig:
    dataset: str  # the dataset this config acts on (the first of `datasets`; see datasets.for_dataset)
    snapshot_prefix: str
    snapshot_retention: int
    remote: str
    bucket_name: str
    rclone_config: Path | None
    compressor: str
    level: Level
    threads: int
    stall_timeout: float | None = DEFAULT_STALL_TIMEOUT  # seconds; None: wait forever
    send_raw: bool = True  # encrypted datasets: zfs send -w (still encrypted, never compressed)
    send_compressed: bool = False  # zfs send -c: blocks as compressed on disk
    storage_class: str | None = None  # S3 storage class of data objects (manifests stay STANDARD)
    bwlimit: str | None = None  # rclone --bwlimit
    extra_flags: tuple[str, ...] = ()  # more rclone flags, checked against FORBIDDEN_RCLONE_FLAGS
    max_upload_parts: int = DEFAULT_MAX_UPLOAD_PARTS  # the remote's limit on parts of one upload
    upload_concurrency: int = DEFAULT_UPLOAD_CONCURRENCY  # parts uploaded at once
    upload_memory: int = DEFAULT_UPLOAD_MEMORY  # bytes rclone may buffer for one upload
    max_object_size: int | None = DEFAULT_MAX_OBJECT_SIZE  # a longer stream is cut into volumes; None: never
    datasets: tuple[str, ...] = ()  # when [zfs] dataset lists several: all of them (else empty)
    recursive: bool = False  # also every filesystem and volume below each, each its own chain
    chain: ChainPolicy = field(default_factory=ChainPolicy)
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    monitoring: MonitoringPolicy = field(default_factory=MonitoringPolicy)
    restore: RestorePolicy = field(default_factory=RestorePolicy)

    @property
    def remote_dir(self) -> str:
        """The rclone path under which this dataset's objects live."""
        return f"{self.remote}:{self.bucket_name.rstrip('/')}/{self.dataset}"


_REQUIRED = object()


@dataclass(frozen=True)
class _Key:
    section: str
    key: str
    parse: Callable[[str, str], Any]  # (where, raw value) -> value
    default: Any = _REQUIRED


def _bad(where: str, value: str, why: str) -> ConfigError:
    return ConfigError(f"{where} = {value!r}: {why}")


def _datasets(where: str, value: str) -> tuple[str, ...]:
    """One dataset, or several, one per line (continuation lines indented, as INI lists go)."""
    found = [line.strip() for line in value.splitlines() if line.strip()]
    if not found:
        raise _bad(where, value, "dataset name is empty")
    for name in found:
        problem = names.dataset_problem(name)
        if problem:
            raise _bad(where, name, f"dataset name {problem}")
    repeated = sorted({name for name in found if found.count(name) > 1})
    if repeated:
        raise _bad(where, repeated[0], "listed more than once")
    return tuple(found)


def _prefix(where: str, value: str) -> str:
    problem = names.snapshot_component_problem(value)
    if problem:
        raise _bad(where, value, f"snapshot prefix {problem}")
    if len(value) > MAX_PREFIX_LENGTH:
        raise _bad(where, value, f"snapshot prefix is longer than {MAX_PREFIX_LENGTH} characters")
    return value


def _whole_number(where: str, value: str, minimum: int, expected: str) -> int:
    try:
        number = int(value, 10)
    except ValueError:
        raise _bad(where, value, expected) from None
    if number < minimum:
        raise _bad(where, value, expected)
    return number


def _non_negative_int(where: str, value: str) -> int:
    return _whole_number(where, value, 0, "expected a whole number >= 0 (0 keeps every snapshot)")


def _remote(where: str, value: str) -> str:
    value = value.removesuffix(":")
    problem = names.remote_problem(value)
    if problem:
        raise _bad(where, value, problem)
    return value


def _bucket(where: str, value: str) -> str:
    problem = names.remote_path_problem(value)
    if problem:
        raise _bad(where, value, f"bucket/path {problem}")
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
        raise _bad(where, value, f"unknown placeholder {{{unknown[0]}}} (only {{user}}: the user who ran "
                                 "zfsglacier, or who invoked sudo)")
    return Path(os.path.expanduser(value.replace("{user}", invoking_user())))


def _config_path(where: str, value: str) -> Path | None:
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


def _boolean(where: str, value: str) -> bool:
    try:
        return _BOOLEANS[value.lower()]
    except KeyError:
        raise _bad(where, value, "expected yes or no (also true/false, on/off, 1/0)") from None


def _stall_timeout(where: str, value: str) -> float | None:
    match = _DURATION.fullmatch(value)
    if match is None:
        raise _bad(where, value, "expected a duration such as 90s, 10m or 1h (0 waits forever)")
    seconds = float(match["number"]) * _UNIT_SECONDS[match["unit"] or "s"]
    return None if seconds == 0 else seconds


# S3 storage classes (rclone's --s3-storage-class). Those below bill a 128 KiB minimum per object.
STORAGE_CLASSES = ("STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING",
                   "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE")


def _storage_class(where: str, value: str) -> str | None:
    if value == "":
        return None
    if value.upper() not in STORAGE_CLASSES:
        raise _bad(where, value, f"expected one of {', '.join(STORAGE_CLASSES)}")
    return value.upper()


_SIZE = re.compile(r"(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[KMGT]?)(i?B)?", re.IGNORECASE)
_UNIT_BYTES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _bytes(where: str, value: str, low: int, high: int | None, expected: str) -> int:
    """A size in binary units (512M, 1G, 1.5GiB) from `low` to `high` bytes; `expected` says what is."""
    match = _SIZE.fullmatch(value)
    if match is None:
        raise _bad(where, value, expected)
    size = int(float(match["number"]) * _UNIT_BYTES[match["unit"].upper()])
    if size < low or (high is not None and size > high):
        raise _bad(where, value, expected)
    return size


def _size(where: str, value: str) -> int:
    return _bytes(where, value, 16 << 20, None, "expected a size of at least 16M, such as 512M or 2G")


def _object_size(where: str, value: str) -> int | None:
    """100G; 0: one object, however long."""
    if value.strip() == "0":
        return None
    return _bytes(where, value, 1 << 20, None, "expected a size of at least 1M such as 100G, or 0 (never cut the "
                                               "stream into volumes)")


def _range_size(where: str, value: str) -> int:
    return _bytes(where, value, 1 << 20, 1 << 30, "expected a size from 1M to 1G, such as 16M or 64M")


def _streams(where: str, value: str) -> int:
    expected = f"expected a whole number of streams, 1 to {MAX_RESTORE_STREAMS}"
    number = _whole_number(where, value, 1, expected)
    if number > MAX_RESTORE_STREAMS:
        raise _bad(where, value, expected)
    return number


def _parts(where: str, value: str) -> int:
    return _whole_number(where, value, 1, "expected a whole number of parts, at least 1")


def _concurrency(where: str, value: str) -> int:
    return _whole_number(where, value, 1, "expected a whole number, at least 1")


_FULL_EVERY = re.compile(r"(?P<number>\d+)\s*(?P<days>d|days?)?", re.IGNORECASE)


def _full_every(where: str, value: str) -> tuple[int | None, int | None]:
    """`30d`: a new full once the chain's full is 30 days old; `14`: at most 14 backups per chain; 0: never."""
    match = _FULL_EVERY.fullmatch(value)
    if match is None:
        raise _bad(where, value, "expected a number of days (30d), a number of backups per chain (14), or 0")
    number = int(match["number"])
    if number == 0:
        return None, None
    return (number, None) if match["days"] else (None, number)


_DAYS = re.compile(r"(?P<number>\d+)\s*(d|days?)", re.IGNORECASE)


def _max_age(where: str, value: str) -> int | None:
    """`90d`: days; 0: no limit."""
    if value == "0":
        return None
    match = _DAYS.fullmatch(value)
    if match is None or int(match["number"]) == 0:
        raise _bad(where, value, "expected a number of days such as 90d, or 0 for no limit")
    return int(match["number"])


def _keep_chains(where: str, value: str) -> int | None:
    number = _whole_number(where, value, 0, "expected a whole number of chains (0: no limit)")
    return number or None


_BWLIMIT = re.compile(r"[0-9A-Za-z.:,| -]+")


def _bwlimit(where: str, value: str) -> str | None:
    """rclone's --bwlimit: `10M`, `10M:1M` (upload:download), or a timetable `08:00,512k 19:00,off`."""
    if value in ("", "off"):
        return None
    if not _BWLIMIT.fullmatch(value) or value.startswith("-"):
        raise _bad(where, value, "expected an rclone --bwlimit value such as 10M, 10M:1M or '08:00,512k 19:00,off'")
    return value


# rclone flags zfsglacier relies on, or that would change what it reads back: an extra flag may not
# override them (each has a key of its own, or must stay as zfsglacier sets it).
FORBIDDEN_RCLONE_FLAGS = frozenset({
    "config", "dry-run", "interactive", "ask-password", "progress", "quiet", "verbose", "log-level", "log-file",
    "syslog", "use-json-log", "dump", "dump-headers", "dump-bodies", "max-transfer", "max-duration", "cutoff-mode",
    "max-size", "min-size", "max-age", "min-age", "max-depth", "include", "exclude", "filter", "include-from",
    "exclude-from", "filter-from", "files-from", "files-from-raw", "error-on-no-transfer", "bwlimit",
    "s3-storage-class", "low-level-retries", "s3-chunk-size", "s3-upload-concurrency", "s3-max-upload-parts",
})
_FLAG = re.compile(r"--(?P<name>[a-z0-9][a-z0-9-]*)(=.*)?")


def _extra_flags(where: str, value: str) -> tuple[str, ...]:
    try:
        words = tuple(shlex.split(value))
    except ValueError as exc:
        raise _bad(where, value, f"cannot split it into flags ({exc})") from None
    for word in words:
        match = _FLAG.fullmatch(word)
        if match is None:
            raise _bad(where, value, f"{word!r}: write each flag as --name or --name=value")
        if match["name"] in FORBIDDEN_RCLONE_FLAGS:
            raise _bad(where, value, f"--{match['name']} is set by zfsglacier (or by a key of its own) and "
                                     "cannot be overridden")
    return words


_AGE = re.compile(r"(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>s|m|h|d)")
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _age_threshold(where: str, value: str) -> int:
    """`36h`, `2d`, `90m`, `1.5d`: a whole number of seconds, more than 0. A unit is required: a bare
    `36` could mean hours as well as seconds."""
    match = _AGE.fullmatch(value)
    if match is None:
        raise _bad(where, value, "expected a duration with its unit, such as 90m, 36h or 2d (units: s, m, h, d)")
    exact = float(match["number"]) * _AGE_UNITS[match["unit"]]  # a long enough number is inf
    if not exact <= MAX_MONITORING_AGE:
        raise _bad(where, value, f"expected at most {MAX_MONITORING_AGE // 86400}d")
    seconds = round(exact)
    if seconds <= 0:
        raise _bad(where, value, "expected a duration longer than 0, such as 36h")
    return seconds


def _textfile(where: str, value: str) -> Path | None:
    """node_exporter's textfile collector reads only `*.prom` files, from one directory: a file named
    otherwise would be written and never read. Whether the directory exists is checked when the file
    is written, where a problem is a warning, not a failed backup."""
    if value == "":
        return None
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise _bad(where, value, "control characters in a path")
    path = Path(value)
    if not path.is_absolute():
        raise _bad(where, value, "expected an absolute path, such as "
                                 "/var/lib/prometheus/node-exporter/zfsglacier.prom")
    if value.endswith("/") or not path.name.endswith(".prom") or path.name == ".prom":
        raise _bad(where, value, "expected a file named *.prom (node_exporter's textfile collector reads "
                                 "only those), such as /var/lib/prometheus/node-exporter/zfsglacier.prom")
    return path


def _compressor(where: str, value: str) -> str:
    if value not in CODECS:
        raise _bad(where, value, f"expected one of {', '.join(sorted(CODECS))}")
    return value


def _level_text(where: str, value: str) -> str:
    return value  # checked against the compressor's range once both are known


def _threads(where: str, value: str) -> int:
    if value == "auto":
        return default_threads()
    return _whole_number(where, value, 1, "expected 'auto' or a whole number >= 1")


_SCHEMA = (
    _Key("zfs", "dataset", _datasets),
    _Key("zfs", "recursive", _boolean, "no"),
    _Key("zfs", "snapshot_prefix", _prefix, DEFAULT_SNAPSHOT_PREFIX),
    _Key("zfs", "snapshot_retention", _non_negative_int, DEFAULT_RETENTION),
    _Key("zfs", "send_raw", _boolean, "yes"),
    _Key("zfs", "send_compressed", _boolean, "no"),
    _Key("rclone", "remote", _remote),
    _Key("rclone", "bucket_name", _bucket),
    _Key("rclone", "config_path", _config_path, None),
    _Key("rclone", "stall_timeout", _stall_timeout, DEFAULT_STALL_TIMEOUT),
    _Key("rclone", "storage_class", _storage_class, None),
    _Key("rclone", "bwlimit", _bwlimit, None),
    _Key("rclone", "extra_flags", _extra_flags, ()),
    _Key("rclone", "max_upload_parts", _parts, DEFAULT_MAX_UPLOAD_PARTS),
    _Key("rclone", "upload_concurrency", _concurrency, DEFAULT_UPLOAD_CONCURRENCY),
    _Key("rclone", "upload_memory", _size, DEFAULT_UPLOAD_MEMORY),
    _Key("rclone", "max_object_size", _object_size, "100G"),
    _Key("chain", "full_every", _full_every, "0"),
    _Key("chain", "differential", _boolean, "no"),
    _Key("retention", "keep_chains", _keep_chains, "0"),
    _Key("retention", "max_age", _max_age, "0"),
    _Key("compression", "compressor", _compressor, DEFAULT_CODEC),
    _Key("compression", "level", _level_text, "default"),
    _Key("compression", "threads", _threads, "auto"),
    _Key("restore", "streams", _streams, str(DEFAULT_RESTORE_STREAMS)),
    _Key("restore", "range_size", _range_size, f"{DEFAULT_RANGE_BYTES >> 20}M"),
    _Key("monitoring", "warn_after", _age_threshold, DEFAULT_WARN_AFTER),
    _Key("monitoring", "crit_after", _age_threshold, DEFAULT_CRIT_AFTER),
    _Key("monitoring", "textfile", _textfile, None),
)

SECTIONS = tuple(dict.fromkeys(k.section for k in _SCHEMA))
KEYS = tuple((k.section, k.key) for k in _SCHEMA)  # every (section, key) a config may set


def parse_config(text: str, source: str = "<config>") -> BackupConfig:
    parser = configparser.ConfigParser(interpolation=None, strict=True, empty_lines_in_values=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    try:
        parser.read_string(text, source=source)
    except configparser.Error as exc:
        raise ConfigError(f"{source}: {_one_line(exc)}") from None

    known = {(k.section, k.key) for k in _SCHEMA}
    for section in parser.sections():
        if section not in SECTIONS:
            raise ConfigError(f"{source}: unknown section [{section}] (known: {', '.join(SECTIONS)})")
        for key in parser[section]:
            if (section, key) not in known:
                keys = ", ".join(k.key for k in _SCHEMA if k.section == section)
                raise ConfigError(f"{source}: unknown key [{section}] {key} (known in [{section}]: {keys})")

    values: dict[str, Any] = {}
    for spec in _SCHEMA:
        where = f"[{spec.section}] {spec.key}"
        raw = parser.get(spec.section, spec.key, fallback=None)
        if raw is None:
            if spec.default is _REQUIRED:
                raise ConfigError(f"{source}: missing required key {where}")
            value = spec.default if not isinstance(spec.default, str) else spec.parse(where, spec.default)
        else:
            value = spec.parse(where, raw.strip())
        values[spec.key] = value

    if values["crit_after"] <= values["warn_after"]:
        def shown(key: str, default: str) -> str:
            raw = parser.get("monitoring", key, fallback=None)
            return repr(raw.strip()) if raw is not None else f"{default!r} (the default)"
        raise ConfigError(f"[monitoring] crit_after = {shown('crit_after', DEFAULT_CRIT_AFTER)}: must be longer "
                          f"than [monitoring] warn_after = {shown('warn_after', DEFAULT_WARN_AFTER)}")

    codec = CODECS[values["compressor"]]
    level_raw = values.pop("level")
    level: Level
    if level_raw == "default":
        level = codec.default_level
    elif level_raw == AUTO:
        if not codec.adaptive:
            adaptive = ", ".join(sorted(c.name for c in CODECS.values() if c.adaptive))
            raise _bad("[compression] level", level_raw, f"compressor {codec.name} has no adaptive level "
                                                         f"(only {adaptive})")
        level = AUTO
    else:
        where = "[compression] level"
        try:
            level = int(level_raw, 10)
        except ValueError:
            raise _bad(where, level_raw, "expected a whole number, 'default' or 'auto'") from None
        if level not in codec.levels:
            lo, hi = codec.levels[0], codec.levels[-1]
            raise _bad(where, level_raw, f"compressor {codec.name} takes levels {lo} to {hi}")
    return BackupConfig(
        dataset=values["dataset"][0],
        datasets=values["dataset"] if len(values["dataset"]) > 1 else (),
        recursive=values["recursive"],
        snapshot_prefix=values["snapshot_prefix"],
        snapshot_retention=values["snapshot_retention"],
        remote=values["remote"],
        bucket_name=values["bucket_name"],
        rclone_config=values["config_path"],
        compressor=values["compressor"],
        level=level,
        threads=values["threads"],
        stall_timeout=values["stall_timeout"],
        send_raw=values["send_raw"],
        send_compressed=values["send_compressed"],
        storage_class=values["storage_class"],
        bwlimit=values["bwlimit"],
        extra_flags=values["extra_flags"],
        max_upload_parts=values["max_upload_parts"],
        upload_concurrency=values["upload_concurrency"],
        upload_memory=values["upload_memory"],
        max_object_size=values["max_object_size"],
        chain=ChainPolicy(values["full_every"][0], values["full_every"][1], values["differential"]),
        retention=RetentionPolicy(values["keep_chains"], values["max_age"]),
        monitoring=MonitoringPolicy(values["warn_after"], values["crit_after"], values["textfile"]),
        restore=RestorePolicy(values["streams"], values["range_size"]),
    )


def load_config(path: Path) -> BackupConfig:
    if path.exists() and not path.is_file() and not path.is_dir():
        # Reading a FIFO without a writer blocks forever; /dev/zero never ends.
        raise ConfigError(f"config file {path}: not a regular file (a FIFO, socket or device): give a file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path}: not found (give one with --config)") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path}: is a directory") from None
    except PermissionError:
        raise ConfigError(f"config file {path}: permission denied (run with sudo?)") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it: {exc.strerror}") from None
    if not text.strip():
        raise ConfigError(f"config file {path}: is empty (see config.ini.example)")
    return parse_config(text, source=str(path))


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
