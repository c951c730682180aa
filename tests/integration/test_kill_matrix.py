"""The kill matrix: during a backup, `zfs send`, `rclone rcat`, the S3 server or zfsglacier itself gets
SIGTERM or SIGKILL, early, mid-stream or late, for a full and for an incremental backup.

Moments, i.e. the state of the pipeline when the victim is signalled:
- early: as soon as the victim exists (for the S3 server and zfsglacier: as soon as the upload does),
  before much of the stream has flowed;
- mid: `rclone rcat` has taken MID_BYTES of a much longer stream, then is frozen (SIGSTOP) until the pipes
  on both sides of zfsglacier are full: every stage is mid-stream, with most of the stream still to come;
- late: a stream small enough to fit in the buffers between the stages has been produced in full and
  `zfs send` has exited while `rclone rcat` is frozen: only the upload is unfinished.

After each run: a non-zero exit with one `error:` line naming the stage (none after a SIGKILL of
zfsglacier), no manifest for the new snapshot, `list` unchanged, the new snapshot destroyed, no partial
object (unless the remote was down, or zfsglacier was SIGKILLed), no child left running. Then the next
backup cleans up what could not be removed and succeeds, and every listed backup restores bit-identically.
"""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import rig
from helpers import children, cli, list_json, remote_files, snapshots, start_cli, wait_for_child, write_config

from zfsglacier.errors import EXIT_REMOTE, EXIT_SIGNAL_BASE, EXIT_ZFS
from zfsglacier.zfs.cmd import PENDING_PROPERTY

pytestmark = pytest.mark.integration

SEND, RCAT, SERVER, SELF = "zfs send", "rclone rcat", "S3 server", "zfsglacier"
EARLY, MID, LATE = "early", "mid", "late"
SIGNALS = (signal.SIGTERM, signal.SIGKILL)

# Random data, so the stored stream is as big as the raw one.
STREAM_BYTES = {
    EARLY: 16 << 20,
    # More than rclone reads ahead (on S3 up to 4 parts of 5 MiB) plus everything buffered between the
    # stages, on top of MID_BYTES: zfs send is still writing when the upload freezes.
    MID: 64 << 20,
    # Fits in the pipes, zfsglacier's queues and zstd's jobs with rclone frozen, yet is above rclone's
    # 100 KiB streaming cutoff, so S3 takes the multipart path as a real backup does.
    LATE: 2 << 20,
}
MID_BYTES = 6 << 20  # taken by rclone before the freeze: on S3 at least one part is uploaded
# rclone retries a dead endpoint for about 4 minutes per command by default; these make a run against a
# downed server fail within a second (zfsglacier passes RCLONE_* variables on to rclone).
FAIL_FAST = {"RCLONE_LOW_LEVEL_RETRIES": "1", "RCLONE_RETRIES": "1"}


@dataclass(frozen=True)
class Case:
    kind: str  # "full" or "incremental"
    victim: str
    sig: signal.Signals
    moment: str

    @property
    def remote(self) -> str:
        # The S3 server can only be killed under an S3 remote; the incrementals run on S3 too, so that
        # every victim is killed on both kinds of remote.
        return "s3" if self.victim == SERVER or self.kind == "incremental" else "local"

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.victim.replace(' ', '_')}-{self.sig.name}-{self.moment}-{self.remote}"


def _cases() -> list[Case]:
    # No late kill of `zfs send`: at that moment it has exited, there is nothing left to kill.
    full = [Case("full", victim, sig, moment)
            for victim in (SEND, RCAT, SERVER, SELF) for sig in SIGNALS for moment in (EARLY, MID, LATE)
            if not (victim == SEND and moment == LATE)]
    incremental = [Case("incremental", victim, sig, MID) for victim in (SEND, RCAT, SERVER, SELF) for sig in SIGNALS]
    return full + incremental


CASES = _cases()


@pytest.fixture
def lock_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))
    return {"ZFSGLACIER_LOCK_DIR": str(tmp_path / "locks")}


# --- watching the pipeline from outside -------------------------------------------------------------


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.01)


def alive(pid: int) -> bool:
    """Running or stopped; a zombie (dead, not yet reaped) does not count."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def bytes_read(pid: int) -> int:
    """What a process has read so far (read(2) of any file, pipe or socket)."""
    try:
        fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    except FileNotFoundError:
        return 0
    return int(fields["rchar"])


def pipe_fill(pid: int, fd: int) -> float:
    """How full the pipe behind a process's file descriptor is, 0.0 to 1.0 (0.0 once it is gone)."""
    try:
        handle = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return 0.0
    try:
        queued = struct.unpack("i", fcntl.ioctl(handle, termios.FIONREAD, b"\0" * 4))[0]
        capacity = fcntl.fcntl(handle, 1032)  # F_GETPIPE_SZ
    finally:
        os.close(handle)
    return float(queued / capacity)


def find_child(process: subprocess.Popen[bytes], needle: str) -> int:
    """The child whose command line holds `needle`, once it is started; 0 if the process ends first."""
    while process.poll() is None:
        found = [pid for pid, cmdline in children(process.pid).items() if needle in cmdline]
        if found:
            return found[0]
        time.sleep(0.01)
    return 0


def running_child(pid: int, needle: str) -> int:
    """A running child whose command line holds `needle`, or 0 (a zombie's command line is empty)."""
    return next((child for child, cmdline in children(pid).items() if needle in cmdline), 0)


@dataclass
class Pipeline:
    process: subprocess.Popen[bytes]
    send: int
    rcat: int
    frozen: bool = False

    def freeze_upload(self) -> None:
        os.kill(self.rcat, signal.SIGSTOP)
        self.frozen = True

    def thaw_upload(self) -> None:
        if self.frozen and alive(self.rcat):
            os.kill(self.rcat, signal.SIGCONT)

    def children_gone(self) -> bool:
        return not alive(self.send) and not alive(self.rcat)


def reach(moment: str, victim: str, process: subprocess.Popen[bytes]) -> Pipeline:
    """Start watching a backup and return once it is at `moment`."""
    if moment == EARLY and victim == SEND:
        return Pipeline(process, wait_for_child(process.pid, "zfs send"), rcat=0)
    rcat = wait_for_child(process.pid, " rcat ")  # zfs send is started first
    pipeline = Pipeline(process, running_child(process.pid, "zfs send"), rcat)
    if moment == MID:
        assert pipeline.send, "zfs send ended before the upload started: make the MID stream bigger"
        wait_until(lambda: bytes_read(rcat) >= MID_BYTES, f"rclone rcat reads {MID_BYTES} bytes")
        pipeline.freeze_upload()
        wait_until(lambda: pipe_fill(rcat, 0) > 0.5 and pipe_fill(pipeline.send, 1) > 0.5,
                   "the pipes into and out of zfsglacier fill up")
        assert alive(pipeline.send), "zfs send ended before the freeze: make the MID stream bigger"
    elif moment == LATE:
        pipeline.freeze_upload()
        wait_until(lambda: not running_child(process.pid, "zfs send"),
                   "zfs send produces the whole stream and exits")
    assert process.poll() is None, process.communicate()
    return pipeline


def kill_victim(case: Case, pipeline: Pipeline, server: rig.S3Server | None) -> None:
    if case.victim == SEND:
        os.kill(pipeline.send, case.sig)
        pipeline.thaw_upload()  # the upload would happily finish what it got: it must not
        pipeline.rcat = pipeline.rcat or find_child(pipeline.process, " rcat ")
    elif case.victim == RCAT:
        os.kill(pipeline.rcat, case.sig)
        pipeline.thaw_upload()  # a stopped process acts on SIGTERM only once it runs again
    elif case.victim == SERVER:
        assert server is not None
        server.kill(case.sig)  # dead before the upload may go on
        pipeline.thaw_upload()
    else:
        pipeline.process.send_signal(case.sig)  # a frozen upload stays frozen: zfsglacier must cope


def finish(process: subprocess.Popen[bytes]) -> tuple[int, str]:
    try:
        _, err = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGUSR1)  # zfsglacier prints every thread's stack (faulthandler)
        time.sleep(2)
        process.kill()
        _, err = process.communicate()
        pytest.fail(f"zfsglacier did not exit within 120 s; its stderr and stacks:\n{err.decode()}")
    text = err.decode()
    assert "Traceback" not in text, text
    return process.returncode, text


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("zfsglacier: error:")]


def check_outcome(case: Case, code: int, err: str, dataset: str) -> None:
    """The exit code and the one line that names the stage that failed."""
    if case.victim == SELF and case.sig == signal.SIGKILL:
        assert code == -signal.SIGKILL
        assert error_lines(err) == [], err  # it had no chance to say anything
        return
    errors = error_lines(err)
    assert len(errors) == 1, err
    line = errors[0]
    if case.victim == SEND:
        assert code == EXIT_ZFS, err
        assert f"error: zfs send: killed by signal {case.sig.name}" in line
    elif case.victim == RCAT:
        assert code == EXIT_REMOTE, err
        # rclone handles SIGTERM itself and exits with 128+N; unless it is not yet set up to.
        how = {f"killed by signal {case.sig.name}",
               f"exited with status {EXIT_SIGNAL_BASE + case.sig} (after {case.sig.name})"}
        assert any(f"error: rclone rcat: {detail}" in line for detail in how), line
    elif case.victim == SERVER:
        assert code == EXIT_REMOTE, err
        assert "error: rclone rcat: exited with status" in line, line
    else:
        assert code == EXIT_SIGNAL_BASE + case.sig, err
        # The step it interrupted: the stream of the new snapshot to its object.
        assert f"error: interrupted by {case.sig.name} while sending {dataset}@" in line, line
        assert f" ({case.kind}) to " in line and line.endswith(".zfs.zst"), line


# --- the dataset, its committed states and the remote ----------------------------------------------


@dataclass
class Scene:
    pool: rig.Pool
    dataset: str
    config: Path
    remote: rig.Remote
    committed: dict[str, dict[str, str]]  # snapshot -> tree digest of the source when it was taken

    @property
    def data(self) -> Path:
        return self.pool.path("data")


def prepare(case: Case, pool: rig.Pool, remote: rig.Remote, tmp_path: Path,
            capsys: pytest.CaptureFixture[str]) -> Scene:
    dataset = pool.dataset("data")
    rig.run(["zfs", "create", dataset])
    scene = Scene(pool, dataset, write_config(tmp_path, dataset, remote), remote, {})
    rig.populate(scene.data, seed="kill")
    if case.kind == "incremental":
        backup_ok(scene, capsys)
        rig.mutate(scene.data, seed="kill")
    (scene.data / "big.bin").write_bytes(os.urandom(STREAM_BYTES[case.moment]))
    return scene


def backup_ok(scene: Scene, capsys: pytest.CaptureFixture[str]) -> str:
    """A backup that must succeed; returns its stderr."""
    capsys.readouterr()
    assert cli("backup", "--config", scene.config) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    newest = str(list_json(scene.config, capsys)[-1]["snapshot"])
    scene.committed[newest] = rig.tree_digest(scene.data)
    return err


def manifests(remote: rig.Remote) -> list[str]:
    return [name for name in remote_files(remote) if name.endswith(".manifest.json")]


def expected_files(scene: Scene, records: list[dict[str, object]]) -> list[str]:
    """Exactly the objects and manifests of the committed backups, and the index."""
    folder = f"{scene.dataset}/"
    names = {f"{folder}zfsglacier.index.json"}
    for record in records:
        names.add(str(record["object"]).split(f":{scene.remote.bucket}/", 1)[1])
        names.add(f"{folder}{record['snapshot']}.manifest.json")
    return sorted(names)


def pending(snapshot: str) -> bool:
    value = rig.out(["zfs", "get", "-H", "-o", "value", PENDING_PROPERTY, snapshot])
    return value not in ("-", "")


@dataclass(frozen=True)
class Before:
    snapshots: list[str]
    files: list[str]
    records: list[dict[str, object]]


def check_nothing_committed(case: Case, scene: Scene, before: Before, pipeline: Pipeline, err: str,
                            capsys: pytest.CaptureFixture[str]) -> None:
    wait_until(pipeline.children_gone, "zfs send and rclone rcat die with the run")
    assert list_json(scene.config, capsys) == before.records
    assert manifests(scene.remote) == [n for n in before.files if n.endswith(".manifest.json")]
    extra_files = sorted(set(remote_files(scene.remote)) - set(before.files))
    assert set(before.files) <= set(remote_files(scene.remote))
    # Mid-stream on a local remote, rclone has written part of the object: there is one to remove.
    partial_written = case.moment == MID and case.remote == "local"
    if case.victim == SELF and case.sig == signal.SIGKILL:
        leftover = sorted(set(snapshots(scene.dataset)) - set(before.snapshots))
        assert len(leftover) == 1 and pending(leftover[0]), "the killed run's snapshot, marked pending"
        assert len(extra_files) == 1 if partial_written else len(extra_files) <= 1, extra_files
    else:
        if partial_written:
            assert "removed partial object" in err, err
        assert snapshots(scene.dataset) == before.snapshots
        if case.victim != SERVER:  # a down server cannot be asked to remove anything
            assert extra_files == [], "the partial object is removed"


def check_next_backup_cleans_up(case: Case, scene: Scene, before: Before, killed_pid: int,
                                capsys: pytest.CaptureFixture[str]) -> None:
    leftover_snapshots = sorted(set(snapshots(scene.dataset)) - set(before.snapshots))
    leftover_files = sorted(set(remote_files(scene.remote)) - set(before.files))
    lock = Path(os.environ["ZFSGLACIER_LOCK_DIR"]) / (quote(scene.dataset, safe="") + ".lock")
    if case.victim == SELF and case.sig == signal.SIGKILL:
        # The file still names the dead holder; the kernel dropped its flock, so it is not stale.
        assert lock.read_text() == f"pid {killed_pid}: backup\n"
    (scene.data / "big.bin").unlink()  # the next backup need not carry it again
    err = backup_ok(scene, capsys)
    for snapshot in leftover_snapshots:
        assert f"destroying {snapshot}: left uncommitted by an interrupted run" in err
    for name in leftover_files:
        assert f"{name}: a data object without a manifest is not a backup" in err, err
    records = list_json(scene.config, capsys)
    assert len(records) == len(before.records) + 1
    assert remote_files(scene.remote) == expected_files(scene, records)
    assert snapshots(scene.dataset) == [f"{scene.dataset}@{record['snapshot']}" for record in records]


def check_every_backup_restores(scene: Scene, capsys: pytest.CaptureFixture[str]) -> None:
    records = list_json(scene.config, capsys)
    assert [str(r["snapshot"]) for r in records] == list(scene.committed)
    for number, record in enumerate(records):
        target = f"restored{number}"
        assert cli("restore", "--config", scene.config, "--target-dataset", scene.pool.dataset(target),
                   "--snapshot", str(record["snapshot"]), "--yes") == 0, capsys.readouterr().err
        assert rig.tree_digest(scene.pool.path(target)) == scene.committed[str(record["snapshot"])]


@contextmanager
def remote_for(case: Case, request: pytest.FixtureRequest) -> Iterator[tuple[rig.Remote, rig.S3Server | None]]:
    if case.remote == "local":
        with rig.local_remote() as remote:
            yield remote, None
        return
    server: rig.S3Server = request.getfixturevalue("killable_s3_server")
    with server.remote() as remote:
        yield remote, server


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_kill(case: Case, zpool: rig.Pool, tmp_path: Path, lock_env: dict[str, str],
              request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> None:
    rig.need_tool("rclone")
    with remote_for(case, request) as (remote, server):
        scene = prepare(case, zpool, remote, tmp_path, capsys)
        before = Before(snapshots(scene.dataset), remote_files(remote), list_json(scene.config, capsys))
        env = {**lock_env, **(FAIL_FAST if case.victim == SERVER else {})}
        process = start_cli("backup", "--config", scene.config, env=env)
        pipeline = reach(case.moment, case.victim, process)
        kill_victim(case, pipeline, server)
        code, err = finish(process)
        if server is not None and not server.running():
            server.restart()
        check_outcome(case, code, err, scene.dataset)
        check_nothing_committed(case, scene, before, pipeline, err, capsys)
        check_next_backup_cleans_up(case, scene, before, process.pid, capsys)
        check_every_backup_restores(scene, capsys)
