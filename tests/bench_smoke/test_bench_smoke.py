"""`make bench` in miniature: each benchmark stage runs as `python -m bench...` on a few MiB, writes its
results to a temp dir (never bench/results/), and leaves no pool, server, process or file behind.

These check that the benchmarks work and record what they claim, never how fast anything is.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import rig

REPO = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SIZE_MIB = 4  # the corpus at 1 MiB happens to be incompressible (seed 1); at 4 MiB it is a mix


@dataclass(frozen=True)
class Ran:
    stdout: str
    out_dir: Path
    written: list[Path]  # the files the stage said it wrote ("wrote PATH" lines)

    def one(self, pattern: str) -> Path:
        found = sorted(self.out_dir.glob(pattern))
        assert len(found) == 1, f"{pattern} in {self.out_dir}: {found}"
        return found[0]

    def json(self, pattern: str) -> Any:
        return json.loads(self.one(pattern).read_text())


def _mounts_under(folder: Path) -> list[str]:
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        points = [line.split()[1].replace("\\040", " ") for line in mounts]
    return [point for point in points if point.startswith(f"{folder}/")]


def _processes_naming(folder: Path) -> list[str]:
    """Command lines of live processes that mention `folder` (an `rclone serve s3` of a run, a child...)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        line = " ".join(arg.decode(errors="replace") for arg in argv if arg)
        if str(folder) in line:
            found.append(f"{entry.name}: {line}")
    return found


def assert_nothing_left(scratch: Path) -> None:
    """The run's TMPDIR and BENCH_TMPDIR: every pool, bucket, server and work dir of the run lived there."""
    mounts = _mounts_under(scratch)
    assert not mounts, f"still mounted: {mounts}"
    if rig.find_tool("zpool") and rig.find_tool("zfs"):
        status = rig.run(["zpool", "status"], check=False).stdout.decode(errors="replace")
        assert str(scratch) not in status, f"a pool of the run is still imported:\n{status}"
    processes = _processes_naming(scratch)
    assert not processes, f"still running: {processes}"
    files = sorted(scratch.iterdir())
    assert not files, f"left behind: {files}"


def run_bench(module: str, tmp_path: Path, *args: str, **env: str) -> Ran:
    """`python -m MODULE ARGS` from the repository, quick, one repeat, results in tmp_path/out; fails the
    test on a non-zero exit or on anything the run left behind."""
    out, scratch = tmp_path / "out", tmp_path / "scratch"
    scratch.mkdir()
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_")}
    path = os.pathsep.join([str(Path(sys.executable).parent), inherited.get("PATH", ""), "/usr/sbin", "/sbin"])
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env={
            **inherited,
            "PATH": path,
            "TMPDIR": str(scratch),
            "BENCH_QUICK": "1",
            "BENCH_REPEAT": "1",
            "BENCH_OUT": str(out),
            "BENCH_TMPDIR": str(scratch),
            **env,
        },
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, f"python -m {module} exited {done.returncode}:\n{done.stdout}\n{done.stderr[-4000:]}"
    assert_nothing_left(scratch)
    written = [Path(line.removeprefix("wrote ")) for line in done.stdout.splitlines() if line.startswith("wrote ")]
    assert written, f"python -m {module} reported no result file:\n{done.stdout}"
    assert sorted(written) == sorted(out.iterdir()), "every result file is in BENCH_OUT, and only those"
    return Ran(done.stdout, out, written)


# --- python -m bench: the codec stage ---------------------------------------------------------------


def test_codec_stage(tmp_path: Path) -> None:
    for tool in ("zstd", "pigz", "gzip"):
        rig.need_tool(tool)  # without them the external cases would be dropped, and the comparison with them
    ran = run_bench("bench", tmp_path, BENCH_SIZE=str(SIZE_MIB))

    data = ran.json("bench-*-quick.json")
    assert data["raw_bytes"] == SIZE_MIB << 20
    assert data["settings"]["size_mib"] == SIZE_MIB
    assert data["settings"]["out_dir"] == str(ran.out_dir)
    assert data["repeat"] == 1
    cases = data["cases"]
    assert {(c["case"]["op"], c["case"]["impl"]) for c in cases} == {
        ("compress", "in-process"),
        ("compress", "external"),
        ("decompress", "in-process"),
        ("decompress", "external"),
    }
    compressed = [c for c in cases if c["case"]["op"] == "compress"]
    assert {c["case"]["codec"] for c in compressed if c["case"]["impl"] == "in-process"} == {"zstd", "pigz", "gzip"}
    assert {c["case"]["codec"] for c in compressed if c["case"]["impl"] == "external"} == {"zstd", "pigz", "gzip"}
    compress_names = {c["name"] for c in compressed}
    for c in cases:
        median = c["median"]
        assert len(c["samples"]) == 1, c["name"]
        assert median["mb_per_s"] > 0, c["name"]
        assert median["stored_bytes"] > 0, c["name"]
        assert median["ratio"] > 1, c["name"]  # the corpus is a third text and a third zeros and records
        assert median["peak_rss_mib"] > 0, c["name"]
        if c["case"]["op"] == "decompress":
            assert c["case"]["produced_by"] in compress_names
    names = {c["name"] for c in cases}
    assert data["pairs"], "no in-process vs external comparison"
    for pair in data["pairs"]:
        assert {pair["in_process"], pair["external"]} <= names
        assert pair["throughput_ratio"] > 0 and pair["size_ratio"] > 0

    assert "op  " in ran.stdout and "codec/tool" in ran.stdout
    for c in cases:
        if c["case"]["impl"] == "external":
            assert c["name"] in ran.stdout
    for pair in data["pairs"]:
        assert pair["title"] in ran.stdout
    # The codec alone (no sha256) is measured too, and compared with the zstd program.
    alone = [c for c in cases if c["case"]["sha256"] is False]
    assert len(alone) == 1 and re.fullmatch(r"zstd -3 T=\d+ no-sha256", alone[0]["name"]), alone
    assert any("(codec alone)" in pair["title"] and pair["in_process"] == alone[0]["name"] for pair in data["pairs"])
    assert ran.one("bench-*-quick.txt").read_text().strip() in ran.stdout

    # CI installs the bench extra (scripts/bootstrap): there the chart must be drawn.
    if importlib.util.find_spec("matplotlib") is not None or rig.in_ci():
        assert ran.one("bench-*-quick.png").read_bytes().startswith(PNG_SIGNATURE)
    else:  # the chart is optional (pip install -e '.[bench]'): the run says so and draws none
        assert "matplotlib is not installed: no chart" in ran.stdout
        assert not list(ran.out_dir.glob("*.png"))


# --- python -m bench.e2e: backup and restore end to end -----------------------------------------------


@pytest.mark.integration
def test_end_to_end_stage(tmp_path: Path) -> None:
    for tool in ("zfs", "zpool", "rclone", "zstd", "pigz"):
        rig.need_tool(tool)
    ran = run_bench("bench.e2e", tmp_path, BENCH_E2E_SIZE=str(SIZE_MIB))

    data = ran.json("e2e-*-quick.json")
    assert data["settings"]["size_mib"] == SIZE_MIB
    assert data["settings"]["repeat"] == 1
    assert data["snapshot"], "the generated pool's snapshot"
    assert data["raw_stream_bytes"] >= SIZE_MIB << 20
    cases = {c["name"]: c for c in data["cases"]}
    assert {(c["phase"], c["kind"]) for c in cases.values()} == {
        (phase, kind) for phase in ("backup", "restore") for kind in ("zfsglacier", "shell", "stage")
    }
    for remote in ("local", "s3"):
        for codec in ("zstd", "pigz"):
            backups = [n for n in cases if n.startswith(f"zfsglacier backup {codec} -") and n.endswith(f"-> {remote}")]
            assert len(backups) == 1, (codec, remote, backups)
            assert f"zfsglacier restore {codec} <- {remote}" in cases
    assert {"zfs send > pipe", "zfs receive < file"} <= set(cases)
    for name, c in cases.items():
        median = c["median"]
        assert len(c["samples"]) == 1, name
        assert median["mb_per_s"] > 0 and median["wall_s"] > 0, name
        if c["kind"] != "stage":
            assert median["stored_bytes"] > 0 and median["ratio"] > 1, name
            assert c["efficiency"] > 0 and c["slowest_stage"] in cases, name
        if c["kind"] == "zfsglacier":
            assert median["peak_rss_mib"] > 0, name
        assert name in ran.stdout
    assert "efficiency = end-to-end MB/s / the slowest of its stages alone" in ran.stdout
    # The CPU-aware view: the MB/s at which every usable core would be busy, and the run's share of it.
    header = next(line for line in ran.stdout.splitlines() if line.startswith("case "))
    assert header.split()[-4:] == ["ceil", "MB/s", "of", "ceil"], header
    assert f"ceiling = {data['machine']['usable_cores']} usable cores / (CPU s/GB + daemon CPU s/GB)" in ran.stdout
    for name, c in cases.items():
        if c["kind"] == "stage":
            assert c["cpu_ceiling_mb_per_s"] is None and c["of_ceiling"] is None, name
            continue
        assert c["cpu_ceiling_mb_per_s"] > 0 and c["of_ceiling"] > 0, name
        assert c["of_ceiling"] == pytest.approx(c["median"]["mb_per_s"] / c["cpu_ceiling_mb_per_s"], rel=1e-9), name
        row = next(line for line in ran.stdout.splitlines() if line.startswith(f"{c['phase']}: {name}  "))
        assert row.split()[-2:] == [f"{c['cpu_ceiling_mb_per_s']:.1f}", f"{c['of_ceiling']:.2f}"], row
    assert data["summary"] in ran.stdout


def test_end_to_end_cpu_ceiling() -> None:
    """The ceiling by hand: usable cores / (tree + daemon CPU s per raw GB), in MB/s."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    cpu_ceiling = importlib.import_module("bench.e2e").cpu_ceiling

    assert cpu_ceiling(3.0, 1.0, 2) == pytest.approx(500.0)  # 4 s/GB on 2 cores: 0.5 GB/s
    assert cpu_ceiling(8.0, 2.0, 4) == pytest.approx(400.0)  # 10 s/GB on 4 cores: 0.4 GB/s
    assert cpu_ceiling(6.89, 1.54, 2) == pytest.approx(237.25, abs=0.01)  # 2000 / 8.43
    assert cpu_ceiling(2.0, None, 1) == pytest.approx(500.0)  # no daemon measured: the tree alone
    assert cpu_ceiling(2.0, 0.0, 1) == pytest.approx(500.0)
    assert cpu_ceiling(None, 1.0, 2) is None
    assert cpu_ceiling(0.0, 0.0, 2) is None


# --- python -m bench.adaptive: level = auto against fixed levels --------------------------------------

_AUTO_ROW = re.compile(r"^\s*(\S+)\s+(3|auto|6)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", re.MULTILINE)


@pytest.mark.integration
def test_adaptive_stage(tmp_path: Path) -> None:
    rig.need_tool("rclone")
    ran = run_bench("bench.adaptive", tmp_path, BENCH_AUTO_SIZE=str(SIZE_MIB), BENCH_AUTO_BWLIMIT="8M")

    data = ran.json("auto-*-quick.json")
    assert data["size"] == SIZE_MIB << 20
    assert data["repeat"] == 1
    samples = data["samples"]
    assert sorted((s["bwlimit"], s["policy"]) for s in samples) == sorted(
        (limit, policy) for limit in ("8M", "none") for policy in ("3", "auto", "6")
    )
    for s in samples:
        assert s["wall"] > 0
        assert 0 < s["stored"] < data["size"]

    rows = _AUTO_ROW.findall(ran.stdout)
    assert sorted((limit, policy) for limit, policy, *_ in rows) == sorted(
        (s["bwlimit"], s["policy"]) for s in samples
    )
    assert all(float(mb_per_s) > 0 for *_, mb_per_s in rows)
    for limit in ("8M", "none"):
        assert f"upload limit {limit}: auto vs level 3: stored x" in ran.stdout


# --- python -m bench.rss: peak memory of the zfsglacier process ---------------------------------------


@pytest.mark.integration
def test_rss_stage(tmp_path: Path) -> None:
    for tool in ("zfs", "zpool", "rclone"):
        rig.need_tool(tool)
    ran = run_bench("bench.rss", tmp_path, BENCH_RSS_SIZES=f"2,{SIZE_MIB}")

    data = ran.json("rss-*.json")
    assert data["sizes_mib"] == [2, SIZE_MIB]
    rows = data["rows"]
    assert [(r["size_mib"], r["compressor"]) for r in rows] == [
        (size, compressor) for size in (2, SIZE_MIB) for compressor in ("zstd", "pigz")
    ]
    for r in rows:
        assert r["backup_peak_mib"] > 0 and r["restore_peak_mib"] > 0
        assert re.search(
            rf"^\s*{r['size_mib']} MiB\s+{r['compressor']}\s+backup\s+{r['backup_peak_mib']} MiB\s+"
            rf"restore\s+{r['restore_peak_mib']} MiB$",
            ran.stdout,
            re.MULTILINE,
        ), r


# --- python -m bench.catalog: list and restore planning with many backups -----------------------------


def test_catalog_stage(tmp_path: Path) -> None:
    for tool in ("zfs", "rclone"):
        rig.need_tool(tool)
    ran = run_bench("bench.catalog", tmp_path, BENCH_CATALOG_COUNT="20")

    data = ran.json("catalog-*.json")
    assert data["count"] == 20 and data["repeat"] == 1
    assert set(data["seconds"]) == {"with index", "without index"}
    for label, row in data["seconds"].items():
        assert set(row) == {"list", "plan", "load", "chain"}
        assert all(seconds > 0 for seconds in row.values()), row
        assert re.search(rf"^{label}\s+" + r"\s+".join(rf"{row[k]:.2f}" for k in ("list", "plan", "load", "chain")),
                         ran.stdout, re.MULTILINE), ran.stdout


# --- python -m bench.send_compressed: compression on top of zfs send -c (OpenZFS only) ---------------


def test_send_compressed_stage(tmp_path: Path) -> None:
    rig.need_tool("zfs")
    if not rig.kernel_openzfs():
        # zfs-fuse has no zfs send -c: the stage says where it runs instead, and writes nothing.
        done = subprocess.run([sys.executable, "-m", "bench.send_compressed"], cwd=REPO, capture_output=True,
                              text=True, check=False, timeout=120,
                              env={**os.environ, "PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin"})
        assert done.returncode == 0, done.stderr
        assert "this zfs has no zfs send -c" in done.stdout and "OPENZFS_BENCH=1 make test-openzfs" in done.stdout
        return
    ran = run_bench("bench.send_compressed", tmp_path, "8")
    data = ran.json("send-compressed-*.json")
    rows = {(r["send"], r["compressor"]): r for r in data["rows"]}
    assert set(rows) == {(send, compressor) for send in ("plain", "-c") for compressor in ("zstd", "none")}
    for (_, compressor), r in rows.items():
        assert r["wall_seconds"] > 0 and r["cpu_seconds"] > 0
        assert (r["stored_bytes"] == r["stream_bytes"]) == (compressor == "none"), r
    assert rows[("-c", "none")]["stream_bytes"] < rows[("plain", "none")]["stream_bytes"], "lz4 blocks sent as stored"
