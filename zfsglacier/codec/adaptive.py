"""`level = auto`: zstd frames whose level follows the machine's spare CPU.

The stream is cut into frames of FRAME_BYTES raw bytes. While a frame is written, the share of the
machine's CPU time that stayed idle is measured (/proc/stat). When a quarter or more stayed idle, the
pipeline is waiting on something else (a slow upload, a slow disk), so the next frame gets a higher
level, which stores fewer bytes at the same wall time; when almost none stayed idle, compression is
competing for the CPU that zfs send and rclone also need, so the level drops.
Any zstd reader decodes the result: a stream of ordinary frames.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import zstandard

FRAME_BYTES = 32 << 20
# Levels 3 to 8 share a 2 MiB window; above, two workers' buffers alone take more than 100 MB.
LEVELS = range(1, 9)
START_LEVEL = 3
RAISE_WHEN_IDLE = 0.25  # share of the machine's CPU time left idle during a frame
LOWER_WHEN_IDLE = 0.05

# (idle, total) CPU time counters of the whole machine, in any unit.
CpuTimes = Callable[[], tuple[float, float]]


def proc_stat_cpu_times(stat: Path = Path("/proc/stat")) -> tuple[float, float]:
    fields = [float(v) for v in stat.read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return idle, sum(fields[:8])  # guest time is already counted in user


class _Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...


def next_level(level: int, idle_share: float) -> int:
    """The level for the next frame, from the share of CPU time left idle during the last one."""
    if idle_share >= RAISE_WHEN_IDLE:
        return min(level + 1, LEVELS[-1])
    if idle_share <= LOWER_WHEN_IDLE:
        return max(level - 1, LEVELS[0])
    return level


class AdaptiveZstdWriter:
    def __init__(self, sink: _Sink, threads: int, compressor: Callable[[int, int], zstandard.ZstdCompressor], *,
                 frame_bytes: int = FRAME_BYTES, cpu_times: CpuTimes = proc_stat_cpu_times) -> None:
        self._sink = sink
        self._compressor = compressor
        self._cpu_times = cpu_times
        self._threads = threads
        self._frame_bytes = frame_bytes
        self.level = START_LEVEL
        self.frames: list[tuple[int, int]] = []  # (level, raw bytes) of each finished frame
        self._start_frame()

    def _start_frame(self) -> None:
        self._writer = self._compressor(self.level, self._threads).stream_writer(
            self._sink, closefd=False  # type: ignore[arg-type]
        )
        self._frame_raw = 0
        self._frame_cpu = self._cpu_times()

    def _end_frame(self) -> None:
        self._writer.flush(zstandard.FLUSH_FRAME)
        self.frames.append((self.level, self._frame_raw))
        idle, total = self._cpu_times()
        spent = total - self._frame_cpu[1]
        # The first frame only fills the empty pipes and queues downstream: it never waits on them.
        if spent > 0 and len(self.frames) > 1:
            self.level = next_level(self.level, (idle - self._frame_cpu[0]) / spent)

    def write(self, data: bytes) -> int:
        self._writer.write(data)
        self._frame_raw += len(data)
        if self._frame_raw >= self._frame_bytes:
            self._end_frame()
            self._start_frame()
        return len(data)

    def close(self) -> None:
        if self._frame_raw or not self.frames:
            self.frames.append((self.level, self._frame_raw))
            self._writer.close()  # type: ignore[no-untyped-call]  # ends the last frame; leaves the sink open
