"""The hashing ends of the in-process data path, as the pipeline has them: sha256 and a byte count of
everything stored, on the way out to rclone (backup) or in from it (restore). Kept here rather than
imported so that the benchmark does not follow the pipeline's internal refactors."""

from __future__ import annotations

import hashlib
from typing import BinaryIO


class HashingSink:
    """What the compressor writes to: hashed, counted, then written on (to rclone's stdin in the pipeline)."""

    def __init__(self, out: BinaryIO, *, digest: bool = True) -> None:
        self._out = out
        self._hash = hashlib.sha256()
        self._digest = digest
        self.bytes = 0

    def write(self, data: bytes) -> int:
        if self._digest:
            self._hash.update(data)
        self._out.write(data)
        self.bytes += len(data)
        return len(data)

    def flush(self) -> None:
        self._out.flush()

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class HashingSource:
    """What the decompressor reads from: hashed and counted as it is read (from `rclone cat` in the pipeline)."""

    def __init__(self, src: BinaryIO, chunk: int) -> None:
        self._src = src
        self._chunk = chunk
        self._hash = hashlib.sha256()
        self.bytes = 0

    def read(self, size: int = -1) -> bytes:
        data = self._src.read(size if size > 0 else self._chunk)
        self._hash.update(data)
        self.bytes += len(data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        while self.read(self._chunk):
            pass

    def hexdigest(self) -> str:
        return self._hash.hexdigest()
