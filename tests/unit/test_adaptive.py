import io
import os
from pathlib import Path

import pytest

from zfsglacier.codec.adaptive import LEVELS, START_LEVEL, AdaptiveZstdWriter, next_level, proc_stat_cpu_times
from zfsglacier.codec.registry import get_codec, zstd_compressor
from zfsglacier.codec.zstd_frames import FrameTracker
from zfsglacier.config import parse_config
from zfsglacier.errors import ConfigError

DATA = (b"log line: backup of pool/data went fine\n" * 30_000 + os.urandom(300_000)) * 6


def test_level_rises_with_idle_cpu_and_falls_without() -> None:
    assert next_level(3, idle_share=0.6) == 4  # waiting on a slow upload or disk: spend CPU on ratio
    assert next_level(3, idle_share=0.02) == 2  # compression competes with zfs send and rclone
    assert next_level(3, idle_share=0.15) == 3  # in between: stay
    assert next_level(LEVELS[-1], 0.9) == LEVELS[-1]
    assert next_level(LEVELS[0], 0.0) == LEVELS[0]


class FakeCpu:
    """CPU counters that report a fixed idle share between any two readings."""

    def __init__(self, idle_share: float) -> None:
        self.idle_share = idle_share
        self.total = 0.0

    def __call__(self) -> tuple[float, float]:
        self.total += 100.0
        return self.total * self.idle_share, self.total


def decode(blob: bytes) -> bytes:
    reader = get_codec("zstd").open_reader(io.BytesIO(blob))
    out = bytearray()
    while chunk := reader.read(1 << 20):
        out += chunk
    return bytes(out)


def write_all(idle_share: float) -> tuple[AdaptiveZstdWriter, bytes]:
    sink = io.BytesIO()
    writer = AdaptiveZstdWriter(sink, 2, zstd_compressor, frame_bytes=1 << 20, cpu_times=FakeCpu(idle_share))
    for start in range(0, len(DATA), 256 << 10):
        writer.write(DATA[start:start + (256 << 10)])
    writer.close()
    return writer, sink.getvalue()


@pytest.mark.parametrize(("idle_share", "direction"), [(0.8, "up"), (0.0, "down")])
def test_levels_follow_the_cpu_frame_by_frame_and_the_stream_stays_one_valid_zstd_stream(
    idle_share: float, direction: str
) -> None:
    writer, blob = write_all(idle_share)
    levels = [level for level, _ in writer.frames]
    assert levels[:2] == [START_LEVEL, START_LEVEL] and len(levels) > 6
    expected = LEVELS[-1] if direction == "up" else LEVELS[0]
    assert levels == (sorted(levels) if direction == "up" else sorted(levels, reverse=True))
    assert levels[-1] == expected
    assert sum(raw for _, raw in writer.frames) == len(DATA)
    tracker = FrameTracker()
    tracker.feed(blob)
    assert tracker.frames == len(writer.frames) and tracker.at_frame_boundary
    assert decode(blob) == DATA


def test_proc_stat_parsing(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 5 50 800 20 1 2 3 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n")
    assert proc_stat_cpu_times(stat) == (820.0, 981.0)
    idle, total = proc_stat_cpu_times()  # the real one
    assert 0 <= idle <= total


def test_empty_stream_is_one_empty_frame() -> None:
    sink = io.BytesIO()
    writer = AdaptiveZstdWriter(sink, 2, zstd_compressor)
    writer.close()
    assert decode(sink.getvalue()) == b"" and len(writer.frames) == 1


def test_auto_level_in_config_only_for_adaptive_codecs() -> None:
    base = "[zfs]\ndataset = t/a\n[rclone]\nremote = r\nbucket_name = b\n[compression]\n"
    assert parse_config(base + "compressor = zstd\nlevel = auto\n").level == "auto"
    with pytest.raises(ConfigError, match=r"\[compression\] level = 'auto': compressor pigz has no adaptive level"):
        parse_config(base + "compressor = pigz\nlevel = auto\n")


def test_auto_renders_as_zstd_adapt() -> None:
    assert get_codec("zstd").compress_argv("auto", 2) == ["zstd", "-q", "--adapt", "-T2"]
