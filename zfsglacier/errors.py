"""The error hierarchy. Each class carries the exit code the CLI returns for it.

Exit codes are defined here and only here; the CLI maps exceptions to them in one place.
A child's exit status is never passed through as ours: it is part of the message instead.
"""

from __future__ import annotations

from typing import Protocol

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_ZFS = 3
EXIT_REMOTE = 4
EXIT_INTEGRITY = 5
EXIT_LOCK_BUSY = 6
EXIT_REFUSED = 7
EXIT_CHAIN = 8
EXIT_THAW_PENDING = 9
EXIT_SIGNAL_BASE = 128

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_INTERNAL: "internal error (a bug: please report it with the output of --debug)",
    EXIT_USAGE: "usage or configuration error",
    EXIT_ZFS: "a zfs command failed",
    EXIT_REMOTE: "the remote or rclone failed",
    EXIT_INTEGRITY: "integrity failure: a stored object does not match its manifest",
    EXIT_LOCK_BUSY: "another zfsglacier run holds the lock for this dataset",
    EXIT_REFUSED: "refused: a restore or a thaw not confirmed, or the target exists without --force",
    EXIT_CHAIN: "no usable backup: the snapshot is not on the remote or its chain has a gap",
    EXIT_THAW_PENDING: "restore or verify not done: objects in cold storage (Glacier, Deep Archive) are being "
                       "thawed; run it again later, or with --wait",
    EXIT_SIGNAL_BASE: "128+N: stopped by signal N (SIGINT 130, SIGTERM 143)",
}


class ZfsglacierError(Exception):
    """Base of every error the CLI reports as one line without a traceback."""

    exit_code = EXIT_INTERNAL


class ConfigError(ZfsglacierError):
    exit_code = EXIT_USAGE


class UsageError(ZfsglacierError):
    exit_code = EXIT_USAGE


class StageError(ZfsglacierError):
    """A child process (a pipeline stage) failed; the message names the stage and its stderr tail."""

    def __init__(self, stage: str, detail: str, stderr_tail: str = "") -> None:
        self.stage = stage
        self.detail = detail
        self.stderr_tail = stderr_tail.strip()
        message = f"{stage}: {detail}"
        if self.stderr_tail:
            message += f": {self.stderr_tail}"
        super().__init__(message)


class StageErrorFactory(Protocol):
    """What a child's failure is turned into: an error class, or a function that picks one from what the
    child said (rclone_errors.read_error)."""

    def __call__(self, stage: str, detail: str, stderr_tail: str = "") -> StageError: ...


# zfs-fuse's daemon answers root only: every zfs command of another user fails with this.
_ZFS_FUSE_REFUSED = "connect: Permission denied"
RUN_AS_ROOT = "run zfsglacier as root"


class ZfsError(StageError):
    exit_code = EXIT_ZFS

    def __init__(self, stage: str, detail: str, stderr_tail: str = "") -> None:
        if _ZFS_FUSE_REFUSED in stderr_tail and RUN_AS_ROOT not in detail:
            detail += f" (zfs-fuse's daemon answers root only: {RUN_AS_ROOT})"
        super().__init__(stage, detail, stderr_tail)


class RemoteError(StageError):
    exit_code = EXIT_REMOTE


class ObjectFrozen(RemoteError):
    """A read refused because the object is in an archive tier (Glacier, Deep Archive) and not thawed.
    Restore and verify turn it into a thaw request; it reaches the user only from other commands."""


class AccessDenied(RemoteError):
    """The remote refused a request for want of permission (S3: AccessDenied, 403): a credential that may
    write backups but not delete them (README: least privilege), or an object under an Object Lock."""


class IntegrityError(ZfsglacierError):
    exit_code = EXIT_INTEGRITY


class LockBusyError(ZfsglacierError):
    exit_code = EXIT_LOCK_BUSY


class RefusedError(ZfsglacierError):
    exit_code = EXIT_REFUSED


class ChainError(ZfsglacierError):
    exit_code = EXIT_CHAIN


class ThawPending(ZfsglacierError):
    exit_code = EXIT_THAW_PENDING


class SignalReceived(ZfsglacierError):
    """Raised in the main thread when SIGINT/SIGTERM/SIGHUP arrives, so that cleanup runs. `during`: the
    step of the run it interrupted (signals.step), when one was marked."""

    def __init__(self, signum: int, name: str, during: str | None = None) -> None:
        self.signum = signum
        self.exit_code = EXIT_SIGNAL_BASE + signum
        super().__init__(f"interrupted by {name}" + (f" while {during}" if during else ""))
