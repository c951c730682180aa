"""`level = auto`: zstd frames whose level follows the pipeline's bottleneck.

The stream is cut into frames of FRAME_BYTES raw bytes. While a frame is written, three shares of
its wall time are measured: waiting for input (the caller's time between writes: zfs send is slower),
waiting for output (blocked writing to rclone: the upload is slower), and compressing (the rest).
When the pipeline waited on either end for a good share of the frame, the CPU had time to spare and
the next frame gets a higher level, which stores fewer bytes at the same wall time; when compression
itself was the bottleneck, the level drops so that it never holds the pipeline back.
Any zstd reader decodes the result: a stream of ordinary frames.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import zstandard

FRAME_BYTES = 32 << 20
# Levels 3 to 8 share a 2 MiB window; above, two workers' buffers alone take more than 100 MB.
LEVELS = range(1, 9)
START_LEVEL = 3
RAISE_WHEN_WAITING = 0.25  # share of a frame spent waiting on input or output
LOWER_WHEN_BUSY = 0.90  # share of a frame spent compressing


class _Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...


class _TimedSink:
    def __init__(self, sink: _Sink, clock: Callable[[], float]) -> None:
        self._sink = sink
        self._clock = clock
        self.blocked = 0.0

    def write(self, data: bytes) -> int:
        started = self._clock()
        written = self._sink.write(data)
        self.blocked += self._clock() - started
        return written


def next_level(level: int, waiting_input: float, waiting_output: float) -> int:
    """The level for the next frame, from the shares of the last frame's wall time."""
    busy = 1.0 - waiting_input - waiting_output
    if waiting_input + waiting_output >= RAISE_WHEN_WAITING:
        return min(level + 1, LEVELS[-1])
    if busy >= LOWER_WHEN_BUSY:
        return max(level - 1, LEVELS[0])
    return level


class AdaptiveZstdWriter:
    def __init__(self, sink: _Sink, threads: int, compressor: Callable[[int, int], zstandard.ZstdCompressor], *,
                 frame_bytes: int = FRAME_BYTES, clock: Callable[[], float] = time.monotonic) -> None:
        self._compressor = compressor
        self._clock = clock
        self._sink = _TimedSink(sink, clock)
        self._threads = threads
        self._frame_bytes = frame_bytes
        self.level = START_LEVEL
        self.frames: list[tuple[int, int]] = []  # (level, raw bytes) of each finished frame
        self._start_frame()

    def _start_frame(self) -> None:
        self._writer = self._compressor(self.level, self._threads).stream_writer(self._sink, closefd=False)  # type: ignore[arg-type]
        self._frame_raw = 0
        self._waiting_input = 0.0
        self._sink.blocked = 0.0
        self._frame_started = self._clock()
        self._last_return: float | None = None

    def _end_frame(self) -> None:
        self._writer.flush(zstandard.FLUSH_FRAME)
        self.frames.append((self.level, self._frame_raw))
        wall = max(self._clock() - self._frame_started, 1e-9)
        self.level = next_level(self.level, self._waiting_input / wall, self._sink.blocked / wall)

    def write(self, data: bytes) -> int:
        now = self._clock()
        if self._last_return is not None:
            self._waiting_input += now - self._last_return
        self._writer.write(data)
        self._frame_raw += len(data)
        if self._frame_raw >= self._frame_bytes:
            self._end_frame()
            self._start_frame()
        self._last_return = self._clock()
        return len(data)

    def close(self) -> None:
        if self._frame_raw or not self.frames:
            self.frames.append((self.level, self._frame_raw))
            self._writer.close()  # type: ignore[no-untyped-call]  # ends the last frame; leaves the sink open
