import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest

from zfsglacier.config import BackupConfig
from zfsglacier.errors import EXIT_USAGE, UsageError
from zfsglacier.policy.local_snapshots import check_snapshot_names_fit, is_own_snapshot, new_snapshot_name, to_prune
from zfsglacier.policy.send_plan import choose_base
from zfsglacier.remote.catalog import Catalog
from zfsglacier.remote.manifest import Manifest
from zfsglacier.zfs.cmd import Snapshot

NOW = datetime(2026, 11, 26, 7, 5, 9, tzinfo=UTC)


def test_snapshot_names_sort_by_time_and_never_collide() -> None:
    first = new_snapshot_name("gb-", NOW, set())
    assert first == "gb-20261126T070509Z"
    assert new_snapshot_name("gb-", NOW, {first}) == "gb-20261126T070509Z-1"
    assert new_snapshot_name("gb-", NOW, {first, first + "-1"}) == "gb-20261126T070509Z-2"
    assert sorted([new_snapshot_name("gb-", NOW.replace(hour=h), set()) for h in (9, 1, 5)]) == [
        new_snapshot_name("gb-", NOW.replace(hour=h), set()) for h in (1, 5, 9)
    ]


def test_own_snapshots_are_recognised_by_prefix_and_timestamp() -> None:
    assert is_own_snapshot("gb-20261126T070509Z", "gb-")
    assert is_own_snapshot("gb-20261126T070509Z-3", "gb-")
    assert not is_own_snapshot("gb-manual-keep", "gb-")
    assert not is_own_snapshot("autosnap_20261126T070509Z", "gb-")


def snap(name: str, guid: str, txg: int, pending: bool = False) -> Snapshot:
    return Snapshot(f"t/a@{name}", guid, txg, 0, pending)


def manifest(name: str, guid: str, txg: int, base: Manifest | None = None) -> Manifest:
    return Manifest("t/a", name, guid, txg, "full" if base is None else "incremental",
                    base.snapshot if base else None, base.guid if base else None, "zstd", 3, 1, 1, "0" * 64,
                    f"{name}.x", "2026-01-01T00:00:00+00:00", "h", "0")


def catalog(*manifests: Manifest) -> Catalog:
    return Catalog("r:b/t/a", list(manifests), {}, [], [])


def test_base_is_the_newest_local_snapshot_with_a_committed_backup_of_the_same_guid() -> None:
    m1 = manifest("s1", "1", 1)
    m2 = manifest("s2", "2", 2, m1)
    local = [snap("s1", "1", 1), snap("s2", "2", 2), snap("s3-not-backed-up", "3", 3)]
    base, why = choose_base(catalog(m1, m2), local)
    assert base == local[1]
    assert why == "incremental from s2"


def test_a_recreated_snapshot_with_the_same_name_is_not_a_base() -> None:
    m1 = manifest("s1", "1", 1)
    base, why = choose_base(catalog(m1), [snap("s1", "999", 1)])
    assert base is None and why.startswith("full:")


def test_no_base_when_the_chain_on_the_remote_has_a_gap() -> None:
    m1 = manifest("s1", "1", 1)
    m2 = manifest("s2", "2", 2, m1)
    m3 = manifest("s3", "3", 3, m2)
    # m2 is gone from the remote: s3 cannot be restored, so nothing may build on it; s1 still can.
    base, _ = choose_base(catalog(m1, m3), [snap("s1", "1", 1), snap("s3", "3", 3)])
    assert base is not None and base.short_name == "s1"


def test_empty_remote_means_full() -> None:
    base, why = choose_base(catalog(), [snap("s1", "1", 1)])
    assert base is None and "no committed backup" in why


def config(retention: int) -> BackupConfig:
    return BackupConfig("t/a", "gb-", retention, "r", "b", Path("/x"), "zstd", 3, 2)


def test_prune_keeps_the_newest_own_snapshots_and_touches_nothing_else() -> None:
    local = [snap(f"gb-2026010{i}T000000Z", str(i), i) for i in range(1, 6)]
    foreign = [snap("gb-manual", "90", 0), snap("daily-1", "91", 2)]
    pending = [snap("gb-20260109T000000Z", "99", 9, pending=True)]
    everything = sorted(local + foreign + pending, key=lambda s: s.createtxg)
    committed = {s.guid for s in local}
    assert to_prune(config(3), everything, committed) == local[:2]
    assert to_prune(config(0), everything, committed) == []
    assert to_prune(config(10), everything, committed) == []
    assert to_prune(config(3), everything, committed, about_to_add=1) == local[:3]
    assert to_prune(config(1), everything, committed)[-1] == local[-2]  # the newest (next base) always stays


def test_catalog_orphans_are_not_listed_as_backups() -> None:
    m1 = manifest("s1", "1", 1)
    cat = dataclasses.replace(catalog(m1), orphans=["s2.full.zfs.zst"])
    assert [m.snapshot for m in cat.manifests] == ["s1"]


def test_a_snapshot_named_like_ours_by_hand_is_never_pruned() -> None:
    """Same prefix, exact timestamp form, not pending: only the missing committed backup tells it apart."""
    ours = [snap(f"gb-2026010{i}T000000Z", str(i), i * 10) for i in range(1, 4)]
    by_hand = snap("gb-20200101T000000Z", "77", 5)  # older than all of ours, by name and by txg
    everything = sorted([*ours, by_hand], key=lambda s: s.createtxg)
    committed = {s.guid for s in ours}
    assert to_prune(config(1), everything, committed) == ours[:2]
    assert by_hand not in to_prune(config(1), everything, committed | {"unrelated"})


def test_prune_goes_by_creation_txg_when_the_clock_was_set_back() -> None:
    # Made in this order (txg 1, 2, 3), but the second and third runs saw an earlier wall clock.
    first = snap("gb-20261126T120000Z", "1", 1)
    second = snap("gb-20261126T110000Z", "2", 2)
    third = snap("gb-20261126T113000Z", "3", 3)
    assert to_prune(config(2), [first, second, third], {"1", "2", "3"}) == [first]


def test_a_hand_made_snapshot_is_never_a_base_even_when_newest() -> None:
    m1 = manifest("gb-20261126T070509Z", "1", 1)
    local = [snap("gb-20261126T070509Z", "1", 1), snap("gb-20261126T080000Z", "66", 2)]
    base, why = choose_base(catalog(m1), local)
    assert base == local[0] and why == "incremental from gb-20261126T070509Z"


def test_base_destroyed_locally_says_so() -> None:
    m1 = manifest("s1", "1", 1)
    m2 = manifest("s2", "2", 2, m1)
    base, why = choose_base(catalog(m1, m2), [snap("s1", "1", 1)])
    assert base is not None and base.short_name == "s1"
    assert why == "incremental from s1 (s2, the newest backed-up snapshot, no longer exists locally)"
    base, why = choose_base(catalog(m1, m2), [snap("other", "5", 5)])
    assert base is None
    assert why == "full: the snapshot of the newest committed backup, s2, no longer exists locally, nor any " \
                  "other of the 2 backed up"
    base, why = choose_base(catalog(m1, m2), [snap("s2", "999", 5)])
    assert base is None and "t/a@s2 is not the snapshot that was backed up" in why


def test_same_second_and_clock_set_back_names_do_not_collide() -> None:
    taken: set[str] = set()
    for now in (NOW, NOW, NOW.replace(hour=6), NOW, NOW.replace(hour=6)):
        name = new_snapshot_name("gb-", now, taken)
        assert name not in taken
        taken.add(name)
    assert taken == {"gb-20261126T070509Z", "gb-20261126T070509Z-1", "gb-20261126T070509Z-2",
                     "gb-20261126T060509Z", "gb-20261126T060509Z-1"}


def test_snapshot_names_that_would_not_fit_zfs_are_refused_up_front() -> None:
    fits = dataclasses.replace(config(1), dataset="t/" + "d" * 200, snapshot_prefix="gb-")
    check_snapshot_names_fit(fits)  # 202 + 1 + 3 + 19 = 225
    too_long = dataclasses.replace(fits, snapshot_prefix="p" * 40)
    with pytest.raises(UsageError) as info:
        check_snapshot_names_fit(too_long)
    assert info.value.exit_code == EXIT_USAGE
    assert "[zfs] dataset" in str(info.value) and "[zfs] snapshot_prefix" in str(info.value)
    assert "shorten the prefix" in str(info.value)
