"""`make bench` in miniature: each benchmark stage runs as `python -m bench...` on a few MiB, writes its
results to a temp dir (never bench/results/), and leaves no pool, server, process or file behind.

These check that the benchmarks work and record what they claim, never how fast anything is.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import rig

REPO = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PHASES = ("backup", "restore", "verify")  # bench.e2e's phases
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
    assert f"zfsglacier: commit {data['code']['commit'][:12]}" in ran.stdout  # which code was measured
    assert data["raw_stream_bytes"] >= SIZE_MIB << 20
    cases = {c["name"]: c for c in data["cases"]}
    assert {(c["phase"], c["kind"]) for c in cases.values()} == {
        (phase, kind) for phase in ("backup", "restore") for kind in ("zfsglacier", "shell", "stage")
    } | {("verify", "zfsglacier"), ("verify", "shell")}
    assert data["settings"]["remotes"] == ["local", "s3", "wan"]
    for remote in ("local", "s3", "wan"):
        for codec in ("zstd", "pigz"):
            backups = [n for n in cases if n.startswith(f"zfsglacier backup {codec} -") and n.endswith(f"-> {remote}")]
            assert len(backups) == 1, (codec, remote, backups)
            assert f"zfsglacier restore {codec} <- {remote}" in cases
            assert f"zfsglacier verify {codec} <- {remote}" in cases
        # zfsglacier, both shell pipelines and the four uploads and downloads alone, each on this remote
        on_remote = [c for c in cases.values() if c["remote"] == remote]
        assert sorted((c["phase"], c["kind"]) for c in on_remote) == sorted(
            [(phase, kind) for phase in PHASES for kind in ("zfsglacier", "shell") for _ in "ab"]
            + [(phase, "stage") for phase in ("backup", "restore") for _ in "abcd"]
        ), remote
        assert f"zfs send | zstd -q -3 -T0 | rclone rcat -> {remote}" in cases
        assert f"rclone cat <- {remote} | zstd -q -d | zfs receive" in cases
        assert f"rclone cat <- {remote} | zstd -q -t" in cases
        assert f"rclone cat <- {remote} | pigz -t" in cases
        assert f"rclone cat <- {remote}: zstd -3 -T0 output" in cases
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
            # at least the listing and one read of the data: zfs and rclone are children, never a shell
            assert median["children"] >= 2, name
        elif c["kind"] == "shell":
            assert median["children"] == len(c["name"].split(" | ")), name
        else:
            assert median["children"] is None, name
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
    # zfsglacier's own timing of its stream, so its fixed cost around it is known
    for name, c in cases.items():
        if c["kind"] == "zfsglacier" and c["phase"] != "verify":
            assert 0 < c["median"]["overhead_s"] < c["median"]["wall_s"], name
    assert "zfsglacier's fixed cost" in ran.stdout

    # The WAN model: the s3 server through bench.wan's proxy, measured as a daemon and stopped (its argv names
    # a log in the run's work dir, so run_bench's leftover check would have found it still running).
    assert {"rclone serve s3", "wan proxy"} <= set(data["daemons_measured"])
    wan = data["wan"]
    assert (wan["mbps"], wan["rtt_ms"], wan["handshake_ms"]) == (25, 20, 40)
    assert wan["proxy_cpu_s_per_gb"] > 0
    assert [(w["phase"], w["codec"]) for w in wan["comparisons"]] == [
        (phase, codec) for phase in PHASES for codec in ("zstd", "pigz")
    ]
    for w in wan["comparisons"]:
        zg, sh = cases[w["zfsglacier"]], cases[w["shell"]]
        assert zg["remote"] == sh["remote"] == "wan" and (zg["kind"], sh["kind"]) == ("zfsglacier", "shell")
        assert w["zfsglacier_mb_per_s"] == zg["median"]["mb_per_s"] > 0 and w["shell_mb_per_s"] > 0
        assert w["time_ratio"] == pytest.approx(zg["median"]["wall_s"] / sh["median"]["wall_s"])
        assert w["zfsglacier_peak_rss_mib"] > 0
        assert w["zfsglacier_children"] == zg["median"]["children"] and w["shell_children"] == sh["median"]["children"]
    block = ran.stdout.split("\nWAN model (", 1)[1].split("\nrun took", 1)[0]
    assert f"{wan['model']};" in block
    for w in wan["comparisons"]:
        if w["codec"] == "zstd":
            assert (f"  {w['phase']}: {w['zfsglacier']} {w['zfsglacier_mb_per_s']:.1f} MB/s (peak RSS "
                    f"{w['zfsglacier_peak_rss_mib']:.1f} MiB, {w['zfsglacier_children']:.0f} processes) vs "
                    f"{w['shell']} {w['shell_mb_per_s']:.1f} MB/s: zfsglacier's time / the shell's "
                    f"{w['time_ratio']:.2f}") in block, block
    assert "of stored bytes it forwarded" in block

    if importlib.util.find_spec("matplotlib") is not None or rig.in_ci():
        assert ran.one("e2e-*-quick.png").read_bytes().startswith(PNG_SIGNATURE)
    else:
        assert "matplotlib is not installed: no chart" in ran.stdout


@pytest.mark.integration
def test_end_to_end_wan_only(tmp_path: Path) -> None:
    """BENCH_E2E_REMOTES=wan runs only the WAN remote (and the stages that use no remote), with its settings."""
    for tool in ("zfs", "zpool", "rclone", "zstd", "pigz"):
        rig.need_tool(tool)
    ran = run_bench("bench.e2e", tmp_path, BENCH_E2E_SIZE="1", BENCH_E2E_REMOTES="wan", BENCH_WAN_MBPS="50",
                    BENCH_WAN_RTT_MS="10", BENCH_WAN_HANDSHAKE_RTTS="0")
    data = ran.json("e2e-*-quick.json")
    assert data["settings"]["remotes"] == ["wan"]
    assert {c["remote"] for c in data["cases"]} == {"wan", None}
    assert (data["wan"]["mbps"], data["wan"]["rtt_ms"], data["wan"]["handshake_ms"]) == (50, 10, 0)
    assert len(data["wan"]["comparisons"]) == 6
    assert "rclone serve s3" in data["daemons_measured"]


def test_end_to_end_cpu_ceiling() -> None:
    """The ceiling by hand: usable cores / (tree + daemon CPU s per raw GB), in MB/s."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    cpu_ceiling = importlib.import_module("bench.e2e.report").cpu_ceiling

    assert cpu_ceiling(3.0, 1.0, 2) == pytest.approx(500.0)  # 4 s/GB on 2 cores: 0.5 GB/s
    assert cpu_ceiling(8.0, 2.0, 4) == pytest.approx(400.0)  # 10 s/GB on 4 cores: 0.4 GB/s
    assert cpu_ceiling(6.89, 1.54, 2) == pytest.approx(237.25, abs=0.01)  # 2000 / 8.43
    assert cpu_ceiling(2.0, None, 1) == pytest.approx(500.0)  # no daemon measured: the tree alone
    assert cpu_ceiling(2.0, 0.0, 1) == pytest.approx(500.0)
    assert cpu_ceiling(None, 1.0, 2) is None
    assert cpu_ceiling(0.0, 0.0, 2) is None


# --- bench.wan: the WAN model's proxy ------------------------------------------------------------------


def _recv_all(conn: socket.socket) -> bytes:
    chunks = []
    while data := conn.recv(1 << 16):
        chunks.append(data)
    return b"".join(chunks)


def test_wan_proxy(tmp_path: Path) -> None:
    """Bytes arrive intact both ways through bench.wan's proxy, EOF and resets pass, and it imposes its rate
    cap and its latency. Bounds are loose (a check that the cap and the delay exist, not a benchmark): the
    proxy may only ever be slower than its model, never faster."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    wan = importlib.import_module("bench.wan")
    peers = importlib.import_module("bench.wan_check")  # the peer server the proxy's --check uses
    recv_exactly = peers.recv_exactly
    mbps, rtt_ms, size = 5, 100, 3_000_000
    link = wan.Link.of(mbps, rtt_ms, handshake_rtts=1)
    peer = peers.PeerServer()
    log = tmp_path / "wan.log"
    try:
        with wan.proxy(peer.port, link, log) as proxy:
            pid = proxy.pid
            address = ("127.0.0.1", proxy.port)

            # Both directions intact, and the client's EOF (half-close) reaches the server, whose EOF comes back.
            data = os.urandom(1_000_000)
            with socket.create_connection(address, timeout=60) as conn:

                def send() -> None:
                    conn.sendall(b"e" + data)
                    conn.shutdown(socket.SHUT_WR)

                sender = threading.Thread(target=send)
                sender.start()
                echoed = _recv_all(conn)
                sender.join()
            assert echoed == data

            # The cap, upload and download: at least size / cap, less the bucket's small burst.
            at = time.monotonic()
            with socket.create_connection(address, timeout=60) as conn:
                conn.sendall(b"u" + bytes(size))
                conn.shutdown(socket.SHUT_WR)
                assert struct.unpack("!Q", recv_exactly(conn, 8))[0] == size
            up = time.monotonic() - at
            at = time.monotonic()
            with socket.create_connection(address, timeout=60) as conn:
                conn.sendall(b"d" + struct.pack("!Q", size))
                assert len(_recv_all(conn)) == size
            down = time.monotonic() - at
            floor = 0.8 * size / (mbps * 1e6)
            assert floor <= up < 60 and floor <= down < 60, (up, down)

            # The latency: a new connection's first exchange pays the handshake and a round trip; each
            # exchange after that at least a round trip.
            at = time.monotonic()
            with socket.create_connection(address, timeout=60) as conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn.sendall(b"ex")
                recv_exactly(conn, 1)
                first = time.monotonic() - at
                trips = []
                for _ in range(3):
                    at = time.monotonic()
                    conn.sendall(b"x")
                    recv_exactly(conn, 1)
                    trips.append(time.monotonic() - at)
            assert first >= 2 * 0.099 and first < 60, first
            assert all(0.099 <= trip < 60 for trip in trips), trips

            # A reset by the server reaches the client as a reset or an EOF, not a hang; the proxy carries on.
            with socket.create_connection(address, timeout=60) as conn:
                conn.sendall(b"r")
                with contextlib.suppress(ConnectionResetError):
                    assert conn.recv(1) == b""
            with socket.create_connection(address, timeout=60) as conn:
                conn.sendall(b"eok")
                assert recv_exactly(conn, 2) == b"ok"
    finally:
        peer.close()
    assert not Path(f"/proc/{pid}").exists(), "the proxy is still running"
    stats = json.loads(log.read_text().splitlines()[-1])
    assert stats["connections"] == 6 and stats["bytes_up"] >= size and stats["bytes_down"] >= size, stats


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


# --- python -m bench.tree: status, list and an unchanged incremental of a tree of datasets ------------


def test_tree_stage(tmp_path: Path) -> None:
    for tool in ("zfs", "rclone"):
        rig.need_tool(tool)
    ran = run_bench("bench.tree", tmp_path, BENCH_TREE_DATASETS="4")

    data = ran.json("tree-*.json")
    assert data["datasets"] == 4 and data["repeat"] == 1
    assert set(data["seconds"]) == {"first backup (fulls), per dataset", "unchanged incremental, per dataset",
                                    "status", "list", "catalogs: one listing of the tree",
                                    "catalogs: one listing per dataset"}
    for label, value in data["seconds"].items():
        assert value > 0 and re.search(rf"^  {re.escape(label)}\s+{value:.2f} s$", ran.stdout, re.MULTILINE), \
            (label, ran.stdout)


# --- python -m bench.parallel: a tree backed up with [run] parallel = 1, 2, 3, 6 through the WAN model ---


def test_parallel_stage(tmp_path: Path) -> None:
    for tool in ("zfs", "rclone"):
        rig.need_tool(tool)
    # A fast link and a generous shared limit: the smoke test checks the stage's shape, not figures.
    ran = run_bench("bench.parallel", tmp_path, BENCH_PARALLEL_MIB="1", BENCH_WAN_MBPS="200", BENCH_WAN_RTT_MS="2",
                    BENCH_PARALLEL_BWLIMIT="64M")

    data = ran.json("parallel-*.json")
    assert data["datasets"] == 6 and data["mib_each"] == 1 and data["repeat"] == 1
    assert set(data["median_seconds"]) == {"1", "2", "3", "6"}
    assert data["ratio_to_1"]["1"] == 1.0
    for parallel, seconds in data["median_seconds"].items():
        ratio = data["ratio_to_1"][parallel]
        assert seconds > 0 and data["peak_mib"][parallel] > 0
        assert re.search(rf"^\s+{parallel}\s+{seconds:.2f}\s+{ratio:.2f}\s+{data['peak_mib'][parallel]}$",
                         ran.stdout, re.MULTILINE), ran.stdout
    assert set(data["with_bwlimit"]) == {"1", "6"}
    for row in data["with_bwlimit"].values():
        assert row["limit_bytes_s"] == 64 << 20 and row["stored_bytes"] > 6 * (1 << 20) // 4, row


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
