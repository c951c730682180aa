"""A TCP proxy on 127.0.0.1 that can go silent: the remote that accepts a connection and then
stops reading (or stops sending), which rclone's own timeouts take most of an hour to give up on.

A connection that has carried more than `stall_upload_after` bytes towards the server (or
`stall_download_after` bytes towards the client) stops being forwarded in that direction while
staying open. Counting is per connection, so small requests (listings, deletes) made after a stall
still pass: only the big transfer hangs.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

_PIECE = 64 * 1024


@dataclass
class StallingProxy:
    upstream_port: int
    stall_upload_after: int | None = None
    stall_download_after: int | None = None
    port: int = 0
    stalled: threading.Event = field(default_factory=threading.Event)  # some connection went silent
    _closing: threading.Event = field(default_factory=threading.Event)
    _sockets: list[socket.socket] = field(default_factory=list)

    def _pump(self, source: socket.socket, sink: socket.socket, limit: int | None) -> None:
        moved = 0
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
                sink.sendall(data)
                moved += len(data)

    def _serve(self, listener: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while not self._closing.is_set():
                client, _ = listener.accept()
                server = socket.create_connection(("127.0.0.1", self.upstream_port))
                self._sockets += [client, server]
                for source, sink, limit in ((client, server, self.stall_upload_after),
                                            (server, client, self.stall_download_after)):
                    threading.Thread(target=self._pump, args=(source, sink, limit), daemon=True).start()

    def close(self) -> None:
        self._closing.set()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()


@contextlib.contextmanager
def stalling_proxy(upstream_port: int, *, stall_upload_after: int | None = None,
                   stall_download_after: int | None = None) -> Iterator[StallingProxy]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    proxy = StallingProxy(upstream_port, stall_upload_after, stall_download_after,
                          port=listener.getsockname()[1])
    proxy._sockets.append(listener)
    threading.Thread(target=proxy._serve, args=(listener,), daemon=True).start()
    try:
        yield proxy
    finally:
        proxy.close()
