"""One benchmark run: corpus, compression cases, decompression cases on their outputs, report."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import chart, machine, provenance
from bench.corpus import make_corpus
from bench.settings import Settings, from_env

from . import report
from .cases import Case, compression_cases, decompression_cases
from .measure import MIB, Result, measure


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _source(settings: Settings, work: Path) -> tuple[Path, str]:
    if settings.stream is not None:
        return settings.stream, f"stream {settings.stream}"
    started = time.monotonic()
    path = make_corpus(work / "corpus.bin", settings.size_mib * MIB, settings.seed)
    _say(f"corpus: {settings.size_mib} MiB, seed {settings.seed}, written in {time.monotonic() - started:.1f} s")
    return path, f"generated corpus, {settings.size_mib} MiB, seed {settings.seed}"


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _runnable(cases: Sequence[Case]) -> list[Case]:
    """External cases whose tool is missing are dropped, once, with a note."""
    missing = sorted({c.argv[0] for c in cases if c.impl == "external" and shutil.which(c.argv[0]) is None})
    for tool in missing:
        _say(f"{tool}: not on PATH, its cases are skipped")
    return [c for c in cases if c.impl == "in-process" or c.argv[0] not in missing]


def _measure_all(settings: Settings, source: Path, work: Path) -> list[Result]:
    raw_size = source.stat().st_size
    compressions = _runnable(compression_cases(source, work, settings))
    results = measure(compressions, settings.repeat, raw_size, _say)
    decompressions = _runnable(decompression_cases(compressions))
    return results + measure(decompressions, settings.repeat, raw_size, _say)


def _stem(settings: Settings, host: str) -> str:
    kind = "quick" if settings.quick else f"{settings.size_mib}mib"
    return f"bench-{time.strftime('%Y%m%d-%H%M%S')}-{host}-{kind}"


def _summary(results: Sequence[Result], pairs: Sequence[report.Pair], meta: dict[str, Any]) -> str:
    lines = [
        f"machine: {machine.one_line(meta['machine'])}",
        f"input: {meta['input']} ({meta['raw_bytes']} bytes); {meta['repeat']} repeat(s), medians shown",
        f"load average at start {meta['load_start']}, at end {meta['load_end']}; run took {meta['seconds']:.0f} s",
        f"zfsglacier {meta['code']['commit'][:12]}, uncommitted: {' '.join(meta['code']['uncommitted']) or 'none'}",
        *meta["warnings"],
        "",
        report.table(results),
        report.rss_note(results),
        "",
        "in-process vs external (x>1: in-process is faster / stores more / spends more CPU):",
        *(f"  {p.line()}" for p in pairs),
    ]
    return "\n".join(lines)


def _write_outputs(settings: Settings, results: Sequence[Result], text: str, data: dict[str, Any]) -> list[str]:
    stem = settings.out_dir / _stem(settings, data["machine"]["hostname"])
    notes = [f"wrote {report.write_json(stem.with_suffix('.json'), data)}"]
    stem.with_suffix(".txt").write_text(text + "\n")
    notes.append(f"wrote {stem.with_suffix('.txt')}")
    if chart.available():
        notes.append(f"wrote {chart.draw(results, stem.with_suffix('.png'), data['input'])}")
    else:
        notes.append("matplotlib is not installed: no chart")
    return notes


def _codec_changes(results: Sequence[Result], expected: str) -> list[str]:
    samples = [s for r in results for s in r.samples]
    changed = sum(s["codec_source_sha256"] != expected for s in samples)
    if not changed:
        return []
    return [
        f"WARNING: zfsglacier's codec source changed during the run: {changed} of {len(samples)} samples ran other "
        "code than at the start (codec_source_sha256 in the JSON says which)"
    ]


def main() -> None:
    settings = from_env()
    code = provenance.describe()
    started = time.monotonic()
    load_start = os.getloadavg()
    settings.tmp_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=settings.tmp_root))
    try:
        source, described = _source(settings, work)
        results = _measure_all(settings, source, work)
        raw_bytes = source.stat().st_size
        input_sha256 = _sha256(source)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    found = report.pairs(results, settings.nproc)
    meta: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine.describe(),
        "code": code,
        "warnings": _codec_changes(results, str(code["codec_source_sha256"])),
        "settings": {**asdict(settings), "out_dir": str(settings.out_dir), "tmp_root": str(settings.tmp_root)},
        "input": described,
        "raw_bytes": raw_bytes,
        "input_sha256": input_sha256,
        "repeat": settings.repeat,
        "load_start": [round(x, 2) for x in load_start],
        "load_end": [round(x, 2) for x in os.getloadavg()],
        "seconds": time.monotonic() - started,
    }
    meta["settings"]["stream"] = str(settings.stream) if settings.stream else None
    text = _summary(results, found, meta)
    print(text)
    for note in _write_outputs(settings, results, text, report.record(results, found, meta)):
        print(note)
