"""What a run measures, read from the environment.

BENCH_SIZE    corpus size in MiB (default 256; 16 with BENCH_QUICK)
BENCH_STREAM  measure this file (e.g. a saved `zfs send` stream) instead of the generated corpus
BENCH_REPEAT  runs per case; the report shows the median (default 3; 1 with BENCH_QUICK)
BENCH_QUICK   1: a fast smoke run with a small corpus, one repeat and fewer levels
BENCH_SEED    corpus seed (default 1)
BENCH_OUT     where results go (default bench/results/)
BENCH_TMPDIR  where the corpus and compressed outputs live during the run (default bench/results/tmp/)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from zfsglacier.codec.registry import default_threads

MIB = 1 << 20
RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Settings:
    quick: bool
    size_mib: int
    stream: Path | None
    repeat: int
    seed: int
    nproc: int
    out_dir: Path
    tmp_root: Path
    zstd_levels: tuple[int, ...]
    pigz_levels: tuple[int, ...]
    gzip_levels: tuple[int, ...]
    external_pigz_levels: tuple[int, ...]
    external_gzip_levels: tuple[int, ...]

    @property
    def thread_counts(self) -> tuple[int, ...]:
        return (1,) if self.nproc == 1 else (1, self.nproc)


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() not in ("", "0", "no", "false")


def positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    """`name` from `env` as a whole number >= 1; `default` when unset or empty."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    value = int(raw)
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value}")
    return value


def _stream(env: Mapping[str, str]) -> Path | None:
    raw = env.get("BENCH_STREAM", "").strip()
    if not raw:
        return None
    path = Path(raw).expanduser().resolve()
    if not path.is_file() or path.stat().st_size == 0:
        raise ValueError(f"BENCH_STREAM={raw}: not a non-empty file")
    return path


def from_env(env: Mapping[str, str] = os.environ) -> Settings:
    quick = _flag(env, "BENCH_QUICK")
    out_dir = Path(env.get("BENCH_OUT") or RESULTS_DIR).resolve()
    return Settings(
        quick=quick,
        size_mib=positive_int(env, "BENCH_SIZE", 16 if quick else 256),
        stream=_stream(env),
        repeat=positive_int(env, "BENCH_REPEAT", 1 if quick else 3),
        seed=int(env.get("BENCH_SEED") or 1),
        nproc=default_threads(),
        out_dir=out_dir,
        tmp_root=Path(env.get("BENCH_TMPDIR") or RESULTS_DIR / "tmp").resolve(),
        zstd_levels=(1, 3) if quick else (1, 3, 6, 9, 19),
        pigz_levels=(1, 2) if quick else (0, 1, 2, 3),
        gzip_levels=(2,),
        external_pigz_levels=(6,) if quick else (6, 1),
        external_gzip_levels=(6,),
    )
