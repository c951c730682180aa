"""`python -m bench.wan --check`: the WAN model's proxy measured against its model (one and four streams each
way, round trips, its CPU per GB), with the peer server it is measured against (the bench smoke test's too).
"""

from __future__ import annotations

import socket
import statistics
import struct
import sys
import threading
import time
from collections.abc import Callable

from bench.wan import CHUNK, HOST, MIB, Link, proxy


class PeerServer:
    """On 127.0.0.1, a thread per connection. The first byte says what to do: b"u" read to EOF, then
    answer the count (8 bytes); b"d" + 8 bytes N: send N bytes, then close; b"e": echo until EOF;
    b"r": close with a reset."""

    def __init__(self) -> None:
        self.sock = socket.create_server((HOST, 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _serve(conn: socket.socket) -> None:
        with conn:
            what = recv_exactly(conn, 1)
            if what == b"u":
                buffer, total = bytearray(MIB), 0
                while count := conn.recv_into(buffer):
                    total += count
                conn.sendall(struct.pack("!Q", total))
            elif what == b"d":
                (size,) = struct.unpack("!Q", recv_exactly(conn, 8))
                _send_zeros(conn, size)
            elif what == b"e":
                while data := conn.recv(CHUNK):
                    conn.sendall(data)
            elif what == b"r":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def close(self) -> None:
        self.sock.close()


def recv_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        more = conn.recv(size - len(data))
        if not more:
            raise ConnectionError(f"closed after {len(data)} of {size} bytes")
        data += more
    return data


def _send_zeros(conn: socket.socket, size: int) -> None:
    block = memoryview(bytes(MIB))
    while size > 0:
        conn.sendall(block[: min(size, MIB)])
        size -= min(size, MIB)


def _upload(port: int, size: int) -> float:
    started = time.perf_counter()
    with socket.create_connection((HOST, port)) as conn:
        conn.sendall(b"u")
        _send_zeros(conn, size)
        conn.shutdown(socket.SHUT_WR)
        (got,) = struct.unpack("!Q", recv_exactly(conn, 8))
    if got != size:
        raise RuntimeError(f"sent {size} bytes, the server got {got}")
    return time.perf_counter() - started


def _download(port: int, size: int) -> float:
    started = time.perf_counter()
    with socket.create_connection((HOST, port)) as conn:
        conn.sendall(b"d" + struct.pack("!Q", size))
        buffer, total = bytearray(MIB), 0
        while count := conn.recv_into(buffer):
            total += count
    if total != size:
        raise RuntimeError(f"asked for {size} bytes, got {total}")
    return time.perf_counter() - started


def _round_trips(port: int, count: int) -> tuple[float, list[float]]:
    """The first exchange of a new connection (connect included), then `count` more on it."""
    times = []
    started = time.perf_counter()
    with socket.create_connection((HOST, port)) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sendall(b"ex")
        recv_exactly(conn, 1)
        first = time.perf_counter() - started
        for _ in range(count):
            at = time.perf_counter()
            conn.sendall(b"x")
            recv_exactly(conn, 1)
            times.append(time.perf_counter() - at)
    return first, times


def _parallel(what: Callable[[int, int], float], port: int, size: int, streams: int) -> float:
    errors: list[BaseException] = []

    def one() -> None:
        try:
            what(port, size)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=one) for _ in range(streams)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started


def check(link: Link, size: int) -> dict[str, object]:
    """Measure the proxy against its model: one stream each way, 4 at once, round trips; its CPU per GB."""
    server = PeerServer()
    results: dict[str, object] = {"link": link.describe(), "size_bytes": size}
    try:
        with proxy(server.port, link) as running:
            first, trips = _round_trips(running.port, 20)
            results["first_exchange_ms"] = round(first * 1000, 2)
            results["round_trip_ms_median"] = round(statistics.median(trips) * 1000, 2)
            results["round_trip_ms_min"] = round(min(trips) * 1000, 2)
            cases = (("1 upload", _upload, 1), ("1 download", _download, 1), ("4 uploads", _upload, 4),
                     ("4 downloads", _download, 4))
            for name, what, streams in cases:
                cpu = running.cpu_seconds()
                seconds = _parallel(what, running.port, size, streams)
                cpu = running.cpu_seconds() - cpu
                moved = size * streams
                results[name] = {
                    "seconds": round(seconds, 3),
                    "mb_per_s": round(moved / 1e6 / seconds, 2),
                    "of_cap": round(moved / seconds / (link.rate * streams), 3),
                    "proxy_cpu_s_per_gb": round(cpu / (moved / 1e9), 3),
                }
                print(f"{name}: {results[name]}", file=sys.stderr, flush=True)
    finally:
        server.close()
    return results
