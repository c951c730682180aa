"""Which zfsglacier code was measured: the git commit, uncommitted changes, and a hash of the codec
module that every worker checks, since the package may be edited while a long run goes on."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import zfsglacier.codec

# What the measured cases run. adaptive.py is left out: it only serves level "auto", which is not measured.
CODEC_FILES = ("registry.py", "zstd_frames.py")


def codec_source_sha256() -> str:
    """One hash over the files that decide what the in-process codecs do."""
    package = Path(zfsglacier.codec.__file__).parent
    digest = hashlib.sha256()
    for name in CODEC_FILES:
        path = package / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.exists() else b""))
    return digest.hexdigest()


def _git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def describe() -> dict[str, str | list[str]]:
    package = Path(zfsglacier.codec.__file__).parent.parent
    repo = package.parent
    return {
        "commit": _git(repo, "rev-parse", "HEAD") or "unknown",
        "uncommitted": _git(repo, "status", "--porcelain", "--", package.name).splitlines(),
        "codec_source_sha256": codec_source_sha256(),
    }
