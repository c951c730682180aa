import io
import os
import struct
import subprocess

import pytest
import rig
import zstandard

from zfsglacier.codec.registry import CODECS, NO_COMPRESSION, detect_format, get_codec
from zfsglacier.codec.zstd_frames import FrameTracker

# Starts like a zfs stream (a DRR_BEGIN record's type field), as every stream handed to a codec does.
DATA = bytes(16) + b"".join([b"text line %d\n" % i for i in range(50_000)]) + os.urandom(300_000) + bytes(500_000)


def compress(name: str, data: bytes, level: int | None = None, threads: int = 2) -> bytes:
    codec = get_codec(name)
    sink = io.BytesIO()
    writer = codec.open_writer(sink, codec.default_level if level is None else level, threads)
    for start in range(0, len(data), 100_000):
        writer.write(data[start:start + 100_000])
    writer.close()
    return sink.getvalue()


def decompress(name: str, blob: bytes) -> bytes:
    reader = get_codec(name).open_reader(io.BytesIO(blob))
    out = bytearray()
    while chunk := reader.read(65536):
        out += chunk
    reader.close()
    return bytes(out)


@pytest.mark.parametrize("name", sorted(CODECS))
def test_round_trip_every_codec_and_level(name: str) -> None:
    codec = get_codec(name)
    for level in (codec.levels[0], codec.default_level, codec.levels[-1]) if name != "zstd" else (1, 3, 9):
        blob = compress(name, DATA, level)
        assert blob.startswith(codec.magic)
        assert detect_format(blob) == codec.format
        assert len(blob) < len(DATA) or name == NO_COMPRESSION
        assert decompress(name, blob) == DATA


@pytest.mark.parametrize("name", sorted(CODECS))
def test_empty_stream_round_trips(name: str) -> None:
    assert decompress(name, compress(name, b"")) == b""


DECODING = sorted(name for name, codec in CODECS.items() if codec.decode_errors)


def test_only_the_uncompressed_codec_has_nothing_to_decode() -> None:
    # Its objects are checked by size and sha256 alone (tests/unit/test_pipeline.py).
    assert sorted(CODECS) == sorted([*DECODING, NO_COMPRESSION])
    assert compress(NO_COMPRESSION, DATA) == DATA


@pytest.mark.parametrize("name", DECODING)
def test_corruption_raises_a_decode_error(name: str) -> None:
    codec = get_codec(name)
    blob = bytearray(compress(name, DATA))
    blob[len(blob) // 2] ^= 0xFF
    with pytest.raises(codec.decode_errors):
        decompress(name, bytes(blob))


@pytest.mark.parametrize("name", DECODING)
def test_truncation_raises_a_decode_error(name: str) -> None:
    codec = get_codec(name)
    blob = compress(name, DATA)
    with pytest.raises(codec.decode_errors):
        decompress(name, blob[: len(blob) * 2 // 3])


@pytest.mark.parametrize("name", sorted(CODECS))
def test_external_tool_reads_what_we_write(name: str) -> None:
    """The by-hand restore recipe: the stored object decompresses with the standard tool."""
    codec = get_codec(name)
    rig.need_tool(codec.decompress_argv[0])  # installed by scripts/bootstrap
    done = subprocess.run(list(codec.decompress_argv), input=compress(name, DATA), capture_output=True, check=True)
    assert done.stdout == DATA


@pytest.mark.parametrize("name", sorted(CODECS))
def test_we_read_what_the_external_tool_writes(name: str) -> None:
    codec = get_codec(name)
    argv = codec.compress_argv(codec.default_level, 2)
    rig.need_tool(argv[0])
    done = subprocess.run(argv, input=DATA, capture_output=True, check=True)
    assert decompress(name, done.stdout) == DATA


def test_detect_format_unknown() -> None:
    assert detect_format(b"\x01\x02\x03\x04") is None
    assert detect_format(bytes(16)) == "zfs"


def test_suffixes_are_distinct_per_format() -> None:
    by_format = {c.format: c.suffix for c in CODECS.values()}
    assert len(set(by_format.values())) == len(by_format)
    assert all(c.suffix == by_format[c.format] for c in CODECS.values())


def test_zstd_frame_walk_accepts_only_whole_frames() -> None:
    compressor = zstandard.ZstdCompressor(level=3, write_checksum=True)
    frames = [compressor.compress(b"first frame " * 1000), compressor.compress(os.urandom(300_000))]
    skippable = struct.pack("<II", 0x184D2A53, 5) + b"12345"
    nochecksum = zstandard.ZstdCompressor(level=1, write_checksum=False).compress(bytes(400_000))
    parts = [frames[0], skippable, frames[1], nochecksum]
    blob = b"".join(parts)
    boundaries = {sum(len(p) for p in parts[:i]) for i in range(1, len(parts) + 1)}
    for cut in sorted({*range(0, 40), *range(len(blob) - 40, len(blob) + 1), *boundaries,
                       *(b + d for b in boundaries for d in (-1, 1))}):
        if not 0 <= cut <= len(blob):
            continue
        tracker = FrameTracker()
        tracker.feed(blob[:cut])
        assert tracker.at_frame_boundary == (cut in boundaries or cut == 0), cut
    whole = FrameTracker()
    for start in range(0, len(blob), 7):  # byte-at-a-time-ish feeding gives the same answer
        whole.feed(blob[start:start + 7])
    assert whole.at_frame_boundary and whole.frames == 4


def test_zstd_garbage_after_a_frame_is_an_error() -> None:
    blob = zstandard.ZstdCompressor().compress(b"x" * 1000) + b"garbage!"
    with pytest.raises(zstandard.ZstdError):
        decompress("zstd", blob)
