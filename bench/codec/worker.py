"""One case, one repeat, in a process of its own (`python -m bench.codec.worker`, case spec as JSON on stdin,
sample as JSON on stdout), so that its peak RSS and CPU time are its own and not inherited.

In-process cases move data the way zfsglacier.stream.pipeline does: 1 MiB chunks into the codec writer, whose
output is hashed and counted on its way out; restores hash and count what the reader consumes. The
pipeline's reader and writer threads (overlapping the pipes to zfs and rclone) are left out: this
measures the codec stage. External cases
feed the tool from the file and read its stdout pipe, discarding it.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from bench.provenance import codec_source_sha256
from zfsglacier.codec.registry import CODECS

from .cases import Case
from .memory import PeakWatcher, hwm_kib
from .streams import HashingSink, HashingSource


@dataclass(frozen=True)
class Usage:
    wall: float
    cpu_self: float
    cpu_children: float
    maxrss_self_kib: int
    maxrss_children_kib: int

    @staticmethod
    def now() -> Usage:
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return Usage(
            time.perf_counter(),
            me.ru_utime + me.ru_stime,
            kids.ru_utime + kids.ru_stime,
            me.ru_maxrss,
            kids.ru_maxrss,
        )


def _measured(before: Usage, after: Usage, raw: int, stored: int, **extra: Any) -> dict[str, Any]:
    """A sample. peak_rss_kib is VmHWM (see bench.memory); ru_maxrss is kept for reference only, as it
    includes what the process inherited from its parent."""
    return {
        "raw_bytes": raw,
        "stored_bytes": stored,
        "wall_s": after.wall - before.wall,
        "cpu_self_s": after.cpu_self - before.cpu_self,
        "cpu_children_s": after.cpu_children - before.cpu_children,
        "ru_maxrss_self_kib": after.maxrss_self_kib,
        "ru_maxrss_children_kib": after.maxrss_children_kib,
        **extra,
    }


def compress_in_process(case: Case) -> dict[str, Any]:
    if case.output is None or case.level is None or case.threads is None:
        raise ValueError(f"{case.name}: an in-process compression needs an output, a level and threads")
    codec = CODECS[case.codec]
    raw = 0
    with open(case.source, "rb") as src, open(case.output, "wb") as out:
        sink = HashingSink(out, digest=case.sha256)
        baseline = hwm_kib()
        before = Usage.now()
        writer = codec.open_writer(sink, case.level, case.threads)
        while chunk := src.read(case.chunk):
            writer.write(chunk)
            raw += len(chunk)
        writer.close()
        sink.flush()
        after = Usage.now()
    return _measured(
        before, after, raw, sink.bytes, sha256=sink.hexdigest() if case.sha256 else None, rss_before_kib=baseline,
        peak_rss_kib=hwm_kib(),
    )


def decompress_in_process(case: Case) -> dict[str, Any]:
    codec = CODECS[case.codec]
    raw = 0
    with open(case.source, "rb") as src:
        baseline = hwm_kib()
        before = Usage.now()
        source = HashingSource(src, case.chunk)
        reader = codec.open_reader(source)
        try:
            while chunk := reader.read(case.chunk):
                raw += len(chunk)
        finally:
            reader.close()
        source.drain()
        after = Usage.now()
    return _measured(
        before, after, raw, source.bytes, sha256=source.hexdigest(), rss_before_kib=baseline, peak_rss_kib=hwm_kib()
    )


def _drain(pipe: Any, chunk: int) -> int:
    buffer = bytearray(chunk)
    total = 0
    while count := pipe.readinto(buffer):
        total += count
    return total


def run_external(case: Case) -> dict[str, Any]:
    with open(case.source, "rb") as src:
        before = Usage.now()
        child = subprocess.Popen(case.argv, stdin=src, stdout=subprocess.PIPE)
        with PeakWatcher(child.pid) as watcher:
            with child.stdout:  # type: ignore[union-attr]  # stdout=PIPE
                produced = _drain(child.stdout, case.chunk)
            code = child.wait()
        after = Usage.now()
    if code != 0:
        raise RuntimeError(f"{case.name} exited with status {code}")
    fed = os.path.getsize(case.source)
    raw, stored = (fed, produced) if case.op == "compress" else (produced, fed)
    return _measured(before, after, raw, stored, rss_before_kib=None, peak_rss_kib=watcher.peak_kib)


def run(case: Case) -> dict[str, Any]:
    if case.impl == "external":
        return run_external(case)
    if case.op == "compress":
        return compress_in_process(case)
    return decompress_in_process(case)


def main() -> None:
    case = Case.from_spec(json.load(sys.stdin))
    sample = run(case)
    sample["codec_source_sha256"] = codec_source_sha256()
    json.dump(sample, sys.stdout)


if __name__ == "__main__":
    main()
