from pathlib import Path

import pytest
from config_text import render, with_value

from zfsglacier.codec.registry import CODECS, default_threads
from zfsglacier.config import BackupConfig, VerifyPolicy, load_config, parse_config
from zfsglacier.errors import EXIT_USAGE, ConfigError

LEGACY = """\
[zfs]
dataset = pool/data
snapshot_prefix = glacier-backup-
snapshot_retention = 7
[rclone]
remote = s3-backup
bucket_name = s3-backup-bucket
config_path = {rclone_conf}
[compression]
compressor = pigz
"""


@pytest.fixture
def rclone_conf(tmp_path: Path) -> Path:
    path = tmp_path / "rclone.conf"
    path.write_text("[s3-backup]\ntype = local\n")
    return path


def legacy(rclone_conf: Path) -> str:
    return LEGACY.format(rclone_conf=rclone_conf)


def test_the_legacy_file_parses_unchanged(rclone_conf: Path) -> None:
    cfg = parse_config(legacy(rclone_conf))
    assert cfg == BackupConfig(
        dataset="pool/data",
        snapshot_prefix="glacier-backup-",
        snapshot_retention=7,
        remote="s3-backup",
        bucket_name="s3-backup-bucket",
        rclone_config=rclone_conf,
        compressor="pigz",
        level=CODECS["pigz"].default_level,
        threads=default_threads(),
    )
    assert cfg.remote_dir == "s3-backup:s3-backup-bucket/pool/data"


def test_config_is_frozen(rclone_conf: Path) -> None:
    cfg = parse_config(legacy(rclone_conf))
    with pytest.raises(AttributeError):
        cfg.dataset = "other/data"  # type: ignore[misc]


def test_defaults_for_optional_keys() -> None:
    cfg = parse_config("[zfs]\ndataset = tank/a\n[rclone]\nremote = r\nbucket_name = b\n")
    assert (cfg.snapshot_prefix, cfg.snapshot_retention, cfg.compressor) == ("glacier-backup-", 7, "zstd")
    assert cfg.level == CODECS["zstd"].default_level
    assert cfg.rclone_config is None
    assert cfg.threads >= 1


@pytest.mark.parametrize("compressor", sorted(CODECS))
def test_every_codec_is_a_valid_compressor(compressor: str) -> None:
    text = f"[zfs]\ndataset = t/a\n[rclone]\nremote = r\nbucket_name = b\n[compression]\ncompressor = {compressor}\n"
    assert parse_config(text).compressor == compressor


def test_send_options_default_to_raw_for_encrypted_and_no_compressed_send() -> None:
    cfg = parse_config(render(BASE))
    assert (cfg.send_raw, cfg.send_compressed) == (True, False)
    cfg = parse_config(render({**BASE, "zfs": {"dataset": "tank/a", "send_raw": "no", "send_compressed": "Yes"}}))
    assert (cfg.send_raw, cfg.send_compressed) == (False, True)


def test_level_and_threads() -> None:
    text = ("[zfs]\ndataset = t/a\n[rclone]\nremote = r\nbucket_name = b\n"
            "[compression]\ncompressor = zstd\nlevel = 9\nthreads = 3\n")
    cfg = parse_config(text)
    assert (cfg.level, cfg.threads) == (9, 3)


def test_remote_with_trailing_colon_is_accepted() -> None:
    assert parse_config("[zfs]\ndataset = t/a\n[rclone]\nremote = r:\nbucket_name = b\n").remote == "r"


BASE = {"zfs": {"dataset": "tank/a"}, "rclone": {"remote": "r", "bucket_name": "b"}}


def with_key(section: str, key: str, value: str) -> str:
    return with_value(section, key, value, BASE)


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("zfs", "dataset", "tank/a@snap", "[zfs] dataset = 'tank/a@snap'"),
        ("zfs", "dataset", "-rf", "[zfs] dataset = '-rf'"),
        ("zfs", "dataset", "tank/$(reboot)", "[zfs] dataset = 'tank/$(reboot)'"),
        ("zfs", "dataset", "tank//a", "[zfs] dataset = 'tank//a'"),
        ("zfs", "snapshot_prefix", "a;b", "[zfs] snapshot_prefix = 'a;b'"),
        ("zfs", "snapshot_prefix", "x" * 65, "[zfs] snapshot_prefix"),
        ("zfs", "snapshot_retention", "seven", "[zfs] snapshot_retention = 'seven'"),
        ("zfs", "snapshot_retention", "-1", "[zfs] snapshot_retention = '-1'"),
        ("rclone", "remote", "--config=/etc/passwd", "[rclone] remote = '--config=/etc/passwd'"),
        ("rclone", "bucket_name", "-v", "[rclone] bucket_name = '-v'"),
        ("rclone", "bucket_name", "b/../etc", "[rclone] bucket_name = 'b/../etc'"),
        ("rclone", "config_path", "/nonexistent/rclone.conf", "[rclone] config_path = '/nonexistent/rclone.conf'"),
        ("compression", "compressor", "xz", "[compression] compressor = 'xz'"),
        ("compression", "level", "high", "[compression] level = 'high'"),
        ("compression", "level", "22", "[compression] level = '22'"),
        ("compression", "threads", "0", "[compression] threads = '0'"),
        ("zfs", "send_raw", "maybe", "[zfs] send_raw = 'maybe': expected yes or no"),
        ("zfs", "send_compressed", "2", "[zfs] send_compressed = '2': expected yes or no"),
    ],
)
def test_bad_values_name_section_key_and_value(section: str, key: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(with_key(section, key, value))
    assert expected in str(info.value)
    assert info.value.exit_code == EXIT_USAGE


def test_level_range_follows_the_compressor() -> None:
    with pytest.raises(ConfigError, match=r"\[compression\] level = '6': compressor pigz takes levels 0 to 3"):
        parse_config(render({**BASE, "compression": {"compressor": "pigz", "level": "6"}}))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (render({**BASE, "zfs": {"dataset": "t/a", "snapshot_retension": "3"}}),
         "unknown key [zfs] snapshot_retension"),
        (render({**BASE, "compresion": {"compressor": "zstd"}}), "unknown section [compresion]"),
        ("[rclone]\nremote = r\nbucket_name = b\n", "missing required key [zfs] dataset"),
        (render(BASE) + "[zfs]\ndataset = t/b\n", "section 'zfs' already exists"),
        ("[zfs]\ndataset = t/a\ndataset = t/b\n", "option 'dataset' in section 'zfs' already exists"),
        ("dataset = t/a\n", "File contains no section headers"),
    ],
)
def test_structural_errors(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="cfg.ini")
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.ini")
    empty = tmp_path / "empty.ini"
    empty.write_text("  \n")
    with pytest.raises(ConfigError, match="is empty"):
        load_config(empty)
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)
    binary = tmp_path / "binary.ini"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(binary)


def test_verify_takes_deep_and_a_scratch_pool() -> None:
    from config_text import MINIMAL as SECTIONS
    from config_text import render
    policy = parse_config(render({**SECTIONS, "verify": {"deep": "yes", "scratch_pool": "scratch"}})).verify
    assert (policy.deep, policy.scratch_pool) == (True, "scratch")
    assert parse_config(render(SECTIONS)).verify == VerifyPolicy(False, None)
    with pytest.raises(ConfigError, match=r"\[verify\] scratch_pool = 'tank/x': expected a pool's name"):
        parse_config(render({**SECTIONS, "verify": {"scratch_pool": "tank/x"}}))


def test_a_drill_record_reads_back_and_refuses_what_a_drill_never_writes() -> None:
    from zfsglacier.remote.drill_record import DrillRecord
    record = DrillRecord("2026-12-06T03:00:00+00:00", True, "2026-12-06T03:00:00+00:00", "s", True, 2, 0, 10, 1.5)
    assert DrillRecord.from_json(record.to_json()) == record
    for bad in (b"{", b'{"format": "zfsglacier-drill", "version": 1}', record.to_json().replace(b"true", b'"yes"', 1)):
        with pytest.raises(ValueError):
            DrillRecord.from_json(bad)
