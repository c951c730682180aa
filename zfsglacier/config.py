"""config.ini -> a frozen BackupConfig: the schema (which keys, in which sections, read how, with
which defaults) and the value types the rest of zfsglacier reads. Every value is read by a parser of
config_values.py; every message names `[section] key` and the bad value."""

from __future__ import annotations

import configparser
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zfsglacier import config_values as parsers
from zfsglacier.codec.registry import AUTO, CODECS, DEFAULT_CODEC, Level
from zfsglacier.config_values import age_threshold
from zfsglacier.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/zfsglacier/config.ini")
DEFAULT_SNAPSHOT_PREFIX = "glacier-backup-"
DEFAULT_RETENTION = 7
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
# [monitoring]: `zfsglacier status` warns when the newest backup is older than warn_after, and is
# critical past crit_after. A daily timer with its randomized delay lands within 24h + a little; 26h
# and 50h allow for that, and for one missed night before it turns critical.
DEFAULT_WARN_AFTER = "26h"
DEFAULT_CRIT_AFTER = "50h"
# A weekly drill (systemd/zfsglacier-verify.timer) with its randomized delay, and a day to spare.
DEFAULT_VERIFY_WARN_AFTER = "8d"


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

    # seconds; WARNING when the newest backup is older than this
    warn_after: int = age_threshold("[monitoring] warn_after", DEFAULT_WARN_AFTER)
    # seconds; CRITICAL when older than this (always > warn_after)
    crit_after: int = age_threshold("[monitoring] crit_after", DEFAULT_CRIT_AFTER)
    textfile: Path | None = None  # node_exporter textfile collector file (*.prom); None: none written
    # seconds; WARNING when the last successful restore drill is older than this (once one has run)
    verify_warn_after: int = age_threshold("[monitoring] verify_warn_after", DEFAULT_VERIFY_WARN_AFTER)


@dataclass(frozen=True)
class VerifyPolicy:
    """[verify]: what a restore drill (`verify --drill`, systemd/zfsglacier-verify.timer) proves."""

    deep: bool = False  # also receive the chain into a scratch dataset, destroyed after
    scratch_pool: str | None = None  # where --deep receives; None: the dataset's own pool


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
    object_lock: str | None = None  # S3 Object Lock mode of each backup's objects (policy/object_lock.py)
    bwlimit: str | None = None  # rclone --bwlimit
    extra_flags: tuple[str, ...] = ()  # more rclone flags, checked against FORBIDDEN_RCLONE_FLAGS
    max_upload_parts: int = DEFAULT_MAX_UPLOAD_PARTS  # the remote's limit on parts of one upload
    upload_concurrency: int = DEFAULT_UPLOAD_CONCURRENCY  # parts uploaded at once
    upload_memory: int = DEFAULT_UPLOAD_MEMORY  # bytes rclone may buffer for uploads, shared by those at once
    max_object_size: int | None = DEFAULT_MAX_OBJECT_SIZE  # a longer stream is cut into volumes; None: never
    parallel: int = 1  # datasets backed up at once (commands/side_by_side.py)
    datasets: tuple[str, ...] = ()  # when [zfs] dataset lists several: all of them (else empty)
    recursive: bool = False  # also every filesystem and volume below each, each its own chain
    atomic: bool = True  # with recursive: one snapshot instant for each tree (commands/backup_tree.py)
    chain: ChainPolicy = field(default_factory=ChainPolicy)
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    monitoring: MonitoringPolicy = field(default_factory=MonitoringPolicy)
    restore: RestorePolicy = field(default_factory=RestorePolicy)
    verify: VerifyPolicy = field(default_factory=VerifyPolicy)

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


_SCHEMA = (
    _Key("zfs", "dataset", parsers.datasets),
    _Key("zfs", "recursive", parsers.boolean, "no"),
    _Key("zfs", "atomic", parsers.boolean, "yes"),
    _Key("zfs", "snapshot_prefix", parsers.prefix, DEFAULT_SNAPSHOT_PREFIX),
    _Key("zfs", "snapshot_retention", parsers.non_negative_int, DEFAULT_RETENTION),
    _Key("zfs", "send_raw", parsers.boolean, "yes"),
    _Key("zfs", "send_compressed", parsers.boolean, "no"),
    _Key("rclone", "remote", parsers.remote),
    _Key("rclone", "bucket_name", parsers.bucket),
    _Key("rclone", "config_path", parsers.config_path, None),
    _Key("rclone", "stall_timeout", parsers.stall_timeout, DEFAULT_STALL_TIMEOUT),
    _Key("rclone", "storage_class", parsers.storage_class, None),
    _Key("rclone", "object_lock", parsers.object_lock, None),
    _Key("rclone", "bwlimit", parsers.bwlimit, None),
    _Key("rclone", "extra_flags", parsers.extra_flags, ()),
    _Key("rclone", "max_upload_parts", parsers.parts, DEFAULT_MAX_UPLOAD_PARTS),
    _Key("rclone", "upload_concurrency", parsers.concurrency, DEFAULT_UPLOAD_CONCURRENCY),
    _Key("rclone", "upload_memory", parsers.upload_memory, DEFAULT_UPLOAD_MEMORY),
    _Key("rclone", "max_object_size", parsers.object_size, DEFAULT_MAX_OBJECT_SIZE),
    _Key("chain", "full_every", parsers.full_every, "0"),
    _Key("chain", "differential", parsers.boolean, "no"),
    _Key("retention", "keep_chains", parsers.keep_chains, "0"),
    _Key("retention", "max_age", parsers.max_age, "0"),
    _Key("compression", "compressor", parsers.compressor, DEFAULT_CODEC),
    _Key("compression", "level", parsers.level_text, "default"),
    _Key("compression", "threads", parsers.threads, "auto"),
    _Key("restore", "streams", parsers.streams, DEFAULT_RESTORE_STREAMS),
    _Key("restore", "range_size", parsers.range_size, DEFAULT_RANGE_BYTES),
    _Key("monitoring", "warn_after", parsers.age_threshold, DEFAULT_WARN_AFTER),
    _Key("monitoring", "crit_after", parsers.age_threshold, DEFAULT_CRIT_AFTER),
    _Key("monitoring", "textfile", parsers.textfile, None),
    _Key("monitoring", "verify_warn_after", parsers.age_threshold, DEFAULT_VERIFY_WARN_AFTER),
    _Key("verify", "deep", parsers.boolean, "no"),
    _Key("verify", "scratch_pool", parsers.pool, None),
    _Key("run", "parallel", parsers.parallel, "1"),
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

    if values["object_lock"] is not None:
        _check_lock_policy(parser, values)

    codec = CODECS[values["compressor"]]
    level_raw = values.pop("level")
    level: Level
    if level_raw == "default":
        level = codec.default_level
    elif level_raw == AUTO:
        if not codec.adaptive:
            adaptive = ", ".join(sorted(c.name for c in CODECS.values() if c.adaptive))
            raise parsers.bad("[compression] level", level_raw, f"compressor {codec.name} has no adaptive level "
                                                         f"(only {adaptive})")
        level = AUTO
    else:
        where = "[compression] level"
        try:
            level = int(level_raw, 10)
        except ValueError:
            raise parsers.bad(where, level_raw, "expected a whole number, 'default' or 'auto'") from None
        if level not in codec.levels:
            lo, hi = codec.levels[0], codec.levels[-1]
            raise parsers.bad(where, level_raw, f"compressor {codec.name} takes levels {lo} to {hi}")
    return BackupConfig(
        dataset=values["dataset"][0],
        datasets=values["dataset"] if len(values["dataset"]) > 1 else (),
        recursive=values["recursive"],
        atomic=values["atomic"],
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
        object_lock=values["object_lock"],
        bwlimit=values["bwlimit"],
        extra_flags=values["extra_flags"],
        max_upload_parts=values["max_upload_parts"],
        upload_concurrency=values["upload_concurrency"],
        upload_memory=values["upload_memory"],
        max_object_size=values["max_object_size"],
        parallel=values["parallel"],
        chain=ChainPolicy(values["full_every"][0], values["full_every"][1], values["differential"]),
        retention=RetentionPolicy(values["keep_chains"], values["max_age"]),
        monitoring=MonitoringPolicy(values["warn_after"], values["crit_after"], values["textfile"],
                                    values["verify_warn_after"]),
        restore=RestorePolicy(values["streams"], values["range_size"]),
        verify=VerifyPolicy(values["deep"], values["scratch_pool"]),
    )


def _check_lock_policy(parser: configparser.ConfigParser, values: dict[str, Any]) -> None:
    """A lock's end is derived from how long a chain runs and how long retention keeps it
    (policy/object_lock.py): both must be periods of time."""
    lock = f"[rclone] object_lock = {parser.get('rclone', 'object_lock').strip()!r}"
    if values["full_every"][0] is None:
        raw = parser.get("chain", "full_every", fallback=None)
        shown = f"= {raw.strip()!r}" if raw is not None else "is not set"
        raise ConfigError(f"{lock} needs [chain] full_every as a number of days (such as 30d), and it {shown}: "
                          "each chain is locked from its full for full_every + [retention] max_age, so a chain "
                          "must end after a known time")
    if values["max_age"] is None:
        raise ConfigError(f"{lock} needs [retention] max_age (such as 90d): the lock must last as long as "
                          "retention keeps a chain, and only max_age says how long that is")


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
