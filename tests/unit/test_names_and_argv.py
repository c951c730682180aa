from pathlib import Path

import pytest

from zfsglacier import names
from zfsglacier.errors import RemoteError
from zfsglacier.proc import render, render_pipeline
from zfsglacier.remote.rclone import Rclone
from zfsglacier.remote.rclone_output import parse_lsjson
from zfsglacier.zfs import cmd as zfs


@pytest.mark.parametrize("good", ["tank", "tank/data", "tank/my data", "t/a.b:c_d-e"])
def test_good_dataset_names(good: str) -> None:
    assert names.dataset_problem(good) is None


@pytest.mark.parametrize(
    "bad", ["", "-tank", "1tank", "tank/", "tank//x", "tank/a@b", "tank/a#b", "tank/$(x)", "tank/a;b",
            "tank/\"q\"", "tank/ü", "tank/" + "x" * 300, "tank/.."],
)
def test_bad_dataset_names(bad: str) -> None:
    assert names.dataset_problem(bad)


@pytest.mark.parametrize("bad", ["", "-x", " x", "x ", "a:b", "a/b", "--config=x"])
def test_bad_remote_names(bad: str) -> None:
    assert names.remote_problem(bad)


def test_zfs_argv() -> None:
    assert zfs.send_argv("t/a@s2") == ["zfs", "send", "t/a@s2"]
    assert zfs.send_argv("t/a@s2", "t/a@s1") == ["zfs", "send", "-i", "t/a@s1", "t/a@s2"]
    assert zfs.receive_argv("t/r", force=False) == ["zfs", "receive", "t/r"]
    assert zfs.receive_argv("t/r", force=True) == ["zfs", "receive", "-F", "t/r"]
    assert zfs.destroy_snapshot_argv("t/a@s") == ["zfs", "destroy", "t/a@s"]
    with pytest.raises(ValueError, match="not a snapshot"):
        zfs.destroy_snapshot_argv("t/a")
    assert zfs.snapshot_argv("t/a@s", "run1") == ["zfs", "snapshot", "-o", f"{zfs.PENDING_PROPERTY}=run1", "t/a@s"]


def test_parse_snapshots_keeps_only_the_datasets_own_sorted_by_txg() -> None:
    output = "\n".join([
        "t/a\tguid\t1", "t/a\tcreatetxg\t5", "t/a\tcreation\t100",
        "t/a@late\tguid\t18446744073709551615", "t/a@late\tcreatetxg\t90", "t/a@late\tcreation\t50",
        f"t/a@late\t{zfs.PENDING_PROPERTY}\t-",
        "t/a@early\tguid\t7", "t/a@early\tcreatetxg\t10", "t/a@early\tcreation\t999",
        f"t/a@early\t{zfs.PENDING_PROPERTY}\tbackup-host:0b6f2d3e-9a41-4c7e-8f21-5d0c9e7a1b23",
        "t/a@early\tuserrefs\t2",
        "t/a@byhand\tguid\t6", "t/a@byhand\tcreatetxg\t95", "t/a@byhand\tcreation\t60",
        f"t/a@byhand\t{zfs.PENDING_PROPERTY}\tyes",
        "t/a/child@x\tguid\t8", "t/a/child@x\tcreatetxg\t11", "t/a/child@x\tcreation\t1",
        "t/ab@y\tguid\t9", "t/ab@y\tcreatetxg\t12", "t/ab@y\tcreation\t1",
    ])
    snaps = zfs.parse_snapshots("t/a", output)
    assert [s.short_name for s in snaps] == ["early", "late", "byhand"]
    assert snaps[1].guid == "18446744073709551615"
    assert [(s.pending, s.foreign_mark) for s in snaps] == [(True, None), (False, None), (False, "yes")]
    assert (snaps[0].holds, snaps[1].holds) == (2, 0)  # userrefs; absent counts as none


@pytest.mark.parametrize("value", ["yes", "1", "host:run", "DRY-RUN", "host:0B6F2D3E-9A41-4C7E-8F21-5D0C9E7A1B23",
                                   "a b:0b6f2d3e-9a41-4c7e-8f21-5d0c9e7a1b23"])
def test_a_pending_mark_zfsglacier_never_writes_is_not_one(value: str) -> None:
    assert not zfs.is_pending_mark(value)


def test_the_pending_marks_zfsglacier_writes_are_recognised() -> None:
    marks = {zfs.new_pending_mark() for _ in range(3)}
    assert len(marks) == 3 and all(zfs.is_pending_mark(mark) for mark in marks)


def test_hold_and_release_argv() -> None:
    assert zfs.hold_argv("zfsglacier", "t/a@s") == ["zfs", "hold", "zfsglacier", "t/a@s"]
    assert zfs.release_argv("zfsglacier", "t/a@s") == ["zfs", "release", "zfsglacier", "t/a@s"]
    assert zfs.send_argv("t/a@b", "t/a@a", ["-L", "-e"]) == ["zfs", "send", "-L", "-e", "-i", "t/a@a", "t/a@b"]


def test_rclone_argv_always_has_the_config_and_a_remote_prefixed_path() -> None:
    rc = Rclone("/usr/bin/rclone", Path("/etc/r.conf"))
    assert rc.rcat_argv("r:b/t/a/x") == ["/usr/bin/rclone", "--config", "/etc/r.conf", "rcat", "r:b/t/a/x"]
    assert rc.cat_argv("r:b/x")[-2:] == ["cat", "r:b/x"]
    assert Rclone("rclone", None).deletefile_argv("r:b/x") == ["rclone", "deletefile", "r:b/x"]
    assert "--files-only" in rc.lsjson_argv("r:b")


def test_parse_lsjson() -> None:
    out = b'[{"Path":"a","Name":"a","Size":5,"IsDir":false},{"Path":"d","Name":"d","Size":-1,"IsDir":true}]'
    assert [(o.name, o.size) for o in parse_lsjson(out)] == [("a", 5)]
    with pytest.raises(RemoteError, match="unexpected output"):
        parse_lsjson(b"not json")


def test_render_is_copy_pastable() -> None:
    argv = ["zfs", "send", "tank/my data@s;$(rm -rf /)"]
    assert render(argv) == "zfs send 'tank/my data@s;$(rm -rf /)'"
    assert render_pipeline([["a", "b c"], ["d"]]) == "a 'b c' | d"


def test_rclone_gets_its_settings_and_cloud_credentials_and_nothing_else(monkeypatch: pytest.MonkeyPatch) -> None:
    from zfsglacier.remote import rclone

    passed = [("AWS_SECRET_ACCESS_KEY", "aws-marker"), ("RCLONE_S3_SECRET_ACCESS_KEY", "rclone-marker")]
    for name, value in [*passed, ("MY_DB_PASSWORD", "db-marker")]:
        monkeypatch.setenv(name, value)
    variables = rclone.env()
    assert [(name, variables.get(name)) for name, _ in passed] == passed
    assert "MY_DB_PASSWORD" not in variables


def test_short_rclone_calls_retry_less_unless_the_user_says_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    from zfsglacier.remote import rclone

    monkeypatch.delenv("RCLONE_LOW_LEVEL_RETRIES", raising=False)
    assert rclone.short_call_env()["RCLONE_LOW_LEVEL_RETRIES"] == rclone.SHORT_CALL_LOW_LEVEL_RETRIES
    assert "RCLONE_LOW_LEVEL_RETRIES" not in rclone.env()  # the data streams keep rclone's default
    monkeypatch.setenv("RCLONE_LOW_LEVEL_RETRIES", "10")
    assert rclone.short_call_env()["RCLONE_LOW_LEVEL_RETRIES"] == "10"


def test_redact_hides_secrets_of_the_environment_and_the_rclone_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zfsglacier.remote.rclone_errors import REDACTED, redact

    conf = tmp_path / "rclone.conf"
    conf.write_text("[r]\ntype = s3\nenv_auth = false\naccess_key_id = AKIDCONF\nsecret_access_key = conf-secret\n")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setenv("HARMLESS", "conf")
    monkeypatch.setenv("XKB_KEYMAP", "said")  # not a key
    text = "AKIDCONF said conf-secret and env-secret; env_auth is false"
    assert redact(text, conf) == f"{REDACTED} said {REDACTED} and {REDACTED}; env_auth is false"
    garbled = 'CRITICAL: Failed to load config file "x": could not parse line: secret_access_key hunter22'
    assert "hunter22" not in redact(garbled, None)
    assert "could not parse line:" in redact(garbled, None)


@pytest.mark.parametrize(("stderr", "says"), [
    ('CRITICAL: Failed to load config file "/c": could not parse line: [r', "/c.conf ([rclone] config_path): rclone "
                                                                            "cannot parse it"),
    ('CRITICAL: Failed to create file system for "r:b": didn\'t find section in config file ("r")',
     "[rclone] remote = 'r': no such remote in rclone config file /c.conf"),
    ('CRITICAL: Failed to create file system for "r:b": didn\'t find backend called "nope"',
     "[rclone] remote: its type 'nope' in rclone config file /c.conf"),
])
def test_rclone_config_mistakes_are_config_errors(stderr: str, says: str) -> None:
    from zfsglacier.errors import ConfigError

    failure = Rclone("/nonexistent/rclone", Path("/c.conf")).failure("rclone lsjson", "listing failed", stderr)
    assert isinstance(failure, ConfigError)
    assert says in str(failure)


def test_other_rclone_failures_are_remote_errors_without_timestamps() -> None:
    stderr = "2026/11/26 12:38:55 ERROR : error listing: connection refused\n2026/11/26 12:38:55 NOTICE: gave up"
    failure = Rclone("/nonexistent/rclone", None).failure("rclone lsjson", "listing r:b failed (exit 5)", stderr)
    assert isinstance(failure, RemoteError)
    assert str(failure) == "rclone lsjson: listing r:b failed (exit 5): ERROR : error listing: connection refused | " \
                           "NOTICE: gave up"


def test_rclone_failures_are_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "rclone.conf"
    conf.write_text("[r]\ntype = webdav\npass = obscured-password\n")
    monkeypatch.setenv("RCLONE_WEBDAV_BEARER_TOKEN", "bearer-marker")
    stderr = "ERROR : 401 for obscured-password with bearer-marker"
    failure = Rclone("/nonexistent/rclone", conf).failure("rclone cat", "reading r:b/x failed (exit 1)", stderr)
    assert "obscured-password" not in str(failure) and "bearer-marker" not in str(failure)
    assert "ERROR : 401 for" in str(failure)
