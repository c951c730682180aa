"""rclone remotes for tests: a local directory, `rclone serve s3` and moto's S3 server, each on 127.0.0.1
only, with a config file of their own."""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .tools import POOL_PREFIX, find_tool, run, unavailable


@dataclass(frozen=True)
class Remote:
    kind: str  # "local" or "s3"
    config_path: Path
    name: str
    bucket: str
    root: Path  # the filesystem directory holding the bucket's objects: NAME:BUCKET/x is root/x

    def path(self, key: str = "") -> str:
        """rclone path of an object or folder in the bucket."""
        return f"{self.name}:{self.bucket}/{key}"

    def argv(self, *args: str) -> list[str]:
        """An rclone command line using this remote's config file."""
        return [find_tool("rclone") or "rclone", "--config", str(self.config_path), *args]


def _write_config(path: Path, name: str, options: dict[str, str]) -> None:
    lines = [f"[{name}]", *(f"{key} = {value}" for key, value in options.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@contextlib.contextmanager
def local_remote() -> Iterator[Remote]:
    """An alias remote onto a temp directory; bucket "bucket" is its subdirectory."""
    workdir = Path(tempfile.mkdtemp(prefix="zgt-local-"))
    try:
        store = workdir / "store"
        (store / "bucket").mkdir(parents=True)
        config = workdir / "rclone.conf"
        _write_config(config, "zgtlocal", {"type": "alias", "remote": str(store)})
        yield Remote("local", config, "zgtlocal", "bucket", store / "bucket")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: the server dies with pytest even when pytest is killed without cleanup.
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)


def _answers_http(port: int) -> bool:
    # http.client, unlike urllib, never goes through a proxy from the environment.
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        connection.request("GET", "/")
        connection.getresponse()  # any answer will do: 403 without credentials
        return True
    except OSError:
        return False
    finally:
        connection.close()


@dataclass
class S3Server:
    """`rclone serve s3` on 127.0.0.1 serving a temp directory; each bucket is a subdirectory of it.

    A test may `kill` it and `restart` it: the same port, credentials and served directory.
    """

    port: int
    access_key: str
    secret_key: str
    served: Path
    pid: int = 0
    argv: list[str] = field(default_factory=list)
    log_path: Path | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @contextlib.contextmanager
    def remote(self) -> Iterator[Remote]:
        """A client config for this server and a new, empty bucket, removed afterwards."""
        bucket = POOL_PREFIX + "b" + secrets.token_hex(4)
        workdir = Path(tempfile.mkdtemp(prefix="zgt-s3client-"))
        root = self.served / bucket
        try:
            root.mkdir()  # the server takes every top-level directory as a bucket
            config = workdir / "rclone.conf"
            _write_config(config, "zgts3", {
                "type": "s3",
                "provider": "Rclone",
                "endpoint": self.endpoint,
                "access_key_id": self.access_key,
                "secret_access_key": self.secret_key,
            })
            yield Remote("s3", config, "zgts3", bucket, root)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            shutil.rmtree(root, ignore_errors=True)

    def start(self, timeout: float = 20) -> None:
        """Start the server and wait until it answers HTTP."""
        assert self.log_path is not None
        with open(self.log_path, "ab") as log:
            process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       preexec_fn=_die_with_parent)
        self._process, self.pid = process, process.pid
        deadline = time.monotonic() + timeout
        while not _answers_http(self.port):
            if process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"rclone serve s3 did not come up on port {self.port} "
                                   f"(exit {process.poll()}): {self.log_path.read_text(errors='replace')}")
            time.sleep(0.1)

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self, sig: int, timeout: float = 30) -> int:
        """Send `sig` and wait until the server has exited; returns its exit status (-N: killed by N)."""
        assert self._process is not None
        self._process.send_signal(sig)
        return self._process.wait(timeout=timeout)

    def restart(self, timeout: float = 20) -> None:
        """Start it again after a kill: same port, credentials and served directory."""
        if self.running():
            raise RuntimeError("rclone serve s3 is still running: kill it before restarting it")
        self.start(timeout)

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


@contextlib.contextmanager
def s3_server(rclone: str, timeout: float = 20) -> Iterator[S3Server]:
    workdir = Path(tempfile.mkdtemp(prefix="zgt-s3-"))
    served = workdir / "served"
    served.mkdir()
    (workdir / "server.conf").touch()  # an empty config: keeps the user's rclone.conf out of it
    server = S3Server(free_port(), "zgt" + secrets.token_hex(8), secrets.token_hex(16), served,
                      log_path=workdir / "server.log")
    server.argv = [rclone, "--config", str(workdir / "server.conf"), "serve", "s3",
                   "--addr", f"127.0.0.1:{server.port}",
                   "--auth-key", f"{server.access_key},{server.secret_key}",
                   # Tests change objects behind the server's back: no stale listings (the default caches
                   # 5 min). Not 0s: with 0s the server spins a core forever after a multipart upload.
                   "--dir-cache-time", "1ms",
                   # No ETag: rclone serve s3 would compute an object's MD5 at every listing or read of it (2.7 s
                   # for a 500 MB object), which a real object store, keeping it, never does.
                   "--etag-hash", "",
                   str(served)]
    try:
        server.start(timeout)
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


class MotoServer:
    """moto's S3 server (PyPI moto[server]) on 127.0.0.1: storage classes as AWS has them. It refuses a read
    of a GLACIER or DEEP_ARCHIVE object ("Object in GLACIER, restore first") until RestoreObject, which it
    answers at once: a thaw that AWS takes hours for."""

    def __init__(self, program: str, workdir: Path) -> None:
        self.port = free_port()
        self.log_path = workdir / "moto.log"
        self.argv = [program, "-H", "127.0.0.1", "-p", str(self.port)]
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                             stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while not _answers_http(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"moto_server did not come up on port {self.port}: "
                                   f"{self.log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=30)

    @contextlib.contextmanager
    def remote(self, provider: str = "AWS", *, object_lock: bool = False,
               endpoint: str | None = None) -> Iterator[Remote]:
        """A client config for this server and a new, empty bucket. (`root` is not a local folder here:
        moto keeps objects in memory.) rclone lists storage classes (`Tier`) with `provider = AWS`, not
        with `Other`. `object_lock`: the bucket is made with S3 Object Lock (and so with versioning).
        `endpoint`: where rclone sends its requests (a proxy in front of this server)."""
        bucket = POOL_PREFIX + "m" + secrets.token_hex(4)
        workdir = Path(tempfile.mkdtemp(prefix="zgt-motoclient-"))
        try:
            config = workdir / "rclone.conf"
            _write_config(config, "zgtmoto", {
                "type": "s3", "provider": provider, "endpoint": endpoint or self.endpoint, "region": "us-east-1",
                "access_key_id": "testing", "secret_access_key": "testing", "force_path_style": "true",
                # Over plain http the SDK would hash a PutObject's body first, which a stream (rcat of a
                # small object) cannot give twice; AWS itself is https, where payloads go unsigned anyway.
                "use_unsigned_payload": "true",
            })
            remote = Remote(f"moto-{provider}", config, "zgtmoto", bucket, workdir / "no-local-folder")
            run(remote.argv("mkdir", *(["--s3-bucket-object-lock-enabled"] if object_lock else []), remote.path()))
            yield remote
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def moto_server() -> Iterator[MotoServer]:
    program = find_tool("moto_server")
    if program is None:
        unavailable("moto_server not found (PyPI moto[server]: run scripts/bootstrap)")
    workdir = Path(tempfile.mkdtemp(prefix="zgt-moto-"))
    server = MotoServer(program, workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
