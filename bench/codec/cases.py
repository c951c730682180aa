"""The cases of one run: what is compressed or decompressed, how, and with which command."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from bench.settings import Settings
from zfsglacier.codec.registry import CODECS
from zfsglacier.stream.pipeline import CHUNK

Op = Literal["compress", "decompress"]
Impl = Literal["in-process", "external"]


@dataclass(frozen=True)
class Case:
    op: Op
    impl: Impl
    codec: str  # registry name for in-process cases; the tool for external ones
    level: int | None  # None: not chosen by the caller (decompression)
    threads: int | None
    source: str  # the file fed in
    output: str | None  # where an in-process compressor's output is kept, for the decompression cases
    argv: tuple[str, ...] = ()  # external cases only
    produced_by: str = ""  # decompression: the compression case whose output is read
    chunk: int = CHUNK  # read here, once, so that a worker does not import the pipeline
    # In-process cases hash what is stored, as zfsglacier does; False measures the codec alone, to
    # compare like with like against a program that hashes nothing.
    sha256: bool = True

    @property
    def name(self) -> str:
        if self.impl == "external":
            return " ".join(self.argv)
        level = "" if self.level is None else f" -{self.level}"
        threads = "" if self.threads is None else f" T={self.threads}"
        alone = "" if self.sha256 else " no-sha256"
        return f"{self.codec}{level}{threads}{alone}"

    @property
    def label(self) -> str:
        return f"{self.name} < {self.produced_by}" if self.produced_by else self.name

    def spec(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_spec(spec: dict[str, Any]) -> Case:
        return Case(**{**spec, "argv": tuple(spec["argv"])})


# zstd's slowest levels run at every core only: at one thread, level 19 alone took over half of a run.
SLOW_ZSTD_LEVEL = 19


def _threads_for(codec: str, settings: Settings, level: int) -> tuple[int, ...]:
    if not CODECS[codec].multithreaded:
        return (1,)
    if codec == "zstd" and level >= SLOW_ZSTD_LEVEL:
        return settings.thread_counts[-1:]
    return settings.thread_counts


def _in_process_compression(source: Path, work: Path, settings: Settings) -> list[Case]:
    levels = {"zstd": settings.zstd_levels, "pigz": settings.pigz_levels, "gzip": settings.gzip_levels}
    cases = []
    for codec, codec_levels in levels.items():
        for level in codec_levels:
            for threads in _threads_for(codec, settings, level):
                output = work / f"{codec}-{level}-T{threads}{CODECS[codec].suffix}"
                cases.append(Case("compress", "in-process", codec, level, threads, str(source), str(output)))
    default = CODECS["zstd"].default_level
    if default in settings.zstd_levels:
        alone = work / f"zstd-{default}-T{settings.nproc}-alone.zst"
        cases.append(Case("compress", "in-process", "zstd", default, settings.nproc, str(source), str(alone),
                          sha256=False))
    return cases


def _external(codec: str, level: int, threads: int, source: Path) -> Case:
    argv = tuple(CODECS[codec].compress_argv(level, threads))
    return Case("compress", "external", argv[0], level, threads, str(source), None, argv)


def _external_compression(source: Path, settings: Settings) -> list[Case]:
    zstd_levels = settings.zstd_levels
    cases = [_external("zstd", lvl, t, source) for lvl in zstd_levels for t in _threads_for("zstd", settings, lvl)]
    threads = settings.thread_counts
    cases += [_external("pigz", lvl, t, source) for lvl in settings.external_pigz_levels for t in threads]
    cases += [_external("gzip", lvl, 1, source) for lvl in settings.external_gzip_levels]
    return cases


def compression_cases(source: Path, work: Path, settings: Settings) -> list[Case]:
    return _in_process_compression(source, work, settings) + _external_compression(source, settings)


def decompression_cases(compressions: list[Case]) -> list[Case]:
    """In-process reader vs the external decompressor, on every in-process output at the most threads."""
    most = {c.codec: max(x.threads or 1 for x in compressions if x.codec == c.codec) for c in compressions}
    cases = []
    for made in compressions:
        if made.impl != "in-process" or made.output is None or made.threads != most[made.codec] or not made.sha256:
            continue
        codec = CODECS[made.codec]
        external_argv = ("pigz", "-d") if codec.format == "gzip" else codec.decompress_argv
        readers: tuple[tuple[Impl, str, tuple[str, ...]], ...] = (
            ("in-process", made.codec, ()),
            ("external", external_argv[0], external_argv),
        )
        for impl, tool, argv in readers:
            cases.append(Case("decompress", impl, tool, made.level, None, made.output, None, argv, made.name))
    return cases
