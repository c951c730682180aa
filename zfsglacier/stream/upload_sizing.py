"""Sizing a streamed upload so that it fits the remote's part limit, with rclone's memory bounded.

rclone uploads a stream of unknown size to S3 in parts of `--s3-chunk-size` (5 MiB by default), and S3
takes at most 10,000 parts (some providers 1,000): 48.8 GiB at the default. The chunk is therefore
chosen from the stream's estimated size, with headroom for an estimate that falls short, and rclone
holds chunk x concurrency in memory, which is kept within [rclone] upload_memory by sending fewer parts
at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from zfsglacier.units import human_bytes

MIB = 1 << 20
MIN_CHUNK = 5 * MIB  # S3's smallest part (but the last)
HEADROOM = 1.5  # the estimate may fall short of the stream (zfs-fuse's `referenced` for a full)


@dataclass(frozen=True)
class UploadSizing:
    chunk_bytes: int
    concurrency: int
    max_parts: int
    expected_bytes: int | None

    @property
    def memory_bytes(self) -> int:
        return self.chunk_bytes * self.concurrency

    @property
    def multipart(self) -> bool:
        """The stream is expected to take more than one part (or its size is unknown)."""
        return self.expected_bytes is None or self.expected_bytes > self.chunk_bytes

    @property
    def largest_stream(self) -> int:
        return self.chunk_bytes * self.max_parts

    def rclone_flags(self) -> list[str]:
        """S3 backend flags; other backends ignore them."""
        return ["--s3-chunk-size", f"{self.chunk_bytes // MIB}Mi", "--s3-upload-concurrency", str(self.concurrency),
                "--s3-max-upload-parts", str(self.max_parts)]

    def describe(self) -> str:
        about = f"stream about {human_bytes(self.expected_bytes)}" if self.expected_bytes is not None \
            else "stream size unknown"
        return (f"upload in parts of {human_bytes(self.chunk_bytes)}, {self.concurrency} at a time "
                f"({human_bytes(self.memory_bytes)} buffered by rclone); {about}, at most {self.max_parts} parts: "
                f"up to {human_bytes(self.largest_stream)}")


def size_upload(expected_bytes: int | None, max_parts: int, concurrency: int, memory_bytes: int) -> UploadSizing:
    """The chunk that fits `expected_bytes` x HEADROOM in `max_parts` (whole MiB, at least 5 MiB), and the
    concurrency (at most the configured one, at least 1) that keeps chunk x concurrency within
    `memory_bytes` where it can."""
    chunk = MIN_CHUNK
    if expected_bytes is not None:
        chunk = max(chunk, math.ceil(expected_bytes * HEADROOM / max_parts / MIB) * MIB)
    fitting = max(1, memory_bytes // chunk)
    return UploadSizing(chunk, min(concurrency, fitting), max_parts, expected_bytes)
