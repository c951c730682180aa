"""Test data: deterministic trees of files (text, random, zeros, small and large), changed the same way
for the same seed, and digests to compare trees."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

_WORDS = ("zfs", "glacier", "snapshot", "stream", "bucket", "rclone", "restore", "pool", "delta", "block")


def seeded_random(seed: int | str) -> random.Random:
    return random.Random(str(seed))  # noqa: S311 - deterministic test data, not secrets


def _text(rng: random.Random, size: int) -> bytes:
    lines = []
    total = 0
    while total < size:
        line = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 12))) + "\n"
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()[:size]


def _content(rng: random.Random, kind: str) -> bytes:
    if kind == "text":
        return _text(rng, rng.randint(1024, 24 * 1024))
    if kind == "random":
        return rng.randbytes(rng.randint(1024, 48 * 1024))
    if kind == "zeros":
        return bytes(rng.randint(4096, 128 * 1024))
    return b""  # "empty"


def populate(path: Path, seed: int | str, n_files: int = 12) -> None:
    """Write a small mixed tree under path (a few hundred KiB), the same for the same seed.

    Text, random and zero-filled files, an empty file, nested and empty directories, a name with a
    space and a relative symlink.
    """
    rng = seeded_random(seed)
    kinds = ("text", "random", "zeros", "empty")
    folders = ("", "docs", "docs/deep/er", "bin", "with space")
    path.mkdir(parents=True, exist_ok=True)
    first: Path | None = None
    for index in range(n_files):
        kind = kinds[index % len(kinds)]
        folder = path / rng.choice(folders)
        folder.mkdir(parents=True, exist_ok=True)
        file = folder / f"{kind}-{index:03d}.dat"
        file.write_bytes(_content(rng, kind))
        first = first or file
    (path / "empty-dir" / "empty-child").mkdir(parents=True, exist_ok=True)
    if first is not None:
        link = path / "link-to-first"
        if not link.is_symlink():
            link.symlink_to(first.relative_to(path))


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def mutate(path: Path, seed: int | str) -> None:
    """Change a tree deterministically: add files and a folder, change one file, delete another."""
    rng = seeded_random(f"mutate-{seed}")
    files = _files(path)
    changed = [f for f in files if f.stat().st_size > 0]
    if changed:
        target = rng.choice(changed)
        data = bytearray(target.read_bytes())
        at = rng.randrange(len(data))
        data[at] ^= 0xFF  # at least this byte differs
        data += _text(rng, rng.randint(100, 4000))
        target.write_bytes(bytes(data))
        files.remove(target)
    if files:
        rng.choice(files).unlink()
    tag = hashlib.sha256(str(seed).encode()).hexdigest()[:8]
    (path / f"added-{tag}.dat").write_bytes(_content(rng, "random"))
    (path / f"added-dir-{tag}" / "nested").mkdir(parents=True, exist_ok=True)
    (path / f"added-dir-{tag}" / "nested" / "note.txt").write_bytes(_content(rng, "text"))


def tree_digest(path: Path) -> dict[str, str]:
    """Relative path -> sha256 of a file's content, "dir" for a directory, "symlink:TARGET" for a link."""
    digest: dict[str, str] = {}
    for entry in sorted(path.rglob("*")):
        rel = entry.relative_to(path).as_posix()
        if entry.is_symlink():
            digest[rel] = f"symlink:{os.readlink(entry)}"
        elif entry.is_dir():
            digest[rel] = "dir"
        else:
            digest[rel] = hashlib.sha256(entry.read_bytes()).hexdigest()
    return digest
