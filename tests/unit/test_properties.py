"""Dataset properties: what a backup records, what a restore sets (policy/properties.py), how (receive -o
or zfs set afterwards: commands/restore_properties.py), and the manifest's record of them."""

from __future__ import annotations

import json

import pytest

from zfsglacier.commands.restore_properties import TargetProperties
from zfsglacier.errors import IntegrityError
from zfsglacier.policy import properties
from zfsglacier.remote.manifest import SELF_CHECK, Manifest, content_sha256
from zfsglacier.zfs import cmd as zfs

FOUND = {"compression": "zstd", "mountpoint": "/srv/data", "acltype": "posix", "volsize": "1073741824",
         "keylocation": "prompt", "org.zfsglacier:restore": "incomplete", "com.example:owner": "alice b"}


def manifest(props: dict[str, str] | None, send_flags: tuple[str, ...] = ()) -> Manifest:
    return Manifest("pool/data", "s1", "1", 1, "full", None, None, "zstd", 3, 2, 1, "0" * 64, "s1.full.zfs.zst",
                    "2026-12-01T03:00:00+00:00", "h", "0", send_flags=send_flags,
                    properties=properties.recorded(props) if props is not None else None)


def test_a_backup_records_all_but_zfsglaciers_own_marks() -> None:
    assert dict(properties.recorded(FOUND)) == {k: v for k, v in FOUND.items() if not k.startswith("org.zfsglacier")}


def test_a_restore_leaves_out_the_mountpoint_unless_asked_and_what_zfs_takes_only_at_creation() -> None:
    restored = properties.to_restore(FOUND, keep_mountpoint=False)
    assert restored == {"compression": "zstd", "acltype": "posix", "com.example:owner": "alice b"}
    assert properties.to_restore(FOUND, keep_mountpoint=True)["mountpoint"] == "/srv/data"
    assert set(properties.left_out(FOUND, keep_mountpoint=False)) == {"mountpoint", "volsize", "keylocation",
                                                                        "org.zfsglacier:restore"}


def test_properties_go_to_receive_o_where_zfs_takes_it_else_they_are_set_after() -> None:
    known = frozenset({"compression", "mountpoint"})
    m = manifest(FOUND)
    with_o = TargetProperties(False, known, with_receive=True)
    # acltype is unknown to this zfs: not set (and said so); a user property always is.
    assert with_o.at_receive(m) == {"compression": "zstd", "com.example:owner": "alice b"}
    assert with_o.unknown(m) == ["acltype"]
    assert with_o.at_receive(manifest(FOUND, send_flags=("-w",))) == {}, "a raw receive takes no -o"
    assert TargetProperties(False, known, with_receive=False).at_receive(m) == {}
    assert zfs.receive_argv("t/r", force=True, properties=with_o.at_receive(m)) == [
        "zfs", "receive", "-F", "-o", "com.example:owner=alice b", "-o", "compression=zstd", "t/r"]


def test_the_plan_says_what_is_set_and_what_is_not() -> None:
    props = TargetProperties(False, frozenset({"compression", "mountpoint", "acltype"}), with_receive=True)
    lines = props.plan_lines([manifest(FOUND)], "t/r")
    assert lines[0] == ("properties set on t/r, as s1 recorded them: acltype=posix, com.example:owner=alice b, "
                        "compression=zstd")
    assert lines[1] == ("  not set: keylocation=prompt, mountpoint=/srv/data, volsize=1073741824  "
                        "(--keep-mountpoint sets mountpoint too)")
    assert "none recorded" in props.plan_lines([manifest(None)], "t/r")[0]


def test_zfs_get_output_is_read_with_values_that_hold_spaces() -> None:
    assert zfs.parse_properties("compression\tzstd\ncom.example:note\ta b\tc\n\n") == \
        {"compression": "zstd", "com.example:note": "a b\tc"}


def test_the_manifest_keeps_the_properties_and_checks_them() -> None:
    m = manifest(FOUND)
    again = Manifest.from_json(m.to_json(), where="m")
    assert again.property_map == m.property_map and again.properties == m.properties
    assert "properties" not in json.loads(manifest(None).to_json())
    doc = json.loads(m.to_json())
    doc["properties"] = {"compression": 3}
    doc[SELF_CHECK] = content_sha256(doc)
    with pytest.raises(IntegrityError, match="properties must map names to values"):
        Manifest.from_json(json.dumps(doc).encode(), where="m")
