"""[run] parallel = 2 on real zfs and rclone: datasets stream at the same time, one failing leaves the others
committed with the exit code and last line of a run one by one, and a SIGTERM leaves nothing that looks
like a backup, in the datasets that were streaming and in those that had not started."""

from __future__ import annotations

import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
import rig
from helpers import children, cli, list_json, remote_files, snapshots, start_cli, write_config

from zfsglacier.commands import backup
from zfsglacier.errors import EXIT_REMOTE, EXIT_SIGNAL_BASE

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))


def four_datasets(pool: rig.Pool, tree: bool) -> list[str]:
    """A tree `vm` with three children, or four datasets side by side."""
    names = ["vm", "vm/disk-0", "vm/disk-1", "vm/disk-2"] if tree else ["d0", "d1", "d2", "d3"]
    for name in names:
        rig.run(["zfs", "create", pool.dataset(name)])
        rig.populate(pool.path(name), seed=name, n_files=6)
    return [pool.dataset(name) for name in names]


def config_for(tmp_path: Path, remote: rig.Remote, datasets: list[str], tree: bool, bwlimit: str = "") -> Path:
    config = write_config(tmp_path, datasets[0], remote, extra="[run]\nparallel = 2\n")
    covered = "\nrecursive = yes" if tree else "".join(f"\n    {dataset}" for dataset in datasets[1:])
    text = config.read_text().replace(f"dataset = {datasets[0]}\n", f"dataset = {datasets[0]}{covered}\n")
    config.write_text(text.replace("[rclone]\n", f"[rclone]\nbwlimit = {bwlimit}\n") if bwlimit else text)
    return config


def mountpoint(dataset: str) -> Path:
    return Path(rig.out(["zfs", "get", "-H", "-o", "value", "mountpoint", dataset]).strip())


class TwoAtOnce:
    """Wraps the stream of each backup: the first two must be inside it at the same time (a barrier that
    breaks after 60 s otherwise), and the most at once is recorded."""

    def __init__(self, stream: object) -> None:
        self.stream = stream
        self.barrier = threading.Barrier(2, timeout=60)
        self.lock = threading.Lock()
        self.entered = 0
        self.running = 0
        self.most = 0

    def __call__(self, *args: object) -> object:
        with self.lock:
            self.entered += 1
            first_two = self.entered <= 2
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            if first_two:
                self.barrier.wait()
            return self.stream(*args)  # type: ignore[operator]
        finally:
            with self.lock:
                self.running -= 1


@pytest.mark.parametrize("tree", [True, False], ids=["atomic-tree", "listed-datasets"])
def test_two_at_once_one_failing_the_others_commit_with_the_usual_exit_code_and_last_line(
    tree: bool, zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    datasets = four_datasets(zpool, tree)
    config = config_for(tmp_path, local_remote, datasets, tree)
    capsys.readouterr()
    assert cli("backup", "--config", config, "--dry-run") == 0
    assert "backs up 4 datasets, up to 2 at once: no [rclone] bwlimit" in capsys.readouterr().out
    assert all(snapshots(d) == [] for d in datasets)
    watch = TwoAtOnce(backup.stream_and_commit)
    monkeypatch.setattr(backup, "stream_and_commit", watch)
    assert cli("backup", "--config", config) == 0
    err = capsys.readouterr().err
    assert watch.most == 2 and watch.entered == 4
    assert "zfsglacier: 4 datasets, up to 2 at once: no [rclone] bwlimit and [rclone] upload_memory" in err
    for dataset in datasets:
        assert f"zfsglacier: [{dataset}] backed up {dataset}@" in err, err
    assert all(len(snapshots(d)) == 1 for d in datasets)

    # The remote refuses one dataset's objects: a file where its folder would be.
    failing = datasets[2]
    blocked = local_remote.root / failing
    shutil.move(blocked, tmp_path / "set-aside")
    blocked.write_text("not a folder")
    for dataset in datasets:
        rig.mutate(mountpoint(dataset), seed="2")
    capsys.readouterr()
    assert cli("backup", "--config", config) == EXIT_REMOTE
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith(
        f"zfsglacier: error: 1 of 4 datasets failed: {failing} (exit 4: the remote or rclone failed)"), err
    assert f"zfsglacier: error: {failing}: " in err
    assert len(snapshots(failing)) == 1, "the failed dataset's new snapshot is destroyed"
    assert all(len(snapshots(d)) == 2 for d in datasets if d != failing)
    blocked.unlink()
    shutil.move(tmp_path / "set-aside", blocked)
    kinds: dict[str, list[str]] = {}
    for record in list_json(config, capsys):
        kinds.setdefault(str(record["dataset"]), []).append(str(record["kind"]))
    assert kinds == {d: ["full"] if d == failing else ["full", "incremental"] for d in datasets}


def manifests(remote: rig.Remote) -> list[str]:
    return [name for name in remote_files(remote) if name.endswith(".manifest.json")]


@pytest.mark.parametrize("tree", [True, False], ids=["atomic-tree", "listed-datasets"])
def test_sigterm_stops_the_streams_and_leaves_nothing_in_any_dataset(
    tree: bool, zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path,
) -> None:
    datasets = four_datasets(zpool, tree)
    for dataset in datasets:  # 4 MiB of random data each: at the shared 256 KiB/s, uploads that last
        (mountpoint(dataset) / "random.bin").write_bytes(rig.seeded_random(dataset).randbytes(4 << 20))
    config = config_for(tmp_path, local_remote, datasets, tree, bwlimit="512k")
    process = start_cli("backup", "--config", config, env={"ZFSGLACIER_LOCK_DIR": str(tmp_path / "locks")})
    try:
        deadline = time.monotonic() + 60
        uploads: list[str] = []
        while time.monotonic() < deadline and len(uploads) < 2:
            uploads = [line for line in children(process.pid).values() if " rcat " in line]
            time.sleep(0.05)
        assert len(uploads) == 2, f"two uploads at once, each with half of the bwlimit: {uploads}"
        assert all(" --bwlimit 262144B " in line for line in uploads), uploads
        process.send_signal(signal.SIGTERM)
        _, err_bytes = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    err = err_bytes.decode()
    assert process.returncode == EXIT_SIGNAL_BASE + signal.SIGTERM, err
    assert "Traceback" not in err
    assert "zfsglacier: error: interrupted by SIGTERM while backing up 4 datasets, 2 at once" in err, err
    assert err.count(": interrupted by SIGTERM while ") >= 3, "each streaming dataset says where it stopped"
    assert all(snapshots(d) == [] for d in datasets), [snapshots(d) for d in datasets]
    assert manifests(local_remote) == []
    assert [name for name in remote_files(local_remote) if ".zfs" in name] == []
    assert children(process.pid) == {}
