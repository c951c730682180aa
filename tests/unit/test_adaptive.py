import io
import os
import time

import pytest

from zfsglacier.adaptive import LEVELS, START_LEVEL, AdaptiveZstdWriter, next_level
from zfsglacier.codecs import get_codec, zstd_compressor
from zfsglacier.config import parse_config
from zfsglacier.errors import ConfigError
from zfsglacier.zstdframes import FrameTracker

DATA = (b"log line: backup of pool/data went fine\n" * 30_000 + os.urandom(300_000)) * 6


def test_level_rises_when_the_pipeline_waits_and_falls_when_compression_is_the_bottleneck() -> None:
    assert next_level(3, waiting_input=0.0, waiting_output=0.5) == 4  # slow upload: spend CPU on ratio
    assert next_level(3, waiting_input=0.4, waiting_output=0.0) == 4  # slow zfs send: the same
    assert next_level(3, waiting_input=0.02, waiting_output=0.03) == 2  # compression holds everyone up
    assert next_level(3, waiting_input=0.10, waiting_output=0.05) == 3  # in between: stay
    assert next_level(LEVELS[-1], 0.0, 0.9) == LEVELS[-1]
    assert next_level(LEVELS[0], 0.0, 0.0) == LEVELS[0]


class SlowSink:
    """An upload of 5 MB/s: every write waits as a full pipe to a slow rclone would."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()

    def write(self, data: bytes) -> int:
        time.sleep(len(data) / 5e6)
        return self.buffer.write(data)


def decode(blob: bytes) -> bytes:
    reader = get_codec("zstd").open_reader(io.BytesIO(blob))
    out = bytearray()
    while chunk := reader.read(1 << 20):
        out += chunk
    return bytes(out)


def test_a_slow_upload_raises_the_level_frame_by_frame_and_the_stream_stays_one_valid_zstd_stream() -> None:
    sink = SlowSink()
    writer = AdaptiveZstdWriter(sink, 2, zstd_compressor, frame_bytes=2 << 20)
    for start in range(0, len(DATA), 256 << 10):
        writer.write(DATA[start:start + (256 << 10)])
    writer.close()
    levels = [level for level, _ in writer.frames]
    assert levels[0] == START_LEVEL
    assert levels == sorted(levels) and levels[-1] > START_LEVEL + 2
    assert sum(raw for _, raw in writer.frames) == len(DATA)
    blob = sink.buffer.getvalue()
    tracker = FrameTracker()
    tracker.feed(blob)
    assert tracker.frames == len(writer.frames) and tracker.at_frame_boundary
    assert decode(blob) == DATA


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
