"""[rclone] storage_class, bwlimit and extra_flags: validation, and the rclone command lines they make;
the thaw's answers and its wait loop (with a stand-in for rclone: the real one is in
tests/integration/test_cold_storage.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zfsglacier.commands.backup_volumes import data_storage_class
from zfsglacier.config import parse_config
from zfsglacier.config_values import FORBIDDEN_RCLONE_FLAGS
from zfsglacier.errors import EXIT_THAW_PENDING, EXIT_USAGE, ConfigError, RemoteError, ThawPending, UsageError
from zfsglacier.remote import thaw
from zfsglacier.remote.catalog import Catalog
from zfsglacier.remote.rclone import Rclone
from zfsglacier.remote.rclone_output import RemoteObject, parse_lsjson, parse_thaw_statuses

from .test_backup_logic import manifest

BASE = "[zfs]\ndataset = tank/a\n[rclone]\nremote = r\nbucket_name = b\n"


def rclone_keys(**keys: str):  # type: ignore[no-untyped-def]
    return parse_config(BASE + "".join(f"{key} = {value}\n" for key, value in keys.items()))


def test_defaults_leave_rclone_alone() -> None:
    cfg = rclone_keys()
    assert (cfg.storage_class, cfg.bwlimit, cfg.extra_flags) == (None, None, ())
    assert Rclone("rclone", None).rcat_argv("r:b/x") == ["rclone", "rcat", "r:b/x"]


def test_storage_class_bwlimit_and_extra_flags_reach_rclone() -> None:
    cfg = rclone_keys(storage_class="deep_archive", bwlimit="08:00,512k 19:00,off",
                      extra_flags="--tpslimit=8 --retries=5 '--user-agent=nas backup'")
    assert cfg.storage_class == "DEEP_ARCHIVE"
    assert cfg.extra_flags == ("--tpslimit=8", "--retries=5", "--user-agent=nas backup")
    rclone = Rclone("rclone", Path("/etc/rc.conf"), None, cfg.storage_class, cfg.bwlimit, cfg.extra_flags)
    base = ["rclone", "--config", "/etc/rc.conf", "--bwlimit", "08:00,512k 19:00,off", *cfg.extra_flags]
    assert rclone.rcat_argv("r:b/x", "DEEP_ARCHIVE") == [*base, "rcat", "--s3-storage-class", "DEEP_ARCHIVE", "r:b/x"]
    assert rclone.cat_argv("r:b/x") == [*base, "cat", "r:b/x"]


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("storage_class", "ICE", "[rclone] storage_class = 'ICE': expected one of STANDARD, "),
    ("bwlimit", "--config=/x", "[rclone] bwlimit = '--config=/x': expected an rclone --bwlimit value"),
    ("bwlimit", "10M;reboot", "[rclone] bwlimit = '10M;reboot'"),
    ("extra_flags", "--config=/tmp/other.conf", "--config is set by zfsglacier"),
    ("extra_flags", "--dry-run", "--dry-run is set by zfsglacier"),
    ("extra_flags", "--s3-storage-class=GLACIER", "--s3-storage-class is set by zfsglacier"),
    ("extra_flags", "-v", "'-v': write each flag as --name or --name=value"),
    ("extra_flags", "--transfers 8", "'8': write each flag as --name or --name=value"),
    ("extra_flags", "--user-agent='unclosed", "cannot split it into flags"),
])
def test_bad_values_name_the_key(key: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        rclone_keys(**{key: value})
    assert f"[rclone] {key} = " in str(info.value) and expected in str(info.value)
    assert info.value.exit_code == EXIT_USAGE


def test_every_forbidden_flag_is_refused_with_or_without_a_value() -> None:
    for name in sorted(FORBIDDEN_RCLONE_FLAGS):
        for flag in (f"--{name}", f"--{name}=1"):
            with pytest.raises(ConfigError, match=f"--{name} is set by zfsglacier"):
                rclone_keys(extra_flags=flag)


def test_manifests_stay_readable_at_once_when_data_goes_cold() -> None:
    cold = Rclone("rclone", None, None, "DEEP_ARCHIVE")
    assert cold.rcat_argv("r:b/x.manifest.json", "STANDARD")[-3:] == ["--s3-storage-class", "STANDARD",
                                                                     "r:b/x.manifest.json"]


def test_small_streams_stay_out_of_classes_with_a_minimum_billed_size() -> None:
    assert data_storage_class("STANDARD_IA", 4096) is None
    assert data_storage_class("STANDARD_IA", 128 * 1024) == "STANDARD_IA"
    assert data_storage_class("STANDARD_IA", None) == "STANDARD_IA"  # unknown size (zfs-fuse incremental)
    assert data_storage_class("DEEP_ARCHIVE", 4096) == "DEEP_ARCHIVE"  # no 128 KiB minimum there
    assert data_storage_class(None, 4096) is None


def test_the_listing_carries_each_object_storage_class() -> None:
    listed = parse_lsjson(b'[{"Name":"a","Size":3,"Tier":"DEEP_ARCHIVE"},{"Name":"b","Size":1},'
                          b'{"Name":"d","Size":0,"IsDir":true}]')
    assert listed == [RemoteObject("a", 3, "DEEP_ARCHIVE"), RemoteObject("b", 1, None)]


def test_thaw_argv_names_exactly_the_objects() -> None:
    argv = Rclone("rclone", None).thaw_argv("r:b/tank/a", ["s2.incr.zfs.zst", "s[1].full.zfs.zst"], "Bulk", 3)
    assert argv == ["rclone", "backend", "restore", "--include", "/s2.incr.zfs.zst", "--include",
                    "/s\\[1\\].full.zfs.zst", "-o", "priority=Bulk", "-o", "lifetime=3", "r:b/tank/a"]
    assert parse_thaw_statuses(b'[{"Status":"OK","Remote":"tank/a/s1.full.zfs.zst"}]') == {"s1.full.zfs.zst": "OK"}
    with pytest.raises(RemoteError, match="unexpected output"):
        parse_thaw_statuses(b"{}")


class FakeRemote:
    """Answers like rclone would: readable after `thaws_after` probes of an object once it was requested."""

    def __init__(self, statuses: dict[str, str], thaws_after: int = 2) -> None:
        self.statuses = statuses
        self.thaws_after = thaws_after
        self.probes: dict[str, int] = {}
        self.requested: list[str] = []

    def request_thaw(self, directory: str, names: list[str], priority: str, days: int) -> dict[str, str]:
        self.requested += names
        return {name: self.statuses.get(name, "OK") for name in names}

    def readable_now(self, path: str) -> bool:
        name = path.rpartition("/")[2]
        self.probes[name] = self.probes.get(name, 0) + 1
        return name in self.requested and self.probes[name] >= self.thaws_after


def frozen(*names: str, tier: str = "DEEP_ARCHIVE") -> list[thaw.Frozen]:
    return [thaw.Frozen(manifest(name, str(i), i).parts[0], tier) for i, name in enumerate(names)]


def catalog() -> Catalog:
    return Catalog("r:b/t/a", [], {}, [], [])


def test_without_wait_a_thaw_is_requested_and_the_restore_stops_with_its_own_code() -> None:
    remote = FakeRemote({"s2.x": "RestoreAlreadyInProgress: Object restore is already in progress"})
    with pytest.raises(ThawPending) as info:
        thaw.thaw(remote, catalog(), frozen("s1", "s2"), thaw.ThawOptions("Bulk", 3))  # type: ignore[arg-type]
    assert remote.requested == ["s1.x", "s2.x"]
    assert str(info.value).startswith("thaw requested for 1 object(s), 1 object(s) already thawing in r:b/t/a "
                                      "(priority Bulk: up to 48 hours); run the same restore again")
    assert info.value.exit_code == EXIT_THAW_PENDING


def test_with_wait_it_polls_with_a_growing_interval_until_all_are_readable() -> None:
    remote = FakeRemote({}, thaws_after=3)
    slept: list[float] = []
    thaw.thaw(remote, catalog(), frozen("s1", "s2", tier="GLACIER"), thaw.ThawOptions("Standard", 7, wait=True),  # type: ignore[arg-type]
              sleep=slept.append)
    assert slept == [thaw.FIRST_POLL_SECONDS, thaw.FIRST_POLL_SECONDS * 2]
    assert remote.probes == {"s1.x": 3, "s2.x": 3}


def test_a_refused_thaw_is_a_remote_error_naming_the_object() -> None:
    remote = FakeRemote({"s1.x": "AccessDenied"})
    with pytest.raises(RemoteError, match=r"the thaw of r:b/t/a/s1.x was refused: AccessDenied"):
        thaw.thaw(remote, catalog(), frozen("s1"), thaw.ThawOptions(wait=True))  # type: ignore[arg-type]


def test_expedited_is_refused_for_deep_archive_before_anything_is_asked() -> None:
    remote = FakeRemote({})
    with pytest.raises(UsageError, match="Deep Archive objects thaw only with Standard"):
        thaw.thaw(remote, catalog(), frozen("s1"), thaw.ThawOptions("Expedited"))  # type: ignore[arg-type]
    assert remote.requested == []
    thaw.check_priority(frozen("s1", tier="GLACIER"), "Expedited")  # 1-5 minutes on Glacier


def test_upload_parts_are_sized_to_fit_the_part_limit_with_headroom() -> None:
    from zfsglacier.stream.upload_sizing import MIB, size_upload

    small = size_upload(3 * MIB, 10_000, 4, 1 << 30)
    assert (small.chunk_bytes, small.concurrency) == (5 * MIB, 4)
    assert small.rclone_flags() == ["--s3-chunk-size", "5Mi", "--s3-upload-concurrency", "4",
                                    "--s3-max-upload-parts", "10000"]
    # rclone's default 5 MiB parts stop at 48.8 GiB; a 1 TiB stream gets parts that hold 1.5 TiB.
    big = size_upload(1 << 40, 10_000, 4, 1 << 30)
    assert big.chunk_bytes == 158 * MIB and big.largest_stream >= 1.5 * (1 << 40)
    assert (big.concurrency, big.memory_bytes) == (4, 632 * MIB)
    # A provider with 1,000 parts: bigger parts, fewer at a time to stay within the memory given.
    capped = size_upload(1 << 40, 1_000, 4, 1 << 30)
    assert capped.chunk_bytes == 1573 * MIB and capped.concurrency == 1
    assert "1 at a time" in capped.describe() and "at most 1000 parts" in capped.describe()
    unknown = size_upload(None, 10_000, 2, 1 << 30)
    assert unknown.chunk_bytes == 5 * MIB and "stream size unknown" in unknown.describe()


def test_upload_keys_parse_and_name_themselves_when_bad() -> None:
    cfg = rclone_keys(max_upload_parts="1000", upload_concurrency="8", upload_memory="512M")
    assert (cfg.max_upload_parts, cfg.upload_concurrency, cfg.upload_memory) == (1000, 8, 512 << 20)
    assert rclone_keys(upload_memory="1.5GiB").upload_memory == 3 << 29
    for key, value, expected in (("max_upload_parts", "0", "at least 1"), ("upload_memory", "lots", "512M or 2G"),
                                 ("upload_memory", "1M", "at least 16M"), ("upload_concurrency", "-2", "at least 1")):
        with pytest.raises(ConfigError, match=rf"^\[rclone\] {key} = '{value}': .*{expected}"):
            rclone_keys(**{key: value})


def test_the_remotes_of_a_plain_rclone_config_are_read_without_rclone(tmp_path: Path) -> None:
    from zfsglacier.remote.rclone_config import read_plain_config

    conf = tmp_path / "rclone.conf"
    conf.write_text("[s3-backup]\ntype = s3\nprovider = AWS\n\n[vault]\ntype=crypt\nremote = s3-backup:b/vault\n"
                    "# a comment\n[disk]\ntype = local\n")
    assert read_plain_config(conf, {}) == {"s3-backup": {"type": "s3", "provider": "AWS"},
                                           "vault": {"type": "crypt", "remote": "s3-backup:b/vault"},
                                           "disk": {"type": "local"}}
    # What only rclone resolves: remotes from the environment, an encrypted file; and a file that is not one.
    assert read_plain_config(conf, {"RCLONE_CONFIG_DISK_TYPE": "s3"}) is None
    assert read_plain_config(conf, {"RCLONE_CONFIG_PASS": "x"}) is not None
    conf.write_text("# Encrypted rclone configuration File\n\nRCLONE_ENCRYPT_V0:\nabc\n")
    assert read_plain_config(conf, {}) is None
    conf.write_text("no section header\n")
    assert read_plain_config(conf, {}) is None
    assert read_plain_config(tmp_path / "missing.conf", {}) is None


def test_remotes_without_multipart_uploads_are_not_asked_for_them(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RCLONE_CONFIG_DISK_TYPE", raising=False)
    conf = tmp_path / "rclone.conf"
    conf.write_text("[disk]\ntype = local\n[crypted]\ntype = crypt\nremote = disk:/x\n")
    rclone = Rclone("/nonexistent/rclone", conf)  # any rclone call would fail: none is made
    assert rclone.unfinished_uploads("disk:bucket/tank/a") is None
    assert rclone.abort_unfinished_uploads("disk:bucket/tank/a") == []
    assert rclone.abort_unfinished_uploads("crypted:bucket/tank/a") == []  # a crypt remote over a local one


def test_remotes_on_the_local_disk_are_told_apart_from_network_ones(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("RCLONE_CONFIG_")]:
        monkeypatch.delenv(name)
    conf = tmp_path / "rclone.conf"
    conf.write_text("[disk]\ntype = local\n[here]\ntype = alias\nremote = /srv/backups\n"
                    "[vault]\ntype = crypt\nremote = here:vault\n[s3]\ntype = s3\n[cloud]\ntype = crypt\n"
                    "remote = s3:bucket/vault\n[loop]\ntype = alias\nremote = loop:x\n[nas]\ntype = sftp\n")
    rclone = Rclone("/nonexistent/rclone", conf)
    assert [name for name in ("disk", "here", "vault", "s3", "cloud", "loop", "nas", "unknown")
            if rclone.on_local_disk(name)] == ["disk", "here", "vault"]


def test_only_multipart_uploads_to_s3_skip_the_hash_rclone_cannot_compare(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("RCLONE_CONFIG_")]:
        monkeypatch.delenv(name)
    conf = tmp_path / "rclone.conf"
    conf.write_text("[s3]\ntype = s3\n[shortcut]\ntype = alias\nremote = s3:bucket\n[disk]\ntype = local\n"
                    "[vault]\ntype = crypt\nremote = s3:bucket/vault\n")
    rclone = Rclone("/nonexistent/rclone", conf)
    assert rclone.unused_check_flags("s3", multipart=True) == ["--ignore-checksum"]
    assert rclone.unused_check_flags("shortcut", multipart=True) == ["--ignore-checksum"]
    # One part: S3's ETag is the MD5, and rclone compares it; on a local disk rclone reads the file back.
    assert rclone.unused_check_flags("s3", multipart=False) == []
    assert rclone.unused_check_flags("disk", multipart=True) == []
    assert rclone.unused_check_flags("vault", multipart=True) == []  # crypt has no hash to compute


def test_a_stream_larger_than_one_part_or_of_unknown_size_is_multipart() -> None:
    from zfsglacier.stream.upload_sizing import MIB, size_upload

    assert size_upload(None, 10_000, 4, 1 << 30).multipart
    assert size_upload(50 * MIB, 10_000, 4, 1 << 30).multipart
    assert not size_upload(4 * MIB, 10_000, 4, 1 << 30).multipart
