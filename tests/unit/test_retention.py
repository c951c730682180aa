"""[retention]: which whole chains go, and what deleting early still costs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from zfsglacier.config import RetentionPolicy, parse_config
from zfsglacier.errors import ConfigError
from zfsglacier.policy.retention import billed_anyway, chains_of, expired

from .test_backup_logic import manifest
from .test_chain_policy import dated

NOW = datetime(2026, 11, 26, 3, 15, tzinfo=UTC)


def history():  # type: ignore[no-untyped-def]
    """Three chains: a 100-day-old one, a 50-day-old one, and the current one; plus a backup with a gap."""
    a0 = dated(manifest("a0", "10", 1), 100)
    a1 = dated(manifest("a1", "11", 2, a0), 95)
    b0 = dated(manifest("b0", "20", 3), 60)
    b1 = dated(manifest("b1", "21", 4, b0), 50)
    c0 = dated(manifest("c0", "30", 5), 10)
    c1 = dated(manifest("c1", "31", 6, c0), 1)
    orphan = manifest("x1", "41", 7, manifest("x0", "40", 0))  # its base has no manifest
    return [a0, a1, b0, b1, c0, c1, orphan]


def names(chains) -> list[list[str]]:  # type: ignore[no-untyped-def]
    return [[m.snapshot for m in c.backups] for c in chains]


def test_backups_group_into_chains_by_their_full_and_a_gap_places_nothing() -> None:
    chains, unplaced = chains_of(history())
    assert names(chains) == [["a0", "a1"], ["b0", "b1"], ["c0", "c1"]]
    assert [m.snapshot for m in unplaced] == ["x1"]


@pytest.mark.parametrize(("policy", "deleted"), [
    (RetentionPolicy(), []),
    (RetentionPolicy(keep_chains=2), [["a0", "a1"]]),
    (RetentionPolicy(keep_chains=1), [["a0", "a1"], ["b0", "b1"]]),
    (RetentionPolicy(max_age_days=90), [["a0", "a1"]]),
    (RetentionPolicy(max_age_days=40), [["a0", "a1"], ["b0", "b1"]]),
    # Either rule keeps a chain: the newest one (keep_chains = 1), and b, younger than 60 days.
    (RetentionPolicy(keep_chains=1, max_age_days=60), [["a0", "a1"]]),
    # The newest chain is never deleted, however old.
    (RetentionPolicy(max_age_days=1), [["a0", "a1"], ["b0", "b1"]]),
])
def test_whole_chains_go_when_no_rule_keeps_them(policy: RetentionPolicy, deleted: list[list[str]]) -> None:
    chains, _ = chains_of(history())
    assert names(chain for chain, _ in expired(chains, policy, NOW)) == deleted


def test_the_reason_names_the_rules() -> None:
    chains, _ = chains_of(history())
    ((_, why),) = expired(chains, RetentionPolicy(keep_chains=2, max_age_days=90), NOW)
    assert why == ("beyond the 2 newest chain(s) ([retention] keep_chains); its newest backup is 95 days old "
                   "([retention] max_age = 90d)")


def test_early_deletion_is_billed_for_the_class_minimum() -> None:
    assert billed_anyway("DEEP_ARCHIVE", 40) == 140
    assert billed_anyway("GLACIER", 100) == 0
    assert billed_anyway("STANDARD", 1) == 0
    assert billed_anyway(None, 1) == 0


def test_retention_keys_parse_and_name_themselves() -> None:
    base = "[zfs]\ndataset = t/a\n[rclone]\nremote = r\nbucket_name = b\n[retention]\n"
    assert parse_config(base + "keep_chains = 4\nmax_age = 365d\n").retention == RetentionPolicy(4, 365)
    assert not parse_config(base + "keep_chains = 0\nmax_age = 0\n").retention.active
    with pytest.raises(ConfigError, match=r"^\[retention\] max_age = '1y': expected a number of days"):
        parse_config(base + "max_age = 1y\n")
    with pytest.raises(ConfigError, match=r"^\[retention\] keep_chains = 'all'"):
        parse_config(base + "keep_chains = all\n")
