"""The codec registry: one table drives CLI choices, config validation, object suffixes,
format detection and the external commands shown for by-hand restores.

Compression and decompression run in-process (python-zstandard and python-isal release the GIL).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, cast

import zstandard
from isal import igzip, igzip_threaded, isal_zlib

from zfsglacier.codec.adaptive import AdaptiveZstdWriter
from zfsglacier.codec.zstd_frames import FrameTracker

AUTO: Literal["auto"] = "auto"
NO_COMPRESSION = "none"  # the codec raw sends of encrypted datasets are stored with
# A compression level: a number, or "auto" for codecs that adapt it to the pipeline's bottleneck.
Level = int | Literal["auto"]


class Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...


class Source(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class Writer(Protocol):
    """What a compressor looks like to the pipeline: write raw bytes, close to finish the stream."""

    def write(self, data: bytes, /) -> int: ...
    def close(self) -> None: ...


class Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Codec:
    name: str
    format: str  # the on-disk format: several codecs may write the same one
    suffix: str  # object name suffix after ".zfs"
    magic: bytes  # first bytes of every stream in this format
    levels: range
    default_level: int
    multithreaded: bool
    adaptive: bool  # accepts level "auto"
    _open_writer: Callable[[Sink, Level, int], Writer]
    _open_reader: Callable[[Source], Reader]
    _compress_argv: Callable[[Level, int], list[str]]
    decompress_argv: tuple[str, ...]
    # What the reader raises on a corrupt or truncated stream (and only then).
    decode_errors: tuple[type[Exception], ...]

    def open_writer(self, sink: Sink, level: Level, threads: int) -> Writer:
        return self._open_writer(sink, level, threads if self.multithreaded else 1)

    def open_reader(self, source: Source) -> Reader:
        return self._open_reader(source)

    def compress_argv(self, level: Level, threads: int) -> list[str]:
        """The external command that writes the same format, for logs, --dry-run and by-hand recipes."""
        return self._compress_argv(level, threads)


# zstd's multithreaded jobs default to four windows (8 MiB at levels 3-8), and two workers then hold
# about 50 MB more than with 4 MiB jobs, for no measurable gain in ratio (bench/results). Larger windows
# keep zstd's default: shorter jobs than that cost more CPU than they save memory.
ZSTD_JOB_SIZE = 2 << 20
_ZSTD_SMALL_WINDOW_LOG = 21


def zstd_compressor(level: int, threads: int) -> zstandard.ZstdCompressor:
    window_log = zstandard.ZstdCompressionParameters.from_level(level).window_log
    params = zstandard.ZstdCompressionParameters.from_level(
        level,
        threads=threads,
        write_checksum=True,
        job_size=ZSTD_JOB_SIZE if window_log <= _ZSTD_SMALL_WINDOW_LOG else 0,
    )
    return zstandard.ZstdCompressor(compression_params=params)


def _zstd_writer(sink: Sink, level: Level, threads: int) -> Writer:
    if level == AUTO:
        return AdaptiveZstdWriter(sink, threads, zstd_compressor)
    compressor = zstd_compressor(level, threads)
    writer: Writer = compressor.stream_writer(sink, closefd=False)  # type: ignore[arg-type]
    return writer


class _TrackedSource:
    def __init__(self, source: Source, tracker: FrameTracker) -> None:
        self._source = source
        self._tracker = tracker

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self._tracker.feed(data)
        return data


class _ZstdReader:
    """stream_reader, plus a frame walk that turns a stream cut inside a frame into an error."""

    def __init__(self, source: Source) -> None:
        self._tracker = FrameTracker()
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            _TrackedSource(source, self._tracker),  # type: ignore[arg-type]  # any object with read() works
            read_across_frames=True,
            closefd=False,
        )

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._reader.read(size)
        if not data and not (self._tracker.frames and self._tracker.at_frame_boundary):
            raise zstandard.ZstdError(
                f"stream ends inside a zstd frame after {self._tracker.offset} bytes: it is truncated"
            )
        return data

    def close(self) -> None:
        self._reader.close()  # type: ignore[no-untyped-call]


def _zstd_reader(source: Source) -> Reader:
    return _ZstdReader(source)


def _fixed(level: Level) -> int:
    if level == AUTO:
        raise ValueError("this codec has no adaptive level")
    return level


def _pigz_writer(sink: Sink, level: Level, threads: int) -> Writer:
    writer: Writer = igzip_threaded.open(  # type: ignore[no-untyped-call]
        sink, "wb", compresslevel=_fixed(level), threads=threads
    )
    return writer


def _gzip_writer(sink: Sink, level: Level, threads: int) -> Writer:
    # mtime=0: the same stream always compresses to the same bytes (a resumed backup compares them)
    return igzip.IGzipFile(fileobj=sink, mode="wb", compresslevel=_fixed(level), mtime=0)  # type: ignore[no-untyped-call]


def _gzip_reader(source: Source) -> Reader:
    # One decompression thread reads ahead while the caller writes to zfs receive.
    reader: Reader = igzip_threaded.open(source, "rb", threads=1)  # type: ignore[no-untyped-call]
    return reader


class _Passthrough:
    """The "none" codec: the zfs stream as zfs send wrote it (raw sends of encrypted datasets do not
    compress). Closing it leaves the sink open, like the other writers."""

    def __init__(self, stream: Sink | Source) -> None:
        self._stream = stream

    def write(self, data: bytes, /) -> int:
        return cast(Sink, self._stream).write(data)

    def read(self, size: int = -1, /) -> bytes:
        return cast(Source, self._stream).read(size)

    def close(self) -> None:
        pass


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# A zfs send stream opens with a DRR_BEGIN record, whose type field (a u32, 0) reads the same in
# either byte order.
_ZFS_STREAM_MAGIC = b"\x00\x00\x00\x00"
_GZIP_MAGIC = b"\x1f\x8b"
# BadGzipFile is an OSError; EOFError means the stream ended inside a member.
# (python-isal's stub declares IsalError as an instance; it is the exception class.)
_GZIP_DECODE_ERRORS: tuple[type[Exception], ...] = (cast(type[Exception], isal_zlib.IsalError), EOFError, OSError)

CODECS: dict[str, Codec] = {
    codec.name: codec
    for codec in (
        Codec(
            name="zstd",
            format="zstd",
            suffix=".zst",
            magic=_ZSTD_MAGIC,
            levels=range(1, 20),
            default_level=3,
            multithreaded=True,
            adaptive=True,
            _open_writer=_zstd_writer,
            _open_reader=_zstd_reader,
            _compress_argv=lambda level, threads: [
                "zstd", "-q", "--adapt" if level == AUTO else f"-{level}", f"-T{threads}"
            ],
            decompress_argv=("zstd", "-q", "-d"),
            decode_errors=(zstandard.ZstdError,),
        ),
        Codec(
            name="pigz",
            format="gzip",
            suffix=".gz",
            magic=_GZIP_MAGIC,
            levels=range(0, 4),
            default_level=2,
            multithreaded=True,
            adaptive=False,
            _open_writer=_pigz_writer,
            _open_reader=_gzip_reader,
            _compress_argv=lambda level, threads: ["pigz", f"-{max(_fixed(level), 1)}", "-p", str(threads)],
            decompress_argv=("pigz", "-d"),
            decode_errors=_GZIP_DECODE_ERRORS,
        ),
        Codec(
            name="gzip",
            format="gzip",
            suffix=".gz",
            magic=_GZIP_MAGIC,
            levels=range(0, 4),
            default_level=2,
            multithreaded=False,
            adaptive=False,
            _open_writer=_gzip_writer,
            _open_reader=_gzip_reader,
            _compress_argv=lambda level, threads: ["gzip", f"-{max(_fixed(level), 1)}"],
            decompress_argv=("gzip", "-d"),
            decode_errors=_GZIP_DECODE_ERRORS,
        ),
        Codec(
            name=NO_COMPRESSION,
            format="zfs",
            suffix="",
            magic=_ZFS_STREAM_MAGIC,
            levels=range(0, 1),
            default_level=0,
            multithreaded=False,
            adaptive=False,
            _open_writer=lambda sink, level, threads: _Passthrough(sink),
            _open_reader=_Passthrough,
            _compress_argv=lambda level, threads: ["cat"],
            decompress_argv=("cat",),
            # Nothing to decode: a damaged object is caught by its size and sha256, before the held-back
            # end of the stream reaches zfs receive.
            decode_errors=(),
        ),
    )
}

DEFAULT_CODEC = "zstd"


def get_codec(name: str) -> Codec:
    return CODECS[name]


def detect_format(head: bytes) -> str | None:
    """The format whose magic starts `head`, or None."""
    for codec in CODECS.values():
        if head.startswith(codec.magic):
            return codec.format
    return None


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) or 1
