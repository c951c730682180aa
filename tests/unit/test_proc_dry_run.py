"""The process layer's dry run: a change is printed as it would run, never run; a stream never starts."""

from __future__ import annotations

import pytest

from zfsglacier import proc
from zfsglacier.errors import ZfsError

MISSING = "/nonexistent/zfs"  # run for real, this would fail with "program not found"


def test_a_change_is_printed_with_its_why_and_input_and_not_run() -> None:
    printed: list[str] = []
    with proc.dry_run(printed.append):
        assert proc.dry_running()
        result = proc.run("zfs destroy", [MISSING, "destroy", "pool/a b@s"], error=ZfsError, change=True,
                          why="left by an interrupted run")
        proc.run("rclone rcat", [MISSING, "rcat", "r:x"], error=ZfsError, input=b"12345", change=True)
    assert not proc.dry_running()
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", "")
    assert printed == [f"{MISSING} destroy 'pool/a b@s'  # left by an interrupted run",
                       f"{MISSING} rcat r:x  # < 5 bytes"]


def test_a_read_still_runs_in_a_dry_run() -> None:
    with proc.dry_run(lambda line: None), pytest.raises(ZfsError, match="program not found"):
        proc.run("zfs list", [MISSING, "list"], error=ZfsError)


def test_a_stream_never_starts_in_a_dry_run() -> None:
    with proc.dry_run(lambda line: None), pytest.raises(RuntimeError, match="zfs send started inside a dry run"):
        proc.Child("zfs send", [MISSING, "send", "p@s"], error=ZfsError)
