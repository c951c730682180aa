"""rclone's argv: one builder per subcommand the tool runs, pure (no process is started here; rclone.py
makes the calls). Every remote path starts with the remote name and a colon, so no value from the config
can be taken by rclone as a flag.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zfsglacier.remote.object_lock import Lock

# Parallel requests when fetching many small objects (manifests) in one rclone process.
FETCH_PARALLEL = 32


@dataclass(frozen=True)
class RcloneArgv:
    """How to call rclone for one config file: the argv of each subcommand the tool runs (the calls
    themselves: rclone.Rclone)."""

    binary: str
    config_path: Path | None
    # [rclone] stall_timeout: how long a stream may move no data, and a short call may take at most.
    stall_timeout: float | None = None
    storage_class: str | None = None  # [rclone] storage_class, for data objects
    bwlimit: str | None = None
    extra_flags: tuple[str, ...] = ()
    # --as-of: read S3 buckets as they were at this time (RFC 3339, UTC); rclone then refuses every write.
    version_at: str | None = None

    def _base(self) -> list[str]:
        argv = [self.binary]
        if self.config_path is not None:
            argv += ["--config", str(self.config_path)]
        if self.bwlimit is not None:
            argv += ["--bwlimit", self.bwlimit]
        if self.version_at is not None:
            argv += ["--s3-version-at", self.version_at]
        return [*argv, *self.extra_flags]

    def rcat_argv(self, path: str, storage_class: str | None = None, sizing: Sequence[str] = (),
                  lock: Lock | None = None) -> list[str]:
        """`sizing`: the upload's part size flags (upload_sizing.UploadSizing.rclone_flags). `lock`: the S3
        Object Lock of the object, set by a call of its own once it is uploaded (S3 takes a lock with a
        single PUT, but some providers ignore it on a multipart upload)."""
        locking = ["--s3-object-lock-mode", lock.mode, "--s3-object-lock-retain-until-date", lock.until_text,
                   "--s3-object-lock-set-after-upload"] if lock else []
        return [*self._base(), "rcat", *(["--s3-storage-class", storage_class] if storage_class else []), *sizing,
                *locking, path]

    def head_argv(self, path: str) -> list[str]:
        """Read one byte: succeeds only when the object can be read now (not frozen in an archive tier)."""
        return [*self._base(), "cat", "--count", "1", path]

    def thaw_argv(self, directory: str, names: Iterable[str], priority: str, days: int) -> list[str]:
        includes = [arg for name in sorted(names) for arg in ("--include", "/" + glob_escape(name))]
        return [*self._base(), "backend", "restore", *includes, "-o", f"priority={priority}",
                "-o", f"lifetime={days}", directory]

    def cat_argv(self, path: str, offset: int = 0, count: int | None = None) -> list[str]:
        """The whole object, or `count` bytes of it from `offset` (one ranged request)."""
        ranged = ["--offset", str(offset), "--count", str(count)] if count is not None else []
        if count is None and offset:
            ranged = ["--offset", str(offset)]
        return [*self._base(), "cat", *ranged, path]

    def lsjson_argv(self, path: str) -> list[str]:
        # --no-modtime: on S3 each object's modification time costs a HEAD request (27 s for 2,000
        # objects on a loopback server, 0.2 s without); names and sizes come with the listing itself.
        return [*self._base(), "lsjson", "--files-only", "--no-mimetype", "--no-modtime", path]

    def locks_argv(self, directory: str, names: Iterable[str]) -> list[str]:
        """The metadata (S3: object-lock-mode, object-lock-retain-until-date) of some objects of a directory:
        one listing, and one HEAD request per object named."""
        includes = [arg for name in sorted(names) for arg in ("--include", "/" + glob_escape(name))]
        return [*self._base(), "lsjson", "--files-only", "--metadata", "--no-mimetype", *includes, directory]

    def versioning_argv(self, bucket: str) -> list[str]:
        return [*self._base(), "backend", "versioning", bucket]

    def tree_argv(self, path: str) -> list[str]:
        return [*self._base(), "lsjson", "--recursive", "--files-only", "--no-mimetype", "--no-modtime", path]

    def copy_named_in_tree_argv(self, directory: str, name: str, destination: Path) -> list[str]:
        """Every object called `name`, at any depth below `directory`, into a local folder, in parallel."""
        return [*self._base(), "copy", "--include", glob_escape(name), *self._parallel(), directory, str(destination)]

    def dirs_argv(self, path: str) -> list[str]:
        return [*self._base(), "lsjson", "--dirs-only", "--recursive", "--no-mimetype", "--no-modtime", path]

    def copy_listed_argv(self, directory: str, names_file: Path, destination: Path) -> list[str]:
        """Copy the objects named in `names_file` (one per line) into a local folder, in parallel."""
        return [*self._base(), "copy", "--files-from-raw", str(names_file), *self._parallel(), directory,
                str(destination)]

    def copy_matching_argv(self, directory: str, pattern: str, destination: Path) -> list[str]:
        """Copy the objects whose names match a glob into a local folder, in parallel."""
        return [*self._base(), "copy", "--max-depth", "1", "--include", pattern, *self._parallel(), directory,
                str(destination)]

    @staticmethod
    def _parallel() -> list[str]:
        # --use-server-modtime: the local copies' times do not matter, and on S3 the stored ones cost a
        # request per object.
        return ["--use-server-modtime", "--transfers", str(FETCH_PARALLEL), "--checkers", str(FETCH_PARALLEL)]

    def deletefile_argv(self, path: str) -> list[str]:
        return [*self._base(), "deletefile", path]

    def config_dump_argv(self) -> list[str]:
        return [*self._base(), "config", "dump"]

    def encode_argv(self, remote: str, paths: Sequence[str]) -> list[str]:
        """A crypt remote's encrypted names of `paths` (relative to its root), one per line."""
        return [*self._base(), "backend", "encode", f"{remote}:", *paths]

    def list_uploads_argv(self, directory: str) -> list[str]:
        return [*self._base(), "backend", "list-multipart-uploads", directory]

    def abort_uploads_argv(self, directory: str) -> list[str]:
        return [*self._base(), "backend", "cleanup", "-o", "max-age=0", directory]

    def listremotes_argv(self) -> list[str]:
        return [*self._base(), "listremotes"]

    def config_file_argv(self) -> list[str]:
        return [*self._base(), "config", "file"]

    def top_argv(self, remote: str) -> list[str]:
        """The names at the top of a remote (rclone says on stderr which of them a crypt remote cannot decrypt)."""
        return [*self._base(), "lsjson", "--max-depth", "1", "--no-mimetype", "--no-modtime", f"{remote}:"]


def glob_escape(name: str) -> str:
    """rclone filter patterns treat * ? [ ] { } and \\ specially."""
    return re.sub(r"([*?\[\]{}\\])", r"\\\1", name)

