"""The only module that starts processes.

Children get argv lists (never a shell), a minimal environment, their own process group (a Ctrl-C
in the terminal reaches only us, and we stop the children in the order that keeps the remote
clean) and SIGKILL when we die. Each child's stderr is drained by a thread into a bounded tail, so a
chatty child never blocks on a full pipe and errors can show what it said.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import fcntl
import logging
import os
import shlex
import signal
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Protocol

from zfsglacier.errors import StageError, StageErrorFactory
from zfsglacier.signals import checkpoint
from zfsglacier.threads import carried

log = logging.getLogger(__name__)

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
_PR_SET_PDEATHSIG = 1
_F_SETPIPE_SZ = 1031
PIPE_SIZE = 1 << 20
_STDERR_TAIL_LINES = 20
_WAIT_SLICE = 0.5  # seconds

# Variables every child may need: where programs are, and who and where it runs. Credentials
# (RCLONE_*, AWS_*, ...) only for rclone: rclone.env() asks for them by prefix.
_ENV_KEEP = ("PATH", "HOME", "TMPDIR", "TZ", "USER", "LOGNAME")


def child_env(extra_prefixes: Iterable[str] = ()) -> dict[str, str]:
    prefixes = tuple(extra_prefixes)
    env = {k: v for k, v in os.environ.items() if k in _ENV_KEEP or k.startswith(prefixes)}
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env["LC_ALL"] = "C"  # parsable, untranslated output and messages
    return env


def render(argv: Sequence[str]) -> str:
    """A copy-pastable shell rendering of one command."""
    return shlex.join(argv)


def render_pipeline(stages: Sequence[Sequence[str]]) -> str:
    return " | ".join(render(argv) for argv in stages)


_prctl: Callable[..., int] | None
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up once, before any fork
except (OSError, AttributeError):  # pragma: no cover - not Linux
    _prctl = None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # Without this, a SIGKILLed zfsglacier would leave zfs send running and rclone reading on.
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _grow_pipe(stream: IO[bytes] | None) -> None:
    # Larger pipes mean fewer, bigger reads and writes between stages; the default is 64 KiB.
    if stream is not None:
        with contextlib.suppress(OSError):  # a smaller pipe works too, only slower
            fcntl.fcntl(stream.fileno(), _F_SETPIPE_SZ, PIPE_SIZE)


_dry_run_echo: Callable[[str], None] | None = None


@contextlib.contextmanager
def dry_run(echo: Callable[[str], None]) -> Iterator[None]:
    """Inside, every command that changes something (`run(..., change=True)`) is printed with `echo`, as a
    person could paste it, instead of being run; commands that only read still run. So the code of the
    real run prints the plan of a dry run, and the two cannot tell different stories. Process-wide: a
    zfsglacier run is a dry run or it is not."""
    global _dry_run_echo
    previous, _dry_run_echo = _dry_run_echo, echo
    try:
        yield
    finally:
        _dry_run_echo = previous


def dry_running() -> bool:
    return _dry_run_echo is not None


class StartChild(Protocol):
    """How a stream starts a child: Child's own arguments (pipeline._Stages.start, which also tracks it)."""

    def __call__(self, stage: str, argv: Sequence[str], *, error: StageErrorFactory,
                 stdin: int | IO[bytes] | None = None, stdout: int | IO[bytes] | None = None,
                 env: dict[str, str] | None = None, redact: Callable[[str], str] | None = None) -> Child: ...


class Child:
    """A started child process, named by its pipeline stage ("zfs send", "rclone rcat", ...)."""

    def __init__(
        self,
        stage: str,
        argv: Sequence[str],
        *,
        error: StageErrorFactory,
        stdin: int | IO[bytes] | None = None,
        stdout: int | IO[bytes] | None = None,
        env: dict[str, str] | None = None,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        if _dry_run_echo is not None:  # a stream is never printed instead: it must not start in a dry run
            raise RuntimeError(f"{stage} started inside a dry run: {render(argv)}")
        self.stage = stage
        self.argv = list(argv)
        self.error = error
        self._redact = redact  # applied to what the child says before it is logged or shown
        self._tail: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL_LINES)
        log.debug("start %s: %s", stage, render(self.argv))
        try:
            self.popen = subprocess.Popen(  # noqa: S603 - argv list, no shell
                self.argv,
                stdin=stdin,
                stdout=stdout,
                stderr=PIPE,
                env=env if env is not None else child_env(),
                process_group=0,
                preexec_fn=_die_with_parent,
                close_fds=True,
            )
        except FileNotFoundError:
            raise error(stage, f"program not found: {self.argv[0]}") from None
        except PermissionError:
            raise error(stage, f"permission denied running {self.argv[0]}") from None
        _grow_pipe(self.popen.stdout)
        _grow_pipe(self.popen.stdin)
        self._drain = threading.Thread(target=carried(self._drain_stderr), name=f"stderr:{stage}", daemon=True)
        self._drain.start()

    @property
    def stdin(self) -> IO[bytes]:
        if self.popen.stdin is None:
            raise TypeError(f"{self.stage} was started without a stdin pipe")
        return self.popen.stdin

    @property
    def stdout(self) -> IO[bytes]:
        if self.popen.stdout is None:
            raise TypeError(f"{self.stage} was started without a stdout pipe")
        return self.popen.stdout

    def _drain_stderr(self) -> None:
        stderr = self.popen.stderr
        if stderr is None:
            return
        for raw in stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self._tail.append(line)
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("%s: %s", self.stage, self._clean(line))

    def _clean(self, text: str) -> str:
        return self._redact(text) if self._redact is not None else text

    def stderr_tail(self) -> str:
        self._drain.join(timeout=5)
        return self._clean(" | ".join(self._tail))

    def running(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL, so that the child cannot act on what it has (rclone must not commit a truncated upload)."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.kill()

    def close_stdin(self) -> None:
        if self.popen.stdin is not None and not self.popen.stdin.closed:
            with contextlib.suppress(OSError):  # the child is gone; its exit status tells why
                self.popen.stdin.close()

    def wait(self, timeout: float | None = None) -> int:
        if timeout is not None:
            return self.popen.wait(timeout)
        # In slices, not one endless waitpid(): see signals.py on signals given to another thread.
        while True:
            try:
                return self.popen.wait(_WAIT_SLICE)
            except subprocess.TimeoutExpired:
                checkpoint()

    def exit_status_within(self, seconds: float) -> int | None:
        """The exit status if the child ends within `seconds`, else None (it keeps running)."""
        try:
            return self.popen.wait(seconds)
        except subprocess.TimeoutExpired:
            return None

    def failure(self, returncode: int | None = None) -> StageError:
        code = self.popen.returncode if returncode is None else returncode
        return self.error(self.stage, how_it_ended(code), self.stderr_tail())

    def check(self) -> None:
        """Wait for the child and raise its stage error unless it exited 0."""
        if self.wait() != 0:
            raise self.failure()

    def abort(self) -> None:
        """Kill first, then close our end of its stdin, then reap: the order that never lets a child
        see a clean end of input after a failure."""
        self.kill()
        self.close_stdin()
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        try:
            self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not take this long
            log.warning("%s did not exit after SIGKILL", self.stage)


def how_it_ended(returncode: int | None) -> str:
    """"killed by signal SIGKILL", "exited with status 4", or for a child that caught a signal and
    exited with 128+N as programs do (rclone on SIGTERM): "exited with status 143 (after SIGTERM)"."""
    if returncode is not None and returncode < 0:
        return f"killed by signal {signal.Signals(-returncode).name}"
    detail = f"exited with status {returncode}"
    if returncode is not None and returncode > 128 and returncode - 128 in _CAUGHT_SIGNALS:
        detail += f" (after {signal.Signals(returncode - 128).name})"
    return detail


_CAUGHT_SIGNALS = {int(s) for s in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE)}


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: bytes
    stderr: str


def run(
    stage: str,
    argv: Sequence[str],
    *,
    error: StageErrorFactory,
    input: bytes | None = None,
    check: bool = True,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    timeout_source: str = "",
    change: bool = False,
    why: str = "",
) -> Result:
    """Run a short command to completion and capture its output. `timeout_source` names the setting
    the timeout comes from, for the message. `change`: the command changes something, so a dry run
    prints it (with `why`, and how much it writes) instead, and it succeeds with no output."""
    if change and _dry_run_echo is not None:
        notes = [note for note in (f"< {len(input)} bytes" if input is not None else "", why) if note]
        _dry_run_echo(render(argv) + (f"  # {'; '.join(notes)}" if notes else ""))
        return Result(0, b"", "")
    log.debug("run %s: %s", stage, render(argv))
    try:
        done = subprocess.run(  # noqa: S603 - argv list, no shell
            list(argv),
            input=input,
            stdin=None if input is not None else DEVNULL,
            capture_output=True,
            env=env if env is not None else child_env(),
            process_group=0,
            preexec_fn=_die_with_parent,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise error(stage, f"program not found: {argv[0]}") from None
    except subprocess.TimeoutExpired:
        where = f" ({timeout_source})" if timeout_source else ""
        raise error(stage, f"no answer within {timeout:g} s{where}") from None
    stderr = done.stderr.decode("utf-8", "replace").strip()
    if check and done.returncode != 0:
        tail = " | ".join(stderr.splitlines()[-_STDERR_TAIL_LINES:])
        raise error(stage, how_it_ended(done.returncode), tail)
    return Result(done.returncode, done.stdout, stderr)
