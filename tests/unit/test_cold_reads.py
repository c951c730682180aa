"""Objects that may be frozen, whatever the provider lists: the manifest's storage class, a read refused as
frozen (rclone's words turned into ObjectFrozen), what a thaw costs, and the restore plan's space check and
confirmation (with stand-ins for rclone and zfs: the real ones are in tests/integration/test_cold_storage.py)."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import time

import pytest

from zfsglacier.commands import restore
from zfsglacier.commands.restore_plan import Space
from zfsglacier.errors import ObjectFrozen, RefusedError, RemoteError, SignalReceived, ZfsError
from zfsglacier.remote import thaw
from zfsglacier.remote.catalog import Catalog
from zfsglacier.remote.manifest import Manifest
from zfsglacier.remote.rclone_errors import read_error
from zfsglacier.remote.rclone_output import RemoteObject
from zfsglacier.signals import signals_as_exceptions, step

from .test_backup_logic import manifest

GB = 10**9


class Probes:
    """A stand-in for rclone's one-byte read: `frozen` names are refused."""

    def __init__(self, *frozen: str) -> None:
        self.frozen = set(frozen)
        self.probed: list[str] = []

    def readable_now(self, path: str) -> bool:
        name = path.rpartition("/")[2]
        self.probed.append(name)
        return name not in self.frozen


def sized(m: Manifest, stored: int, storage_class: str | None = None) -> Manifest:
    return dataclasses.replace(m, stored_bytes=stored, storage_class=storage_class)


def catalog_listing(manifests: list[Manifest], tiers: dict[str, str | None]) -> Catalog:
    objects = {m.object: RemoteObject(m.object, m.stored_bytes, tiers.get(m.object)) for m in manifests}
    return Catalog("r:b/t/a", manifests, objects, [], [])


def test_an_object_is_probed_when_its_manifest_records_a_cold_class_though_the_listing_shows_no_tier() -> None:
    full = sized(manifest("s1", "1", 1), GB, "DEEP_ARCHIVE")
    incr = sized(manifest("s2", "2", 2, full), GB)  # no class recorded, none listed: not probed
    probes = Probes("s1.x", "s2.x")
    found = thaw.frozen_objects(probes, catalog_listing([full, incr], {}), [full, incr])  # type: ignore[arg-type]
    assert probes.probed == ["s1.x"]
    assert [(f.volume.object, f.tier) for f in found] == [("s1.x", "DEEP_ARCHIVE")]


def test_a_cold_listed_tier_counts_even_when_the_manifest_records_none() -> None:
    full = sized(manifest("s1", "1", 1), GB)
    probes = Probes("s1.x")
    found = thaw.frozen_objects(probes, catalog_listing([full], {"s1.x": "GLACIER"}), [full])  # type: ignore[arg-type]
    assert [f.tier for f in found] == ["GLACIER"]


def test_after_a_refused_read_every_object_is_probed_and_an_unlisted_one_has_no_tier() -> None:
    full = sized(manifest("s1", "1", 1), GB)
    incr = sized(manifest("s2", "2", 2, full), GB)
    probes = Probes("s2.x")
    found = thaw.frozen_objects(probes, catalog_listing([full, incr], {}), [full, incr],  # type: ignore[arg-type]
                                probe_all=True)
    assert probes.probed == ["s1.x", "s2.x"]
    assert [(f.volume.object, f.tier) for f in found] == [("s2.x", thaw.UNLISTED)]


def test_rclone_saying_restore_first_or_invalid_object_state_is_an_object_frozen() -> None:
    said = 'ERROR : x: Failed to open: Object in GLACIER, restore first: bucket="b", key="x"'
    assert isinstance(read_error("rclone cat", "exited with status 1", said), ObjectFrozen)
    assert isinstance(read_error("rclone cat", "exited with status 1", "InvalidObjectState: archived"), ObjectFrozen)
    other = read_error("rclone cat", "exited with status 1", "connection refused")
    assert type(other) is RemoteError
    assert str(other) == "rclone cat: exited with status 1: connection refused"


def fee(frozen: list[thaw.Frozen], priority: str) -> tuple[float, float] | None:
    return thaw.retrieval_cost(frozen, priority)


def test_retrieval_fee_by_class_and_priority_at_list_prices() -> None:
    m = sized(manifest("s1", "1", 1), 1350 * GB)
    deep = [thaw.Frozen(m.parts[0], "DEEP_ARCHIVE")]
    assert fee(deep, "Bulk") == pytest.approx((3.375 + 0.000025, 3.375 + 0.000025))  # the README's example
    assert fee(deep, "Standard") == pytest.approx((27.0001, 27.0001))
    assert fee([thaw.Frozen(m.parts[0], "GLACIER")], "Bulk") == (0.0, 0.0)
    assert fee(deep, "Expedited") is None  # Deep Archive has no Expedited
    unlisted = [thaw.Frozen(m.parts[0], thaw.UNLISTED)]
    assert fee(unlisted, "Standard") == pytest.approx((13.50005, 27.0001))  # Glacier's price to Deep Archive's
    line = thaw.cost_line(unlisted, thaw.ThawOptions("Standard", 3))
    assert "$13.50 to $27.00 (by storage class)" in line and "S3 Standard for 3 day(s)" in line
    assert thaw.thaw_time(unlisted, "Standard") == "3-5 hours / up to 12 hours"


def test_plan_lines_name_an_unlisted_tier_and_the_fee() -> None:
    m = sized(manifest("s1", "1", 1), 2 * GB)
    lines = thaw.plan_lines([thaw.Frozen(m.parts[0], "GLACIER"), thaw.Frozen(m.parts[0], thaw.UNLISTED)],
                            thaw.ThawOptions("Bulk", 7))
    assert lines[0].startswith("2 object(s), 3.7 GiB, are in GLACIER and an archive tier the listing does not name "
                               "and must be thawed first: priority Bulk (5-12 hours / up to 48 hours)")
    assert "retrieval fee at AWS list prices (us-east-1): $0.00 to $0.01 (by storage class)" in lines[1]


def space(needed: int, available: int | None) -> Space:
    return Space("pool", needed, available)


def test_the_plan_says_the_chains_raw_size_against_the_space_and_warns_when_it_may_not_fit() -> None:
    assert space(10 << 20, 1 << 30).lines() == ["space: 10.0 MiB raw to receive, 1.0 GiB available in pool"]
    (warning,) = space(120 << 20, 59 << 20).lines()
    assert warning.startswith("WARNING: the chain's streams are 120.0 MiB raw and pool has 59.0 MiB available: "
                              "the restore may not fit")
    assert space(1, None).lines() == [] and space(1, None).fits


class Asked:
    def __init__(self, answer: str | None) -> None:
        self.answer = answer
        self.questions: list[str] = []

    def __call__(self, question: str) -> str | None:
        self.questions.append(question)
        return self.answer


def test_yes_restores_without_asking_unless_a_thaw_is_needed_for_a_chain_that_may_not_fit() -> None:
    asked = Asked(None)
    restore._confirm("pool/r", True, asked, thaw_needed=True, space=space(1, 2))
    restore._confirm("pool/r", True, asked, thaw_needed=False, space=space(2, 1))
    assert asked.questions == []
    with pytest.raises(RefusedError, match="not requesting a billed thaw for a restore that may not fit"):
        restore._confirm("pool/r", True, asked, thaw_needed=True, space=space(2, 1))
    assert asked.questions == []


def test_a_thaw_for_a_chain_that_may_not_fit_is_asked_for_in_so_many_words() -> None:
    asked = Asked("pool/r")
    restore._confirm("pool/r", False, asked, thaw_needed=True, space=space(2, 1))
    assert asked.questions == ["Type the target dataset name (pool/r) to request the thaw and restore anyway: "]
    with pytest.raises(RefusedError, match=r"not confirmed \(the name typed does not match\): nothing was changed"):
        restore._confirm("pool/r", False, Asked("pool/x"), thaw_needed=False, space=space(1, 2))


def raw_backup(dataset: str = "tank/secret") -> Manifest:
    return dataclasses.replace(manifest("s1", "1", 1), dataset=dataset, send_flags=("-w",))


def test_a_user_restoring_a_raw_backup_is_told_both_to_load_the_key_and_that_mounting_needs_root(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(restore.zfs, "get_property", lambda dataset, prop: "unavailable")
    monkeypatch.setattr(restore.delegation, "is_root", lambda: False)
    mounted: list[str] = []
    monkeypatch.setattr(restore.zfs, "mount_if_mountable", mounted.append)
    with caplog.at_level(logging.WARNING, logger="zfsglacier"):
        restore._mount_or_say_how("pool/r", raw_backup())
    assert caplog.messages == ["pool/r is not mounted: it is encrypted with the key of tank/secret: load that key "
                               "with zfs load-key pool/r (a key file: zfs load-key -L file:///PATH pool/r); "
                               "mounting needs root: zfs mount pool/r"]
    assert mounted == []


def test_root_restoring_a_raw_backup_is_told_to_load_the_key_then_mount(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(restore.zfs, "get_property", lambda dataset, prop: "unavailable")
    monkeypatch.setattr(restore.delegation, "is_root", lambda: True)
    with caplog.at_level(logging.WARNING, logger="zfsglacier"):
        restore._mount_or_say_how("pool/r", raw_backup())
    assert caplog.messages[0].endswith("(a key file: zfs load-key -L file:///PATH pool/r); then zfs mount pool/r")


def test_zfs_fuse_refusing_a_user_is_told_to_run_as_root() -> None:
    error = ZfsError("zfs list", "exited with status 1", "connect: Permission denied | internal error: failed to "
                                                         "initialize ZFS library")
    assert str(error).startswith("zfs list: exited with status 1 (zfs-fuse's daemon answers root only: run "
                                 "zfsglacier as root): connect: Permission denied")
    assert "run zfsglacier as root" not in str(ZfsError("zfs list", "exited with status 1", "no such pool"))


def test_an_interruption_names_the_step_it_interrupted() -> None:
    with pytest.raises(SignalReceived) as info, signals_as_exceptions(), step("backing up pool/a"), \
            step("sending pool/a@s1 (full) to r:b/pool/a/s1.full.zfs.zst"):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert str(info.value) == "interrupted by SIGTERM while sending pool/a@s1 (full) to r:b/pool/a/s1.full.zfs.zst"
    with pytest.raises(SignalReceived, match=r"^interrupted by SIGTERM$"), signals_as_exceptions():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
