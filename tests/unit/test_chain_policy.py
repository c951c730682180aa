"""[chain] full_every and differential: when a new full starts, and what an incremental is based on."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from zfsglacier.config import ChainPolicy, parse_config
from zfsglacier.errors import ConfigError
from zfsglacier.policy.chain import backups_on, next_base
from zfsglacier.policy.send_plan import choose_base
from zfsglacier.zfs.cmd import Bookmark

from .test_backup_logic import catalog, manifest, snap

NOW = datetime(2026, 11, 26, 3, 15, tzinfo=UTC)


def dated(m, days_ago: int):  # type: ignore[no-untyped-def]
    return dataclasses.replace(m, created=(NOW - timedelta(days=days_ago)).isoformat(timespec="seconds"))


def chain_of(n: int, differential: bool = False, full_days_ago: int = 1):  # type: ignore[no-untyped-def]
    full = dated(manifest("s0", "0", 0), full_days_ago)
    chain = [full]
    for i in range(1, n):
        chain.append(manifest(f"s{i}", str(i), i, full if differential else chain[-1]))
    return chain


@pytest.mark.parametrize(("text", "policy"), [
    ("0", ChainPolicy()), ("30d", ChainPolicy(30, None)), ("30 days", ChainPolicy(30, None)),
    ("14", ChainPolicy(None, 14)),
])
def test_full_every_takes_days_or_backups(text: str, policy: ChainPolicy) -> None:
    cfg = parse_config(f"[zfs]\ndataset = t/a\n[rclone]\nremote = r\nbucket_name = b\n[chain]\nfull_every = {text}\n")
    assert cfg.chain == policy


def test_bad_chain_values_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^\[chain\] full_every = 'weekly': expected a number of days"):
        parse_config("[zfs]\ndataset = t/a\n[rclone]\nremote = r\nbucket_name = b\n[chain]\nfull_every = weekly\n")
    with pytest.raises(ConfigError, match=r"^\[chain\] differential = 'sometimes'"):
        parse_config("[zfs]\ndataset = t/a\n[rclone]\nremote = r\nbucket_name = b\n[chain]\ndifferential = sometimes\n")


def test_without_a_policy_chains_grow_forever() -> None:
    chain = chain_of(50, full_days_ago=1000)
    assert next_base(ChainPolicy(), chain, chain[-1], NOW) == (chain[-1], "incremental")


def test_full_every_backups_caps_the_chain_length() -> None:
    chain = chain_of(6)
    assert next_base(ChainPolicy(None, 7), chain, chain[-1], NOW) == (chain[-1], "incremental")
    chain = chain_of(7)
    base, why = next_base(ChainPolicy(None, 7), chain, chain[-1], NOW)
    assert base is None and why == "full: the chain from s0 holds 7 backup(s) ([chain] full_every = 7)"


def test_full_every_days_starts_a_full_once_the_chain_s_full_is_that_old() -> None:
    assert next_base(ChainPolicy(30, None), chain_of(3, full_days_ago=29), chain_of(3)[-1], NOW)[0] is not None
    chain = chain_of(3, full_days_ago=30)
    base, why = next_base(ChainPolicy(30, None), chain, chain[-1], NOW)
    assert base is None and why == "full: the chain's full s0 is 30 days old ([chain] full_every = 30d)"


def test_differential_bases_every_incremental_on_the_full_and_counts_its_backups() -> None:
    chain = chain_of(4, differential=True)
    assert backups_on(chain, chain[0]) == 4
    assert next_base(ChainPolicy(differential=True), chain, chain[-1], NOW) == (chain[0], "differential")
    base, why = next_base(ChainPolicy(None, 4, differential=True), chain, chain[-1], NOW)
    assert base is None and "holds 4 backup(s)" in why


def test_choose_base_follows_the_policy_to_the_local_full_or_its_bookmark() -> None:
    chain = chain_of(3, differential=True)
    local = [snap("s0", "0", 0), snap("s1", "1", 1), snap("s2", "2", 2)]
    policy = ChainPolicy(differential=True)
    base, why = choose_base(catalog(*chain), local, policy=policy, now=NOW)
    assert base == local[0] and why == "differential from s0"
    base, why = choose_base(catalog(*chain), local[1:], [Bookmark("t/a#s0", "0", 0)], policy=policy, now=NOW)
    assert base == Bookmark("t/a#s0", "0", 0) and why == "differential from bookmark t/a#s0 (the snapshot is gone)"
    base, why = choose_base(catalog(*chain), local[1:], policy=policy, now=NOW)
    assert base is None and why.startswith("full: differential backups are based on the chain's full s0")
