"""[rclone] stall_timeout: parsing, the watch that kills a silent rclone, and the multipart listing."""

from __future__ import annotations

import sys

import pytest

from zfsglacier.config import DEFAULT_STALL_TIMEOUT, parse_config
from zfsglacier.errors import ConfigError, RemoteError
from zfsglacier.proc import PIPE, Child
from zfsglacier.remote.rclone_output import parse_upload_listing
from zfsglacier.stream.stall import StallWatch, describe_seconds

BASE = "[zfs]\ndataset = tank/data\n[rclone]\nremote = r\nbucket_name = b\n"


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90.0), ("10m", 600.0), ("1h", 3600.0), ("2.5m", 150.0), ("45", 45.0), ("0", None),
])
def test_stall_timeout_durations(text: str, seconds: float | None) -> None:
    assert parse_config(BASE + f"stall_timeout = {text}\n").stall_timeout == seconds


def test_stall_timeout_default_is_ten_minutes() -> None:
    assert parse_config(BASE).stall_timeout == DEFAULT_STALL_TIMEOUT == 600.0


@pytest.mark.parametrize("text", ["soon", "-1", "10 min", "1d", "m"])
def test_bad_stall_timeout_names_the_key(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^\[rclone\] stall_timeout = .*expected a duration"):
        parse_config(BASE + f"stall_timeout = {text}\n")


@pytest.mark.parametrize(("seconds", "text"), [(600, "10m"), (90, "90s"), (3600, "1h"), (2, "2s"), (1.5, "1.5s")])
def test_durations_are_described_as_the_config_writes_them(seconds: float, text: str) -> None:
    assert describe_seconds(seconds) == text


def sleeper() -> Child:
    """A child that reads nothing and never ends by itself: a silent remote."""
    return Child("rclone rcat", [sys.executable, "-c", "import time; time.sleep(60)"], error=RemoteError,
                 stdin=PIPE)


def test_a_wait_longer_than_the_timeout_kills_the_child_and_reports_the_stall() -> None:
    child = sleeper()
    watch = StallWatch(child, 0.3, "the remote accepted no data")
    try:
        with watch.waiting():
            assert child.exit_status_within(10) is not None  # ended by the watch, not by itself
        assert watch.fired
        assert str(watch.error()) == ("rclone rcat: the remote accepted no data for 0.3s "
                                      "([rclone] stall_timeout = 0.3s)")
    finally:
        watch.close()
        child.abort()


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Killable:
    """Stands in for the child the watch follows: records whether it was killed."""

    stage = "rclone cat"

    def __init__(self) -> None:
        self.killed = False

    def kill(self) -> None:
        self.killed = True


def test_a_wait_fires_only_past_the_timeout() -> None:
    clock, child = Clock(), Killable()
    watch = StallWatch(child, 5.0, "the remote sent no data", clock=clock, thread=False)  # type: ignore[arg-type]
    with watch.waiting():
        clock.now += 5.0
        assert not watch.check() and not child.killed  # exactly the timeout: not yet
        clock.now += 0.01
        assert watch.check() and child.killed
    assert str(watch.error()) == "rclone cat: the remote sent no data for 5s ([rclone] stall_timeout = 5s)"


def test_moving_data_keeps_a_long_wait_alive_and_no_wait_is_never_a_stall() -> None:
    clock, child = Clock(), Killable()
    watch = StallWatch(child, 0.5, "the remote sent no data", clock=clock, thread=False)  # type: ignore[arg-type]
    watch.begin()
    for _ in range(8):  # 1.2 s of waiting in all, never 0.5 s without data
        clock.now += 0.15
        watch.moved()
        assert not watch.check()
    watch.end()
    clock.now += 3600  # not waiting: however long, not a stall
    assert not watch.check() and not child.killed


def test_no_timeout_never_fires() -> None:
    clock, child = Clock(), Killable()
    watch = StallWatch(child, None, "the remote accepted no data", clock=clock)  # type: ignore[arg-type]
    with watch.waiting():
        clock.now += 10**6
        assert not watch.check()
    assert not child.killed


def test_multipart_upload_listing() -> None:
    listing = b'{"bucket": [{"Key": "pool/data/b.zst", "UploadId": "2"}, {"Key": "pool/data/a.zst"}], "other": null}'
    assert parse_upload_listing(listing) == ["pool/data/a.zst", "pool/data/b.zst"]
    assert parse_upload_listing(b"{}") == []
    with pytest.raises(RemoteError, match="unexpected multipart upload listing"):
        parse_upload_listing(b"[1]")
