"""Which stream a backup sends and how it is stored (raw sends of encrypted datasets, -c), and the
choice of base among snapshots and bookmarks: pure functions, checked against zfs-fuse's and OpenZFS's
usage texts (tests/unit/test_capabilities.py)."""

from __future__ import annotations

import dataclasses

import pytest

from zfsglacier.commands.list_backups import as_records, as_table
from zfsglacier.config import parse_config
from zfsglacier.errors import EXIT_USAGE, UsageError
from zfsglacier.policy.local_snapshots import bookmark_name
from zfsglacier.policy.send_plan import choose_base, stream_options
from zfsglacier.zfs.capabilities import ZfsTools, parse_usage
from zfsglacier.zfs.cmd import Bookmark, abort_receive_argv, bookmarks_argv, destroy_bookmark_argv, parse_bookmarks

from .test_backup_logic import catalog, manifest, snap
from .test_capabilities import OPENZFS, ZFS_FUSE

OPEN = ZfsTools(parse_usage(OPENZFS))
FUSE = ZfsTools(parse_usage(ZFS_FUSE))
CONFIG = "[zfs]\ndataset = tank/a\n{extra}[rclone]\nremote = r\nbucket_name = b\n[compression]\ncompressor = pigz\n"


def config(extra: str = ""):  # type: ignore[no-untyped-def]
    return parse_config(CONFIG.format(extra=extra))


def test_an_encrypted_dataset_is_sent_raw_and_stored_as_sent() -> None:
    options = stream_options(config(), OPEN, encrypted=True)
    assert options.send_flags == ("-L", "-e", "-w")
    assert (options.compressor, options.level) == ("none", 0)
    assert options.note and "raw send (zfs send -w)" in options.note and "not compressed" in options.note


def test_send_raw_no_sends_an_encrypted_dataset_decrypted_and_compressed() -> None:
    options = stream_options(config("send_raw = no\n"), OPEN, encrypted=True)
    assert options.send_flags == ("-L", "-e")
    assert (options.compressor, options.note) == ("pigz", None)


def test_an_unencrypted_dataset_keeps_the_configured_compressor() -> None:
    assert stream_options(config(), OPEN, encrypted=False) == stream_options(config("send_raw = yes\n"), OPEN, False)
    assert stream_options(config(), OPEN, encrypted=False).send_flags == ("-L", "-e")
    assert stream_options(config(), FUSE, encrypted=False).send_flags == ()


def test_send_compressed_adds_c_where_zfs_has_it_and_is_refused_where_not() -> None:
    assert stream_options(config("send_compressed = yes\n"), OPEN, False).send_flags == ("-L", "-e", "-c")
    with pytest.raises(UsageError) as info:
        stream_options(config("send_compressed = yes\n"), FUSE, False)
    assert str(info.value) == "[zfs] send_compressed = yes: this zfs has no compressed send (zfs send -c)"
    assert info.value.exit_code == EXIT_USAGE


def test_raw_sends_do_not_take_c_as_well() -> None:
    # -w already sends the blocks as they are on disk, compressed and encrypted.
    assert stream_options(config("send_compressed = yes\n"), OPEN, True).send_flags == ("-L", "-e", "-w")


def raw(m):  # type: ignore[no-untyped-def]
    return dataclasses.replace(m, send_flags=("-L", "-e", "-w"), compressor="none", level=0)


def test_a_raw_chain_takes_only_raw_incrementals_and_the_reverse() -> None:
    m1 = raw(manifest("s1", "1", 1))
    local = [snap("s1", "1", 1)]
    base, why = choose_base(catalog(m1), local, raw=True)
    assert base == local[0] and why == "incremental from s1"
    base, why = choose_base(catalog(m1), local, raw=False)
    assert base is None
    assert why == ("full: the backups so far were sent raw (zfs send -w), this one is sent decrypted "
                   "([zfs] send_raw): a chain is all one or the other")
    plain = manifest("s1", "1", 1)
    base, why = choose_base(catalog(plain), local, raw=True)
    assert base is None and "sent decrypted, this one is sent raw (zfs send -w)" in why


def test_a_bookmark_is_the_base_when_its_snapshot_is_gone() -> None:
    m1 = manifest("s1", "1", 1)
    m2 = manifest("s2", "2", 2, m1)
    marks = [Bookmark("t/a#s1", "1", 1), Bookmark("t/a#s2", "2", 2)]
    base, why = choose_base(catalog(m1, m2), [snap("s1", "1", 1)], marks)
    assert base == marks[1]
    assert why == "incremental from bookmark t/a#s2 (the snapshot is gone)"


def test_a_snapshot_is_preferred_to_its_bookmark_and_a_bookmark_needs_a_committed_guid() -> None:
    m1 = manifest("s1", "1", 1)
    local = [snap("s1", "1", 1)]
    base, _ = choose_base(catalog(m1), local, [Bookmark("t/a#s1", "1", 1)])
    assert base == local[0]
    base, why = choose_base(catalog(m1), [], [Bookmark("t/a#hand-made", "77", 5)])
    assert base is None and why.startswith("full: the snapshot of the newest committed backup, s1,")


def test_bookmark_argv_and_parsing() -> None:
    assert bookmark_name("tank/a@gb-20261126T070509Z") == "tank/a#gb-20261126T070509Z"
    assert bookmarks_argv("tank/a") == ["zfs", "list", "-H", "-p", "-t", "bookmark", "-o", "name,guid,createtxg",
                                        "-d", "1", "tank/a"]
    output = "tank/a#b2\t22\t9\ntank/a/child#x\t5\t3\ntank/a#b1\t11\t4\ngarbage\n"
    assert parse_bookmarks("tank/a", output) == [Bookmark("tank/a#b1", "11", 4), Bookmark("tank/a#b2", "22", 9)]
    assert destroy_bookmark_argv("tank/a#b1") == ["zfs", "destroy", "tank/a#b1"]
    with pytest.raises(ValueError, match="not a bookmark name"):
        destroy_bookmark_argv("tank/a")
    assert abort_receive_argv("tank/r") == ["zfs", "receive", "-A", "tank/r"]


def test_list_says_a_raw_backup_is_stored_uncompressed() -> None:
    m1 = raw(manifest("s1", "1", 1))
    m2 = manifest("s2", "2", 2)
    table = as_table(catalog(m1, m2))
    assert "COMPRESSION" in table.splitlines()[0]
    assert "none (raw encrypted send)" in table.splitlines()[1]
    assert "zstd 3" in table.splitlines()[2]
    assert [r["raw_send"] for r in as_records(catalog(m1, m2))] == [True, False]
