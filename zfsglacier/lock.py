"""One lock per dataset (flock), so two runs never work on the same dataset at once.

The kernel drops an flock when its holder dies, so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

from zfsglacier.errors import LockBusyError, UsageError

DEFAULT_LOCK_DIR = Path("/run/lock/zfsglacier")


def lock_dir() -> Path:
    """Root's runs lock in /run/lock/zfsglacier; a user's (zfs allow delegation) in a directory of
    its own, since it cannot create files in root's. So root's and a user's runs do not exclude each
    other: run every command for a dataset as one user."""
    default = DEFAULT_LOCK_DIR if os.geteuid() == 0 else Path(f"{DEFAULT_LOCK_DIR}-uid{os.geteuid()}")
    return Path(os.environ.get("ZFSGLACIER_LOCK_DIR", str(default)))


# Quoting can triple a 255-character dataset name; file names may have at most 255 bytes.
_MAX_QUOTED = 200


def lock_file_name(dataset: str) -> str:
    """The dataset name, quoted; when that is too long for a file name, its start and a hash of all of it."""
    quoted = quote(dataset, safe="")
    if len(quoted) > _MAX_QUOTED:
        quoted = f"{quoted[:_MAX_QUOTED - 65]}-{hashlib.sha256(dataset.encode()).hexdigest()}"
    return quoted + ".lock"


class DatasetLock:
    def __init__(self, dataset: str, purpose: str) -> None:
        self.dataset = dataset
        self.purpose = purpose
        self.path = lock_dir() / lock_file_name(dataset)
        self._fd: int | None = None

    def __enter__(self) -> DatasetLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise UsageError(f"cannot create lock file {self.path}: {exc.strerror} "
                             "(set ZFSGLACIER_LOCK_DIR to a writable directory, or run as root)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            raise LockBusyError(
                f"{self.dataset} is busy: another zfsglacier run holds {self.path}"
                + (f" ({holder})" if holder else "")
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {self.purpose}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
