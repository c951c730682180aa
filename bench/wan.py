"""`python -m bench.wan`: a TCP proxy on 127.0.0.1 that makes a loopback connection behave like one across
the internet to an object store, where one HTTP stream gets 20-100 MB/s whatever the link.

    python -m bench.wan --listen-port N --target-port M [--mbps 25] [--rtt-ms 20] [--handshake-rtts 2]
    python -m bench.wan --check [--mbps 25] [--rtt-ms 20] [--size-mb 200]    # its fidelity, measured

The model, per TCP connection and per direction (standard library only, one asyncio loop):
- a rate cap of `--mbps` MB/s (1e6 bytes/s): every chunk read (64 KiB at most) is stamped and takes the
  link from that stamp, or from when the chunks before it have gone through, for its size / the rate;
- a one-way latency of RTT/2 after that, so that nothing is forwarded before its read time + RTT/2 and every
  request/response exchange pays at least one round trip.
  The link's schedule is kept apart from the proxy's clock: when the proxy runs late (a busy CPU) it
  catches up with the schedule rather than losing the time, and a link that had nothing to carry earns no
  credit; when the receiver is slow, what the buffer holds goes to it at once when it reads again, as from
  a TCP receive buffer;
- a new connection reads nothing for `--handshake-rtts` round trips (2: TCP's and TLS 1.3's handshakes,
  which a real HTTPS endpoint costs and the plain-HTTP server behind this proxy does not);
- at most `--buffer-mib` MiB (4, or twice the bytes the latency holds if more) read and not yet forwarded;
  when it is full the proxy stops reading, so the sender gets TCP back-pressure.
An EOF is forwarded as an EOF (half-close) after the same latency; a reset on either side resets the other.
Not modelled: packet loss, TCP slow start and congestion control (the rate is the cap from the first
round trip on), jitter, a bottleneck shared by the connections (each has its own cap), anything not on
127.0.0.1.

As a library: `proxy(target_port, Link.of(25, 20))` runs it as a child process (so that its CPU is not
the caller's, and is measurable as its own) and yields its port and pid once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

MIB = 1 << 20
CHUNK = 64 * 1024
DEFAULT_MBPS = 25.0
DEFAULT_RTT_MS = 20.0
DEFAULT_HANDSHAKE_RTTS = 2.0
DEFAULT_BUFFER_MIB = 4.0
HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
READY = "listening on"


@dataclass(frozen=True)
class Link:
    """One direction of one connection: `rate` bytes/s, `delay` seconds one way, `handshake` seconds before
    a new connection's first byte is read, at most `buffer` bytes held."""

    rate: float
    delay: float
    handshake: float
    buffer: int

    @staticmethod
    def of(
        mbps: float = DEFAULT_MBPS,
        rtt_ms: float = DEFAULT_RTT_MS,
        handshake_rtts: float = DEFAULT_HANDSHAKE_RTTS,
        buffer_mib: float = DEFAULT_BUFFER_MIB,
    ) -> Link:
        if mbps <= 0 or rtt_ms < 0 or handshake_rtts < 0 or buffer_mib <= 0:
            raise ValueError(f"bad WAN model: {mbps} MB/s, RTT {rtt_ms} ms, {handshake_rtts} handshake RTTs, "
                             f"{buffer_mib} MiB buffer")
        rate, delay = mbps * 1e6, rtt_ms / 2000
        # The buffer must hold what the latency keeps in flight, or the latency would cap the rate.
        buffer = max(int(buffer_mib * MIB), int(2 * rate * delay) + 2 * CHUNK)
        return Link(rate, delay, handshake_rtts * rtt_ms / 1000, buffer)

    @property
    def mbps(self) -> float:
        return self.rate / 1e6

    @property
    def rtt_ms(self) -> float:
        return self.delay * 2000

    def argv(self) -> list[str]:
        rtts = self.handshake / (2 * self.delay) if self.delay else 0.0
        return ["--mbps", repr(self.mbps), "--rtt-ms", repr(self.rtt_ms), "--handshake-rtts", repr(rtts),
                "--buffer-mib", repr(self.buffer / MIB)]

    def describe(self) -> str:
        return (f"{self.mbps:g} MB/s per connection and direction, RTT {self.rtt_ms:g} ms ({self.delay * 1000:g} ms "
                f"each way), a new connection waits {self.handshake * 1000:g} ms (handshakes), "
                f"{self.buffer / MIB:g} MiB buffered per direction")


# --- the proxy ------------------------------------------------------------------------------------------


class _Pipe:
    """The chunks of one direction read and not yet forwarded, with their read times: at most `limit`
    bytes (one producer, one consumer)."""

    def __init__(self, limit: int) -> None:
        self._items: deque[tuple[float, bytes]] = deque()
        self._bytes = 0
        self._limit = limit
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()

    async def put(self, stamp: float, data: bytes) -> None:
        while self._bytes >= self._limit:
            self._writable.clear()
            await self._writable.wait()
        self._items.append((stamp, data))
        self._bytes += len(data)
        self._readable.set()

    async def get(self) -> tuple[float, bytes]:
        while not self._items:
            self._readable.clear()
            await self._readable.wait()
        stamp, data = self._items.popleft()
        self._bytes -= len(data)
        self._writable.set()
        return stamp, data


@dataclass
class Stats:
    connections: int = 0
    refused: int = 0  # the target did not answer
    resets: int = 0
    bytes_up: int = 0  # client -> target
    bytes_down: int = 0


class _Reset(Exception):
    """One side of a connection reset it (or its socket failed): reset the other."""


async def _forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: Link, count: list[int]) -> None:
    """One direction: read and stamp; forward each chunk when the modelled link has carried it and the
    latency has passed; EOF as EOF. Raises _Reset when either socket fails."""
    loop = asyncio.get_running_loop()
    pipe = _Pipe(link.buffer)

    async def read() -> None:
        try:
            while data := await reader.read(CHUNK):
                await pipe.put(loop.time(), data)
        except OSError as error:
            raise _Reset from error
        await pipe.put(loop.time(), b"")  # EOF

    async def write() -> None:
        sent = loop.time()  # when the link has carried everything before (its schedule, not the clock)
        try:
            while True:
                stamp, data = await pipe.get()
                # On the link from its read time (or once the link is free), for len / rate, then the delay.
                sent = max(sent, stamp) + len(data) / link.rate
                wait = sent + link.delay - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                count[0] += len(data)
                await writer.drain()
        except OSError as error:
            raise _Reset from error

    tasks = [asyncio.ensure_future(read()), asyncio.ensure_future(write())]
    try:
        # The writer ends at EOF (after the reader) or on an error; a reader's error ends both.
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
        await tasks[1]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST, as a reset travels."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _connection(
    client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, target_port: int, link: Link, stats: Stats
) -> None:
    stats.connections += 1
    try:
        server_r, server_w = await asyncio.open_connection(HOST, target_port, limit=2 * CHUNK)
    except OSError:
        stats.refused += 1
        _reset(client_w)
        return
    up, down = [0], [0]
    tasks: list[asyncio.Future[None]] = []
    try:
        if link.handshake > 0:
            await asyncio.sleep(link.handshake)
        tasks = [asyncio.ensure_future(_forward(client_r, server_w, link, up)),
                 asyncio.ensure_future(_forward(server_r, client_w, link, down))]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
    except _Reset:
        stats.resets += 1
        _reset(client_w)
        _reset(server_w)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        stats.bytes_up += up[0]
        stats.bytes_down += down[0]
        for writer in (client_w, server_w):
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()


async def serve(listen_port: int, target_port: int, link: Link, stats: Stats, ready: str | None = None) -> None:
    """Until SIGTERM or SIGINT; prints `ready` with the port once it listens (when given)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    live: set[asyncio.Task[None]] = set()

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        live.add(task)
        try:
            await _connection(reader, writer, target_port, link, stats)
        except asyncio.CancelledError:
            pass  # stopping: the connection is closed
        finally:
            live.discard(task)

    server = await asyncio.start_server(accepted, HOST, listen_port, limit=2 * CHUNK, backlog=128)
    port = server.sockets[0].getsockname()[1]
    if ready is not None:
        print(f"{ready} {HOST}:{port}", flush=True)
    async with server:
        await stop.wait()
        server.close()
        for task in list(live):
            task.cancel()
        await asyncio.gather(*live, return_exceptions=True)


def run_proxy(listen_port: int, target_port: int, link: Link, log: Path | None) -> None:
    stats = Stats()
    started = time.monotonic()
    asyncio.run(serve(listen_port, target_port, link, stats, READY))
    cpu = os.times()
    line = json.dumps({"link": link.describe(), "seconds": round(time.monotonic() - started, 3),
                       "cpu_s": round(cpu.user + cpu.system, 3), **stats.__dict__})
    if log is not None:
        with log.open("a") as out:
            print(line, file=out)


# --- as a child process ---------------------------------------------------------------------------------


def die_with(parent: int) -> None:
    """Get SIGTERM when `parent` ends, however it ends (PR_SET_PDEATHSIG), or exit now if it already has.
    Done in the child itself: a preexec_fn is not safe in a parent with threads."""
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)
    if os.getppid() != parent:
        sys.exit(0)


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) that process `pid` has used so far; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Proxy:
    port: int
    pid: int
    link: Link
    log: Path | None
    _process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def cpu_seconds(self) -> float:
        return process_cpu(self.pid)

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()


@contextlib.contextmanager
def proxy(target_port: int, link: Link, log: Path | None = None, timeout: float = 20) -> Iterator[Proxy]:
    """`python -m bench.wan` in front of 127.0.0.1:`target_port` on a free port, stopped at the end. `log`
    (appended to) gets its errors and, when it stops, a JSON line of what it moved and its CPU seconds."""
    argv = [sys.executable, "-m", "bench.wan", "--listen-port", "0", "--target-port", str(target_port),
            *link.argv(), "--parent", str(os.getpid())]
    if log is not None:
        argv += ["--log", str(log)]
    with contextlib.ExitStack() as files:
        errors = files.enter_context(log.open("ab")) if log is not None else None
        process = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors)
    assert process.stdout is not None
    found = Proxy(0, process.pid, link, log, process)
    try:
        line = b""
        deadline = time.monotonic() + timeout
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([process.stdout], [], [], left)[0]:
                raise RuntimeError(f"the WAN proxy did not start in {timeout:.0f} s")
            byte = os.read(process.stdout.fileno(), 1)
            if not byte:
                raise RuntimeError(f"the WAN proxy exited {process.wait()} before listening (see {log})")
            line += byte
        found.port = int(line.decode().rsplit(":", 1)[1])
        yield found
    finally:
        found.stop()


# --- command line ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.wan", description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen-port", type=int, help="on 127.0.0.1; 0: any free port (printed)")
    parser.add_argument("--target-port", type=int, help="forward to 127.0.0.1:PORT")
    parser.add_argument("--mbps", type=float, default=DEFAULT_MBPS, help="MB/s (1e6 bytes) per connection and "
                        "direction (default %(default)s)")
    parser.add_argument("--rtt-ms", type=float, default=DEFAULT_RTT_MS, help="round-trip time (default %(default)s)")
    parser.add_argument("--handshake-rtts", type=float, default=DEFAULT_HANDSHAKE_RTTS,
                        help="round trips a new connection waits (default %(default)s: TCP + TLS 1.3)")
    parser.add_argument("--buffer-mib", type=float, default=DEFAULT_BUFFER_MIB,
                        help="bytes held per direction at most (default %(default)s MiB)")
    parser.add_argument("--log", type=Path, help="append errors and, at exit, what it moved (JSON) here")
    parser.add_argument("--parent", type=int, help="stop when process PARENT ends")
    parser.add_argument("--check", action="store_true", help="measure the proxy's fidelity and CPU cost instead")
    parser.add_argument("--size-mb", type=float, default=200, help="bytes per stream in --check (default 200 MB)")
    args = parser.parse_args(argv)
    link = Link.of(args.mbps, args.rtt_ms, args.handshake_rtts, args.buffer_mib)
    if args.check:
        from bench.wan_check import check

        print(json.dumps(check(link, int(args.size_mb * 1e6)), indent=1))
        return 0
    if args.listen_port is None or args.target_port is None:
        parser.error("--listen-port and --target-port are needed (or --check)")
    if args.parent is not None:
        die_with(args.parent)
    run_proxy(args.listen_port, args.target_port, link, args.log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
