"""A TCP proxy on 127.0.0.1 between rclone and an S3 server that can go silent or cut a download.

Silent: the remote that accepts a connection and then stops reading (or stops sending), which rclone's
own timeouts take most of an hour to give up on. A connection that has carried more than
`stall_upload_after` bytes towards the server (or `stall_download_after` bytes towards the client) stops
being forwarded in that direction while staying open. Counting is per connection, so small requests
(listings, deletes) made after a stall still pass: only the big transfer hangs. With `silent_after_stall`,
every connection made after the first stall is silent from its first byte: a remote gone silent for good.

Cut: the first `cuts` requests for a byte range ending at `cut_range_end` (`Range: bytes=N-END`, as a
ranged `rclone cat` asks) have their connection reset after `cut_after` bytes of the answer: a download
broken mid-way, as a flaky link does.
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

_PIECE = 64 * 1024
_RANGE = re.compile(rb"(?i)\r\nrange: bytes=\d+-(\d+)\r\n")


@dataclass
class StallingProxy:
    upstream_port: int
    stall_upload_after: int | None = None
    stall_download_after: int | None = None
    silent_after_stall: bool = False
    cut_range_end: int | None = None
    cut_after: int = 0
    cuts: int = 0  # how many more requests for that range are cut
    port: int = 0
    stalled: threading.Event = field(default_factory=threading.Event)  # some connection went silent
    cut: int = 0  # connections cut so far
    _closing: threading.Event = field(default_factory=threading.Event)
    _sockets: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _doom(self, data: bytes, doomed: threading.Event) -> None:
        """A request for the range to cut (while cuts are left) dooms its connection."""
        found = _RANGE.search(data)
        if found is None or self.cut_range_end is None or int(found[1]) != self.cut_range_end:
            return
        with self._lock:
            if self.cuts > 0:
                self.cuts -= 1
                doomed.set()

    def _pump(self, source: socket.socket, sink: socket.socket, limit: int | None, upload: bool,
              doomed: threading.Event) -> None:
        moved = answered = 0
        with contextlib.suppress(OSError):
            while not self._closing.is_set():
                if limit is not None and moved >= limit:
                    self.stalled.set()
                    self._closing.wait()  # silent, connection open, until the proxy closes
                    return
                data = source.recv(_PIECE if limit is None else min(_PIECE, limit - moved))
                if not data:
                    sink.shutdown(socket.SHUT_WR)
                    return
                if upload:
                    self._doom(data, doomed)
                elif doomed.is_set():
                    if answered + len(data) > self.cut_after:
                        sink.sendall(data[: max(self.cut_after - answered, 0)])
                        self._reset(source, sink)
                        return
                    answered += len(data)
                sink.sendall(data)
                moved += len(data)

    def _reset(self, *sockets: socket.socket) -> None:
        """Close with a TCP reset, as a broken link looks to rclone."""
        with self._lock:
            self.cut += 1
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                # Wakes the other direction's thread blocked in recv(): until it returns, close() alone
                # would leave the connection open (and rclone waiting on it).
                sock.shutdown(socket.SHUT_RD)
                sock.close()

    def _serve(self, listener: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while not self._closing.is_set():
                client, _ = listener.accept()
                server = socket.create_connection(("127.0.0.1", self.upstream_port))
                self._sockets += [client, server]
                download_limit = 0 if self.silent_after_stall and self.stalled.is_set() else self.stall_download_after
                doomed = threading.Event()
                for source, sink, limit, upload in ((client, server, self.stall_upload_after, True),
                                                    (server, client, download_limit, False)):
                    threading.Thread(target=self._pump, args=(source, sink, limit, upload, doomed),
                                     daemon=True).start()

    def close(self) -> None:
        self._closing.set()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()


@contextlib.contextmanager
def stalling_proxy(upstream_port: int, *, stall_upload_after: int | None = None,
                   stall_download_after: int | None = None, silent_after_stall: bool = False,
                   cut_range_end: int | None = None, cut_after: int = 0, cuts: int = 0) -> Iterator[StallingProxy]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    proxy = StallingProxy(upstream_port, stall_upload_after, stall_download_after, silent_after_stall,
                          cut_range_end, cut_after, cuts, port=listener.getsockname()[1])
    proxy._sockets.append(listener)
    threading.Thread(target=proxy._serve, args=(listener,), daemon=True).start()
    try:
        yield proxy
    finally:
        proxy.close()
