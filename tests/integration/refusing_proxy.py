"""An HTTP proxy on 127.0.0.1 between rclone and an S3 server that refuses every delete, as S3 does for a
credential without s3:DeleteObject (moto does not enforce IAM). Deletes are DELETE requests on an object
and batch deletes (POST ?delete); aborting a multipart upload (DELETE ?uploadId=...) is let through, as
the backup host's policy allows it. Everything else is forwarded as it is."""

from __future__ import annotations

import contextlib
import http.client
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

_DENIED = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
           b"<Message>Access Denied</Message><RequestId>refusing-proxy</RequestId></Error>")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "te", "trailer"}


def refuses(method: str, target: str) -> bool:
    query = parse_qs(urlsplit(target).query, keep_blank_values=True)
    return (method == "DELETE" and "uploadId" not in query) or (method == "POST" and "delete" in query)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream_port = 0
    refused: list[str]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self) -> None:
        body = self._body()
        if refuses(self.command, self.path):
            self.refused.append(f"{self.command} {self.path}")
            self.send_response(403)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(_DENIED)))
            self.end_headers()
            self.wfile.write(_DENIED)
            return
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP | {"expect"}}
            headers["Content-Length"] = str(len(body))
            upstream.request(self.command, self.path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
        finally:
            upstream.close()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in _HOP_BY_HOP | {"content-length"}:
                self.send_header(name, value)
        # A HEAD answer has no body, but the length of the object it describes.
        self.send_header("Content-Length", answer.getheader("Content-Length", "0") if self.command == "HEAD"
                         else str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


@contextlib.contextmanager
def refusing_proxy(upstream_port: int) -> Iterator[tuple[str, list[str]]]:
    """(the proxy's endpoint, the requests it refused so far)."""
    refused: list[str] = []
    handler = type("Handler", (_Handler,), {"upstream_port": upstream_port, "refused": refused})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", refused
    finally:
        server.shutdown()
        server.server_close()
