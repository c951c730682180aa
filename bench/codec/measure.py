"""Run cases in fresh worker processes, repeats interleaved, and reduce the samples to medians."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cases import Case

GB = 1e9
MIB = 1 << 20
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Result:
    """One case: its samples and their medians."""

    case: Case
    samples: list[dict[str, Any]]

    def _median(self, key: Callable[[dict[str, Any]], float]) -> float:
        return statistics.median(key(sample) for sample in self.samples)

    @property
    def mb_per_s(self) -> float:
        return self._median(lambda s: s["raw_bytes"] / 1e6 / s["wall_s"])

    @property
    def cpu_s_per_gb(self) -> float:
        return self._median(lambda s: (s["cpu_self_s"] + s["cpu_children_s"]) / (s["raw_bytes"] / GB))

    @property
    def ratio(self) -> float:
        return self._median(lambda s: s["raw_bytes"] / s["stored_bytes"])

    @property
    def stored_bytes(self) -> float:
        return self._median(lambda s: s["stored_bytes"])

    @property
    def peak_rss_mib(self) -> float:
        """The worker's own peak for in-process cases; the external tool's for external ones."""
        return self._median(lambda s: s["peak_rss_kib"] / 1024)


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH", "")) if p)
    return env


def _run_worker(case: Case) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.codec.worker"],
        input=json.dumps(case.spec()),
        capture_output=True,
        text=True,
        env=_worker_env(),
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{case.name}: worker failed with status {done.returncode}:\n{done.stderr.strip()}")
    sample: dict[str, Any] = json.loads(done.stdout)
    return sample


def run_once(case: Case, attempts: int = 3, pause: float = 10.0) -> dict[str, Any]:
    """Retried, because others edit the package while a long run goes on and an import may fail meanwhile."""
    for attempt in range(1, attempts + 1):
        try:
            return _run_worker(case)
        except RuntimeError as exc:
            if attempt == attempts:
                raise
            print(f"{exc}\nretrying in {pause:.0f} s", file=sys.stderr, flush=True)
            time.sleep(pause)
    raise AssertionError("unreachable")


def _check_round_trip(case: Case, sample: dict[str, Any], raw_size: int) -> None:
    if case.op == "decompress" and sample["raw_bytes"] != raw_size:
        raise RuntimeError(f"{case.name} on {case.source}: {sample['raw_bytes']} bytes out, expected {raw_size}")


def measure(cases: Sequence[Case], repeat: int, raw_size: int, progress: Progress) -> list[Result]:
    """Every case once per round, `repeat` rounds, so that load from elsewhere spreads over all cases."""
    samples: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(cases))}
    for round_no in range(repeat):
        for index, case in enumerate(cases):
            sample = run_once(case)
            _check_round_trip(case, sample, raw_size)
            sample["round"] = round_no
            sample["load1"] = round(os.getloadavg()[0], 2)
            samples[index].append(sample)
            mb_s = sample["raw_bytes"] / 1e6 / sample["wall_s"]
            progress(f"[{round_no + 1}/{repeat}] {case.op:<10} {case.label:<34} {mb_s:9.1f} MB/s")
    return [Result(case, samples[i]) for i, case in enumerate(cases)]
