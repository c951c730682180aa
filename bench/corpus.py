"""A deterministic stand-in for a `zfs send` stream: text-like data, incompressible data, and runs of
zeros mixed with many small file-like records, roughly a third each, interleaved in segments of
256 KiB to 4 MiB so that every codec window sees the mix rather than three long blocks.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

KIB = 1 << 10
MIB = 1 << 20

_SYLLABLES = (
    "a",
    "e",
    "i",
    "o",
    "u",
    "ka",
    "ri",
    "to",
    "na",
    "mi",
    "shi",
    "ru",
    "ne",
    "ba",
    "de",
    "lo",
    "ver",
    "sta",
    "con",
    "tra",
    "ing",
    "ion",
    "er",
    "al",
    "re",
    "in",
    "un",
    "pro",
    "per",
    "sys",
    "net",
)
_LEVELS = ("DEBUG", "INFO", "INFO", "INFO", "WARN", "ERROR")
_SERVICES = ("sshd", "kernel", "nginx", "postgres", "cron", "systemd", "zed", "smartd", "dockerd", "rsyslogd")

Generator = Callable[[random.Random, int], bytes]


def _vocabulary(rng: random.Random, size: int = 4000) -> list[str]:
    return ["".join(rng.choices(_SYLLABLES, k=rng.randint(1, 4))) for _ in range(size)]


def _zipf_weights(n: int) -> list[float]:
    return [1.0 / (rank + 1) for rank in range(n)]


class _Text:
    """Log lines and prose from a Zipf-weighted vocabulary: compresses a few times over, like /var/log."""

    def __init__(self, rng: random.Random) -> None:
        self._words = _vocabulary(rng)
        self._cum = list(_cumulative(_zipf_weights(len(self._words))))
        self._clock = 1_700_000_000

    def _words_line(self, rng: random.Random, count: int) -> str:
        return " ".join(rng.choices(self._words, cum_weights=self._cum, k=count))

    def _log_line(self, rng: random.Random) -> str:
        self._clock += rng.randint(0, 3)
        return (
            f"{self._clock}.{rng.randrange(1_000_000):06d} host{rng.randrange(8):02d} "
            f"{rng.choice(_SERVICES)}[{rng.randrange(1, 65536)}]: {rng.choice(_LEVELS)} "
            f"{self._words_line(rng, rng.randint(3, 14))} id={rng.getrandbits(32):08x}\n"
        )

    def __call__(self, rng: random.Random, size: int) -> bytes:
        lines: list[str] = []
        total = 0
        while total < size:
            line = self._log_line(rng) if rng.random() < 0.7 else self._words_line(rng, rng.randint(8, 40)) + ".\n"
            lines.append(line)
            total += len(line)
        return "".join(lines).encode()[:size]


def _cumulative(weights: list[float]) -> Iterator[float]:
    total = 0.0
    for weight in weights:
        total += weight
        yield total


class _Incompressible:
    """Random bytes, and deflate output of text (what compressed files, media and archives look like)."""

    def __init__(self, text: Generator) -> None:
        self._text = text

    def __call__(self, rng: random.Random, size: int) -> bytes:
        if rng.random() < 0.75:
            return rng.randbytes(size)
        out = bytearray()
        while len(out) < size:
            out += zlib.compress(self._text(rng, 4 * min(size, MIB)), 6)
        return bytes(out[:size])


class _Records:
    """Runs of zeros (holes, preallocated files) and many small file-like records, half each by volume.

    A record is a fixed 312-byte header (like a `zfs send` DRR header: mostly zero, a few fields) and a
    small payload of text or random bytes padded to 8 bytes.
    """

    def __init__(self, text: Generator) -> None:
        self._text = text
        self._object = 0

    def _record(self, rng: random.Random) -> bytes:
        self._object += 1
        length = min(int(rng.expovariate(1 / 2000)) + 1, 64 * KIB)
        payload = self._text(rng, length) if rng.random() < 0.6 else rng.randbytes(length)
        payload += bytes(-len(payload) % 8)
        kind = rng.randrange(1, 23)
        header = struct.pack("<IIQQQQ", 0x2F5BACBA, kind, self._object, rng.getrandbits(64), 0, len(payload))
        return header.ljust(312, b"\0") + payload

    def __call__(self, rng: random.Random, size: int) -> bytes:
        if rng.random() < 0.5:
            return bytes(size)
        out = bytearray()
        while len(out) < size:
            out += self._record(rng)
        return bytes(out[:size])


def _segments(rng: random.Random, size: int) -> Iterator[tuple[int, int]]:
    """(kind, length) pairs: kinds 0, 1, 2 once each per round, in shuffled order, so that even a small
    corpus is close to thirds."""
    left = size
    while left > 0:
        kinds = [0, 1, 2]
        rng.shuffle(kinds)
        for kind in kinds:
            length = min(left, rng.randint(256 * KIB, 4 * MIB))
            if length:
                yield kind, length
            left -= length


def write_corpus(out: BinaryIO, size: int, seed: int) -> int:
    """Write `size` bytes determined by `seed`; return the byte count."""
    rng = random.Random(seed)
    text = _Text(random.Random(seed + 1))
    generators: tuple[Generator, ...] = (text, _Incompressible(text), _Records(text))
    written = 0
    for kind, length in _segments(rng, size):
        data = generators[kind](rng, length)
        out.write(data)
        written += len(data)
    return written


def make_corpus(path: Path, size: int, seed: int) -> Path:
    with path.open("wb") as out:
        write_corpus(out, size, seed)
    return path
