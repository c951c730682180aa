"""S3 Object Lock: the config keys it needs, the lock arithmetic (policy/chain_lock.py), the manifest's
lock fields, what prune and status make of locked chains, and the rclone argv that locks an object."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from config_text import MINIMAL as MINIMAL_SECTIONS
from config_text import render

from zfsglacier.commands.status_verdict import OK, WARNING, judge
from zfsglacier.config import MonitoringPolicy, parse_config
from zfsglacier.errors import AccessDenied, ConfigError, IntegrityError, RemoteError
from zfsglacier.policy import chain_lock
from zfsglacier.remote.manifest import Manifest
from zfsglacier.remote.object_lock import Lock, parse_until, stamp
from zfsglacier.remote.rclone import Rclone
from zfsglacier.remote.rclone_errors import read_error
from zfsglacier.remote.rclone_output import ObjectLockState, parse_locks

NOW = datetime(2026, 12, 1, 3, 0, 0, tzinfo=UTC)
MINIMAL = render(MINIMAL_SECTIONS)
LOCKED = MINIMAL + "[chain]\nfull_every = 30d\n[retention]\nmax_age = 90d\n"


def locked_config(mode: str = "compliance", text: str = LOCKED):  # type: ignore[no-untyped-def]
    return parse_config(text.replace("[rclone]\n", f"[rclone]\nobject_lock = {mode}\n", 1))


def backup(name: str, txg: int, lock_until: datetime | None, base: Manifest | None = None,
           mode: str = "COMPLIANCE", created: datetime = NOW) -> Manifest:
    return Manifest("pool/data", name, f"g{txg}", txg, "full" if base is None else "incremental",
                    base.snapshot if base else None, base.guid if base else None, "zstd", 3, 2, 1, "0" * 64,
                    f"{name}.x", created.isoformat(timespec="seconds"), "h", "0",
                    lock_mode=mode if lock_until else None, lock_until=stamp(lock_until) if lock_until else None)


# --- config -----------------------------------------------------------------------------------------

def test_object_lock_takes_a_mode_and_off() -> None:
    assert locked_config("governance").object_lock == "GOVERNANCE"
    assert locked_config("Compliance").object_lock == "COMPLIANCE"
    assert locked_config("off").object_lock is None
    assert parse_config(LOCKED).object_lock is None
    with pytest.raises(ConfigError, match=r"\[rclone\] object_lock = 'legal': expected governance, compliance, or off"):
        locked_config("legal")


def test_a_lock_needs_full_every_in_days_and_max_age() -> None:
    with pytest.raises(ConfigError, match=r"object_lock = 'compliance' needs \[chain\] full_every as a number of "
                                          r"days \(such as 30d\), and it is not set"):
        locked_config(text=MINIMAL + "[retention]\nmax_age = 90d\n")
    with pytest.raises(ConfigError, match=r"needs \[chain\] full_every .* and it = '14'"):
        locked_config(text=MINIMAL + "[chain]\nfull_every = 14\n[retention]\nmax_age = 90d\n")
    with pytest.raises(ConfigError, match=r"object_lock = 'compliance' needs \[retention\] max_age"):
        locked_config(text=MINIMAL + "[chain]\nfull_every = 30d\n[retention]\nkeep_chains = 4\n")


def test_extra_flags_cannot_lock_or_read_versions_behind_the_keys() -> None:
    for flag in ("--s3-object-lock-mode=GOVERNANCE", "--s3-version-at=1d", "--s3-bypass-governance-retention"):
        with pytest.raises(ConfigError, match="is set by zfsglacier"):
            parse_config(MINIMAL.replace("[rclone]\n", f"[rclone]\nextra_flags = {flag}\n", 1))


# --- the arithmetic ---------------------------------------------------------------------------------

def test_a_new_chain_is_locked_for_full_every_plus_max_age_plus_the_margin() -> None:
    cfg = locked_config()
    assert chain_lock.lock_days(cfg) == 30 + 90 + chain_lock.MARGIN_DAYS == 127
    lock = chain_lock.for_full(cfg, "COMPLIANCE", NOW + timedelta(microseconds=500))
    assert lock.mode == "COMPLIANCE"
    assert NOW + timedelta(days=127) < lock.until <= NOW + timedelta(days=127, seconds=1)
    assert lock.until.microsecond == 0 and lock.until_text == "2027-04-07T03:00:01Z"


def test_an_incremental_joins_its_chain_while_the_chain_stays_locked_long_enough() -> None:
    cfg = locked_config()
    until = NOW + timedelta(days=127)
    full = backup("full", 1, until)
    incremental = backup("incr", 2, until, full)
    chain = [full, incremental]
    assert chain_lock.chain_lock(chain) == Lock("COMPLIANCE", until)
    # A backup made on day 30 must stay locked until day 30 + 90 + 7 = 127: exactly the chain's lock.
    assert chain_lock.why_new_chain(cfg, "COMPLIANCE", chain, NOW + timedelta(days=30)) is None
    late = chain_lock.why_new_chain(cfg, "COMPLIANCE", chain, NOW + timedelta(days=30, seconds=1))
    assert late is not None and late.startswith("full: the chain from full is locked until 2027-04-07T03:00:00Z, and "
                                                 "a backup made now must stay locked until 2027-04-07T03:00:01Z")


def test_a_chain_with_an_unlocked_backup_or_another_mode_ends() -> None:
    cfg = locked_config()
    until = NOW + timedelta(days=127)
    unlocked = [backup("full", 1, None)]
    assert chain_lock.chain_lock(unlocked) is None
    assert "full: the chain from full is not locked" in (chain_lock.why_new_chain(cfg, "COMPLIANCE", unlocked, NOW)
                                                          or "")
    half = [backup("full", 1, until), backup("incr", 2, None)]
    assert chain_lock.chain_lock(half) is None
    governance = [backup("full", 1, until, mode="GOVERNANCE")]
    assert chain_lock.why_new_chain(cfg, "COMPLIANCE", governance, NOW) == \
        "full: the chain from full is locked in GOVERNANCE mode, not COMPLIANCE ([rclone] object_lock = compliance)"


def test_the_chain_lock_is_the_earliest_end_among_its_backups() -> None:
    full = backup("full", 1, NOW + timedelta(days=127))
    resumed = backup("incr", 2, NOW + timedelta(days=126), full)
    assert chain_lock.chain_lock([full, resumed]) == Lock("COMPLIANCE", NOW + timedelta(days=126))


def test_locked_until_is_the_last_lock_still_running() -> None:
    a, b = backup("a", 1, NOW + timedelta(days=3)), backup("b", 2, NOW + timedelta(days=5))
    assert chain_lock.locked_until([a, b], NOW) == NOW + timedelta(days=5)
    assert chain_lock.locked_until([a, b], NOW + timedelta(days=5)) is None
    assert chain_lock.locked_until([backup("c", 3, None)], NOW) is None


def test_parse_until_reads_what_s3_and_manifests_say() -> None:
    assert parse_until("2027-04-07T03:00:00Z") == datetime(2027, 4, 7, 3, tzinfo=UTC)
    assert parse_until("2027-04-07T05:00:00+02:00") == datetime(2027, 4, 7, 3, tzinfo=UTC)
    assert parse_until("soon") is None and parse_until(None) is None


# --- the manifest -----------------------------------------------------------------------------------

def test_a_manifest_keeps_its_lock_and_checks_it() -> None:
    m = backup("s", 1, NOW + timedelta(days=127))
    again = Manifest.from_json(m.to_json(), where="m")
    assert (again.lock_mode, again.lock_until) == ("COMPLIANCE", "2027-04-07T03:00:00Z")
    assert "lock_mode" not in json.loads(backup("t", 2, None).to_json())
    doc = json.loads(m.to_json())
    doc["lock_mode"] = "FOREVER"
    from zfsglacier.remote.manifest import SELF_CHECK, content_sha256
    doc[SELF_CHECK] = content_sha256(doc)
    with pytest.raises(IntegrityError, match=r"lock_mode .* and lock_until .* go together"):
        Manifest.from_json(json.dumps(doc).encode(), where="m")


# --- status -----------------------------------------------------------------------------------------

def test_status_warns_when_the_newest_chain_is_unlocked_or_its_lock_ends_within_warn_after() -> None:
    from zfsglacier.remote.catalog import Catalog
    policy = MonitoringPolicy(warn_after=10 * 86400, crit_after=20 * 86400)
    full = backup("full", 1, NOW + timedelta(days=9), created=NOW - timedelta(days=1))
    catalog = Catalog("r:b/pool/data", [full], {}, [], [])
    code, line = judge(catalog, NOW, policy, "pool/data", "COMPLIANCE")
    assert code == WARNING, line
    assert re.search(r"the lock of the chain of full ends in 9d.*\(2026-12-10T03:00:00Z\), within warn_after 10d",
                     line), line
    later = stamp(NOW + timedelta(days=10, seconds=1))
    longer = Catalog("r:b/pool/data", [dataclasses.replace(full, lock_until=later)], {}, [], [])
    assert judge(longer, NOW, policy, "pool/data", "COMPLIANCE").code == OK
    assert judge(catalog, NOW, policy, "pool/data").code == OK  # no lock configured: not judged
    bare = Catalog("r:b/pool/data", [backup("full", 1, None, created=NOW)], {}, [], [])
    code, line = judge(bare, NOW, policy, "pool/data", "GOVERNANCE")
    assert code == WARNING and "the chain of full is not locked ([rclone] object_lock = governance)" in line


# --- rclone -----------------------------------------------------------------------------------------

def test_a_locked_upload_sets_its_lock_after_the_upload_and_as_of_reads_versions() -> None:
    rclone = Rclone("rclone", Path("/r.conf"))
    argv = rclone.rcat_argv("r:b/x", lock=Lock("GOVERNANCE", NOW))
    assert argv[-6:] == ["--s3-object-lock-mode", "GOVERNANCE", "--s3-object-lock-retain-until-date",
                         "2026-12-01T03:00:00Z", "--s3-object-lock-set-after-upload", "r:b/x"]
    assert "--s3-object-lock-mode" not in rclone.rcat_argv("r:b/x")
    past = dataclasses.replace(rclone, version_at="2026-11-30T04:00:00Z")
    assert past.cat_argv("r:b/x")[3:5] == ["--s3-version-at", "2026-11-30T04:00:00Z"]
    assert "--s3-version-at" in past.lsjson_argv("r:b/d")


def test_what_rclone_says_of_object_locks_and_of_refusals() -> None:
    listing = json.dumps([{"Name": "a", "Size": 1, "IsDir": False, "Metadata": {
        "object-lock-mode": "COMPLIANCE", "object-lock-retain-until-date": "2027-01-02T15:04:05Z"}},
        {"Name": "b", "Size": 1, "IsDir": False, "Metadata": {"tier": "STANDARD"}}, {"Name": "c", "Size": 1}]).encode()
    assert parse_locks(listing) == {"a": ObjectLockState("COMPLIANCE", "2027-01-02T15:04:05Z"),
                                    "b": ObjectLockState(None, None), "c": ObjectLockState(None, None)}
    with pytest.raises(RemoteError, match="unexpected output"):
        parse_locks(b"[1]")
    denied = read_error("rclone deletefile", "deleting r:b/x failed (exit 1)",
                        "operation error S3: DeleteObject, https response error StatusCode: 403, api error "
                        "AccessDenied")
    assert isinstance(denied, AccessDenied)
    assert type(read_error("rclone cat", "x", "StatusCode: 500")) is RemoteError
