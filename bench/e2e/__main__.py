"""`python -m bench.e2e`: the end-to-end benchmark. zfsglacier backup, restore and verify against the shell
pipelines they replace (verify: `rclone cat | zstd -t`), and each stage alone, on the same snapshot and the
same remotes (a local directory, S3 served by `rclone serve s3` on 127.0.0.1, and that S3 server reached
through bench.wan's proxy, which gives each connection an internet link's rate cap and latency), side by
side in one run; medians of the repeats.

BENCH_E2E_SIZE     generated corpus in MiB (default 1024; 64 with BENCH_QUICK)
BENCH_DATASET      pool/x: use this dataset's newest snapshot (or one made and destroyed here) instead
BENCH_STREAM       a saved `zfs send` stream: only the stages that need no zfs run
BENCH_E2E_REMOTES  which remotes, comma-separated (default local,s3,wan)
BENCH_WAN_MBPS     the wan remote's cap in MB/s per connection and direction (default 25)
BENCH_WAN_RTT_MS   its round-trip time (default 20 ms)
BENCH_WAN_HANDSHAKE_RTTS  round trips a new connection waits before its first byte (default 2: TCP + TLS)
BENCH_REPEAT, BENCH_QUICK, BENCH_SEED, BENCH_OUT: as for `python -m bench` (bench/settings.py)

Table: MB/s of raw (uncompressed stream) bytes; CPU s per raw GB of the whole process tree (this process
and every child, grandchildren included); daemon CPU: the zfs-fuse daemon (where zfs send/receive really
work under zfs-fuse) and `rclone serve s3`, which are not in the tree; zfsglacier's peak RSS is its own
process, children excluded; procs: the child processes a run started (zfsglacier's zfs and rclone calls,
or the pipeline's stages); efficiency: end-to-end MB/s / the slowest of its stages alone; ceiling: the
MB/s at which every usable core would be busy, given the CPU (tree and daemons) the run spent per raw byte,
and "of ceiling": end-to-end MB/s / that ceiling. On a small machine the stages share the same cores, so
efficiency can be far below 1 for a pipeline that keeps every core busy; "of ceiling" near 1 says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from bench import chart, provenance, wan

from .cases import Bench, say
from .report import record, summary, wan_meta
from .run import (
    stop_all,
)
from .setup import (
    E2ESettings,
    daemon_pids,
    describe_machine,
    input_for,
    rig,
    settings_from_env,
)

_interrupted: list[str] = []


def _interrupt(signum: int, frame: FrameType | None) -> None:
    _interrupted.append(signal.Signals(signum).name)
    raise KeyboardInterrupt(_interrupted[-1])


def wan_remote(direct: rig.Remote, server: rig.S3Server, proxy: wan.Proxy, work: Path) -> rig.Remote:
    """`direct`'s bucket on the same server, through the proxy: an rclone config whose endpoint is the proxy."""
    config = work / "wan-rclone.conf"
    config.write_text(
        "[zgtwan]\ntype = s3\nprovider = Rclone\n"
        f"endpoint = {proxy.endpoint}\naccess_key_id = {server.access_key}\nsecret_access_key = {server.secret_key}\n"
    )
    return rig.Remote("wan", config, "zgtwan", direct.bucket, direct.root)


@contextlib.contextmanager
def _remotes(rclone: str, settings: E2ESettings, work: Path) -> Iterator[tuple[dict[str, rig.Remote], dict[str, int]]]:
    """The chosen remotes, in the order local, s3, wan, and the pids of the daemons serving them."""
    remotes: dict[str, rig.Remote] = {}
    daemons: dict[str, int] = {}
    with contextlib.ExitStack() as stack:
        if "local" in settings.remotes:
            remotes["local"] = stack.enter_context(rig.local_remote())
        if {"s3", "wan"} & set(settings.remotes):
            server = stack.enter_context(rig.s3_server(rclone))
            daemons["rclone serve s3"] = server.pid
            if "s3" in settings.remotes:
                remotes["s3"] = stack.enter_context(server.remote())
            if "wan" in settings.remotes:
                # Its log names the run's work dir, so a check for leftovers finds a proxy left running.
                proxy = stack.enter_context(wan.proxy(server.port, settings.wan_link, work / "wan-proxy.log"))
                daemons["wan proxy"] = proxy.pid
                remotes["wan"] = wan_remote(stack.enter_context(server.remote()), server, proxy, work)
        yield remotes, daemons


def run(settings: E2ESettings, stack: contextlib.ExitStack) -> dict[str, Any]:
    started, load_start = time.monotonic(), os.getloadavg()
    rclone = rig.find_tool("rclone")
    if rclone is None:
        raise RuntimeError("rclone not found (run scripts/bootstrap)")
    work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="zgbench-e2e-")))
    source = stack.enter_context(input_for(settings, work, say))
    remotes, daemons = stack.enter_context(_remotes(rclone, settings, work))
    bench = Bench(settings, source, remotes, work, {**daemon_pids(), **daemons}, settings.base.nproc)
    bench.prepare()
    cases = bench.end_to_end_cases() + bench.stage_cases()
    bench.run_all(cases)
    meta: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "code": provenance.describe(),
        "machine": describe_machine(rclone),
        "settings": {
            "quick": settings.base.quick,
            "size_mib": settings.size_mib,
            "repeat": settings.base.repeat,
            "seed": settings.base.seed,
            "dataset": settings.dataset,
            "stream": str(settings.base.stream) if settings.base.stream else None,
            "nproc": bench.nproc,
            "remotes": list(settings.remotes),
        },
        "input": source.description,
        "snapshot": source.snapshot,
        "raw_stream_bytes": bench.raw_size,
        "repeat": settings.base.repeat,
        "daemons_measured": sorted(bench.daemons),
        "load_start": [round(x, 2) for x in load_start],
        "load_end": [round(x, 2) for x in os.getloadavg()],
        "wan": wan_meta(settings.wan_link, cases) if "wan" in remotes else None,
        "seconds": time.monotonic() - started,
    }
    text = summary(cases, meta)
    print(text)
    return record(cases, {**meta, "summary": text})


def main() -> int:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    settings = settings_from_env()
    stack = contextlib.ExitStack()
    try:
        data = run(settings, stack)
    except BaseException:
        if not _interrupted:
            raise
        # A child hit by the same Ctrl-C may have failed first: the interruption is the news.
        say(f"interrupted ({_interrupted[0]}): stopping children, destroying what this run made")
        return 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # the cleanup below must finish
        stop_all()
        stack.close()
    kind = "-quick" if settings.base.quick else ""
    out = settings.base.out_dir / f"e2e-{time.strftime('%Y%m%d-%H%M%S')}-{socket.gethostname()}{kind}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {out}")
    if chart.available():
        print(f"wrote {chart.draw_e2e(data, out.with_suffix('.png'))}")
    else:
        print("matplotlib is not installed: no chart")
    return 0


if __name__ == "__main__":
    sys.exit(main())
