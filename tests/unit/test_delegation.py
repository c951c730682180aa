"""zfs allow's output read into the permissions a user holds, and the up-front check of what a command
needs. ALLOW is what OpenZFS 2.1.11 and 2.3.2 both printed for `zfs allow tp/data` after:

    zfs allow -s @bk snapshot,send tp
    zfs allow -u zb @bk tp
    zfs allow -l -u zb hold tp/data
    zfs allow -d -g zgrp release tp
    zfs allow -e userprop tp/data
    zfs allow -c destroy tp
    zfs allow -ld -u zb mount tp/data
"""

from __future__ import annotations

from pathlib import Path

import pytest

from zfsglacier.errors import EXIT_USAGE, EXIT_ZFS, UsageError, ZfsError
from zfsglacier.proc import Result
from zfsglacier.zfs import delegation
from zfsglacier.zfs.delegation import Grant, Identity, effective, parse_allow

ALLOW = """\
---- Permissions on tp/data ------------------------------------------
Local permissions:
\tuser zb hold
Local+Descendent permissions:
\tuser zb mount
\teveryone userprop
---- Permissions on tp -----------------------------------------------
Permission sets:
\t@bk send,snapshot
Create time permissions:
\tdestroy
Descendent permissions:
\tgroup zgrp release
Local+Descendent permissions:
\tuser zb @bk
"""

ZB = Identity("zb", 1000, frozenset({"zb", "1000", "zgrp", "1001"}))
OTHER = Identity("other", 1002, frozenset({"other", "1002"}))


def test_the_blocks_come_in_order_with_their_sections() -> None:
    blocks = parse_allow(ALLOW)
    assert [b.dataset for b in blocks] == ["tp/data", "tp"]
    data, pool = blocks
    assert data.local == [Grant("user", "zb", frozenset({"hold"}))]
    assert data.local_descendent == [Grant("user", "zb", frozenset({"mount"})),
                                     Grant("everyone", "", frozenset({"userprop"}))]
    assert pool.sets == {"@bk": frozenset({"send", "snapshot"})}
    assert pool.descendent == [Grant("group", "zgrp", frozenset({"release"}))]
    assert pool.local_descendent == [Grant("user", "zb", frozenset({"@bk"}))]


def test_a_user_holds_local_grants_inherited_ones_group_ones_and_expanded_sets() -> None:
    assert effective(parse_allow(ALLOW), "tp/data", ZB) == {"hold", "mount", "userprop", "release", "send", "snapshot"}


def test_create_time_permissions_count_for_nothing() -> None:
    assert "destroy" not in effective(parse_allow(ALLOW), "tp/data", ZB)


def test_descendent_grants_do_not_apply_to_the_dataset_they_are_set_on() -> None:
    assert effective(parse_allow(ALLOW), "tp", ZB) == {"send", "snapshot"}


def test_local_grants_of_an_ancestor_do_not_reach_its_children() -> None:
    text = "---- Permissions on tp -----\nLocal permissions:\n\tuser zb destroy\n"
    assert effective(parse_allow(text), "tp/data", ZB) == set()
    assert effective(parse_allow(text), "tp", ZB) == {"destroy"}


def test_another_user_gets_only_what_everyone_gets() -> None:
    assert effective(parse_allow(ALLOW), "tp/data", OTHER) == {"userprop"}


def test_a_user_is_matched_by_number_too() -> None:
    text = "---- Permissions on tp -----\nLocal+Descendent permissions:\n\tuser 1000 send\n"
    assert effective(parse_allow(text), "tp/x", ZB) == {"send"}


def test_a_sibling_with_a_common_name_prefix_is_not_an_ancestor() -> None:
    text = "---- Permissions on tp/da -----\nLocal+Descendent permissions:\n\tuser zb send\n"
    assert effective(parse_allow(text), "tp/data", ZB) == set()


def test_sets_that_name_sets_expand_and_a_loop_ends() -> None:
    text = ("---- Permissions on tp -----\nPermission sets:\n\t@a send,@b\n\t@b snapshot,@a\n"
            "Local+Descendent permissions:\n\tuser zb @a\n")
    assert effective(parse_allow(text), "tp/data", ZB) == {"send", "snapshot"}


def test_no_permissions_means_empty_output_and_nothing_held() -> None:
    assert parse_allow("") == []
    assert effective([], "tp/data", ZB) == set()


def test_what_a_backup_needs_follows_what_zfs_can_do() -> None:
    assert delegation.backup_needs(holds=False, bookmarks=False) == {"snapshot", "send", "userprop", "destroy",
                                                                     "mount"}
    assert delegation.backup_needs(holds=True, bookmarks=True) >= {"hold", "release", "bookmark"}


def test_root_is_never_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delegation.os, "geteuid", lambda: 0)

    def no_zfs(*args: object, **kwargs: object) -> Result:
        raise AssertionError("root needs no zfs allow")

    monkeypatch.setattr(delegation.proc, "run", no_zfs)
    delegation.require("tp/data", lambda: frozenset({"send"}), "backup")


def as_zb(monkeypatch: pytest.MonkeyPatch, returncode: int, stdout: str, stderr: str = "") -> list[list[str]]:
    calls: list[list[str]] = []
    monkeypatch.setattr(delegation.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(delegation, "current_identity", lambda: ZB)
    monkeypatch.setattr(delegation, "ZFS_DEVICE", "/nonexistent/zfs")  # as on zfs-fuse

    def fake_run(stage: str, argv: list[str], **kwargs: object) -> Result:
        calls.append(argv)
        return Result(returncode, stdout.encode(), stderr)

    monkeypatch.setattr(delegation.proc, "run", fake_run)
    return calls


def test_a_user_missing_permissions_is_told_which_and_how_to_delegate_them(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = as_zb(monkeypatch, 0, ALLOW)
    needs = delegation.backup_needs(holds=True, bookmarks=False)
    with pytest.raises(UsageError) as info:
        delegation.require("tp/data", lambda: needs, "backup")
    assert calls == [["zfs", "allow", "tp/data"]]
    assert info.value.exit_code == EXIT_USAGE
    assert str(info.value) == ("user zb lacks zfs permissions on tp/data that backup needs: destroy; "
                               "as root, delegate them with: zfs allow -u zb destroy tp/data")


def test_a_user_with_every_permission_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    as_zb(monkeypatch, 0, ALLOW + "Local permissions:\n\tuser zb destroy\n")
    delegation.require("tp", lambda: frozenset({"destroy", "send", "snapshot"}), "backup")


def test_a_zfs_that_refuses_the_user_says_to_run_as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    as_zb(monkeypatch, 1, "", "connect: Permission denied\ninternal error: failed to initialize ZFS library")

    def never() -> frozenset[str]:
        raise AssertionError("what is needed is asked only once zfs answered")

    with pytest.raises(ZfsError) as info:
        delegation.require("tp/data", never, "backup")
    assert info.value.exit_code == EXIT_ZFS
    assert "as user zb (run zfsglacier as root" in str(info.value)
    assert "connect: Permission denied" in str(info.value)


def test_a_zfs_device_closed_to_the_user_is_named_before_zfs_runs(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    calls = as_zb(monkeypatch, 0, ALLOW)
    device = tmp_path / "zfs"
    device.touch(mode=0o600)
    monkeypatch.setattr(delegation, "ZFS_DEVICE", str(device))
    monkeypatch.setattr(delegation.os, "access", lambda path, mode: path != str(device))
    with pytest.raises(UsageError) as info:
        delegation.require("tp/data", lambda: frozenset({"send"}), "backup")
    assert calls == []
    assert f"user zb cannot open {device}, so zfs refuses it" in str(info.value)
    assert "mode 0666" in str(info.value)
