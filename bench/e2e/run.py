"""Running and measuring for the end-to-end benchmark: children started here (argv lists, never a shell)
are tracked so that an interrupted run can stop them; pipelines are chained Popens with every exit
status checked; usage is wall time, CPU of the whole process tree and CPU of the daemons doing work for
it (the zfs-fuse daemon, `rclone serve s3`)."""

from __future__ import annotations

import contextlib
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bench.wan import process_cpu
from zfsglacier.codec.registry import get_codec
from zfsglacier.stream.pipeline import CHUNK
from zfsglacier.stream.readahead import PipeSource, Prefetch, WriteBehind
from zfsglacier.stream.volumes import Digest

REPO = Path(__file__).resolve().parents[2]
PIPE, DEVNULL = subprocess.PIPE, subprocess.DEVNULL
_LIVE: set[subprocess.Popen[bytes]] = set()
# zfsglacier's own timing of the stream, from the summary line of a backup or of each backup received
# ("..., ratio 2.01, 0:00:05, 210.3 MiB/s"): the duration is in whole seconds, so the stream's time is its
# raw bytes / that rate. zfsglacier's wall time minus it is the fixed overhead around the stream.
_STREAM_RATE = re.compile(r"ratio [\d.-]+, [\d:]+, ([\d.]+) (B|KiB|MiB|GiB|TiB)/s")
_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


class ChildFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class Usage:
    wall: float
    tree_cpu: float  # this process and its reaped children (their reaped children included)
    daemon_cpu: float

    @staticmethod
    def now(daemons: Sequence[int]) -> Usage:
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return Usage(
            time.perf_counter(),
            me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
            sum(process_cpu(pid) for pid in daemons),
        )


@dataclass(frozen=True)
class Moved:
    """What one measured run moved."""

    raw_bytes: int
    stored_bytes: int | None = None
    peak_rss_kib: int | None = None  # zfsglacier's own process
    stream_s: float | None = None  # zfsglacier's own timing of the stream
    stream_rate: float | None = None  # raw bytes/s of the stream, as zfsglacier reported it
    children: int | None = None  # child processes started: zfsglacier's own (zfs, rclone) or the pipeline's


def stream_seconds(raw_bytes: int, rate: float | None) -> float | None:
    return raw_bytes / rate if rate else None


def start(argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
    process: subprocess.Popen[bytes] = subprocess.Popen(argv, **kwargs)  # type: ignore[call-overload]
    _LIVE.add(process)
    return process


def finish(process: subprocess.Popen[bytes]) -> int:
    code = process.wait()
    _LIVE.discard(process)
    return code


def stop_all(grace: float = 60) -> None:
    """Stop the children still running (an interrupted run); zfsglacier gets time to clean up."""
    for process in list(_LIVE):
        if process.poll() is None:
            process.terminate()
    for process in list(_LIVE):
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        _LIVE.discard(process)


def drain(pipe: IO[bytes]) -> int:
    buffer = bytearray(CHUNK)
    total = 0
    while count := pipe.readinto(buffer):  # type: ignore[attr-defined]
        total += count
    return total


def _tail(file: IO[bytes], limit: int = 1500) -> str:
    file.seek(0)
    return " ".join(file.read().decode("utf-8", "replace").split())[-limit:]


def run_chain(
    stages: Sequence[Sequence[str]],
    *,
    source: Path | None = None,
    drain_output: bool = False,
    env: Mapping[str, str] | None = None,
) -> int:
    """`stages[0] | stages[1] | ...` without a shell: stdin from `source` (else none), the last stage's
    output read and discarded here when `drain_output` (then its byte count is returned), else /dev/null.
    Every stage's exit status is checked."""
    started: list[tuple[Sequence[str], subprocess.Popen[bytes], IO[bytes]]] = []
    with contextlib.ExitStack() as files:
        upstream: IO[bytes] | int = files.enter_context(source.open("rb")) if source else DEVNULL
        for index, argv in enumerate(stages):
            last = index == len(stages) - 1
            errors = files.enter_context(tempfile.TemporaryFile())
            process = start(
                argv, stdin=upstream, stdout=PIPE if drain_output or not last else DEVNULL, stderr=errors, env=env
            )
            if index > 0 and not isinstance(upstream, int):
                upstream.close()  # the next stage holds it now: a stage that dies is seen as a closed pipe
            started.append((argv, process, errors))
            upstream = process.stdout if process.stdout is not None else DEVNULL
        moved = 0
        if drain_output:
            last_out = started[-1][1].stdout
            assert last_out is not None
            with last_out:
                moved = drain(last_out)
        failures = [
            f"{' '.join(argv)} exited {code}: {_tail(errors)}"
            for argv, process, errors in started
            if (code := finish(process)) != 0
        ]
    if failures:
        raise ChildFailed("; ".join(failures))
    return moved


def run_zfsglacier(args: Sequence[str], env: Mapping[str, str]) -> Moved:
    """`python -m zfsglacier ARGS` as a child, through the launcher that reports its own peak RSS and the
    number of processes it started."""
    with tempfile.TemporaryDirectory(prefix="zgbench-") as tmp, open(Path(tmp) / "log", "w+b") as log:
        rss_file = Path(tmp) / "rss"
        process = start(
            [sys.executable, "-m", "bench.e2e.launch", *args],
            stdin=DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**env, "BENCH_E2E_RSS_FILE": str(rss_file)},
        )
        code = finish(process)
        text = _tail(log, 1 << 20)
        if code != 0:
            raise ChildFailed(f"zfsglacier {' '.join(args)} exited {code}: {text[-1500:]}")
        found = _STREAM_RATE.search(text)
        rate = float(found[1]) * _UNITS[found[2]] if found else None
        peak, children = (int(field) for field in rss_file.read_text().split())
        return Moved(0, peak_rss_kib=peak, stream_rate=rate, children=children)


def compress_file(raw: Path, codec_name: str, threads: int, out: IO[bytes]) -> int:
    """Compress `raw` the way zfsglacier's backup does (a read-ahead thread, 1 MiB chunks into the codec
    writer at its default level, a write-behind thread hashing the output) into `out`; returns the
    compressed size."""
    codec = get_codec(codec_name)
    stored = Digest()

    def write(data: bytes) -> None:
        stored.update(data)
        out.write(data)

    with raw.open("rb") as source:
        ahead = Prefetch(PipeSource(source.fileno(), CHUNK), "read: file")
        behind = WriteBehind(write, "write: file")
        try:
            writer = codec.open_writer(behind, codec.default_level, threads)
            while chunk := ahead.read():
                writer.write(chunk)
            writer.close()
            behind.flush()
        finally:
            behind.close()
            ahead.close()
    return stored.bytes


def decompress_file(path: Path, codec_name: str) -> int:
    """Decompress `path` the way zfsglacier's restore does (a read-ahead thread hashing what it reads,
    the codec reader in 1 MiB chunks), discarding the output; returns the raw size."""
    codec = get_codec(codec_name)
    stored = Digest()
    raw = 0
    with path.open("rb") as file:
        ahead = Prefetch(PipeSource(file.fileno(), CHUNK, seen=stored.update), "read: file")
        try:
            reader = codec.open_reader(ahead)
            try:
                while chunk := reader.read(CHUNK):
                    raw += len(chunk)
            finally:
                reader.close()
            while ahead.read(CHUNK):
                pass
        finally:
            ahead.close()
    return raw
