"""Corruption of what is stored: one byte flipped in, a truncation of, or the deletion of a data object or
a manifest, for the full, a middle incremental and the newest backup of a chain.

Restore names the damaged object in its one error line and commits nothing of it or past it. Damage
found before anything starts (a size, a missing object, a manifest) leaves no target at all; a damaged
incremental found while streaming leaves the backups before it, marked unfinished and not mounted, and
the same restore run again continues from there once the object is back.

The chain is backed up once (module fixture); each test gets its own copy of the stored objects, on a
local remote for the whole matrix and on S3 for a subset.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import rig
from helpers import back_up_a_chain, cli, error_line, snapshots, write_config

from zfsglacier.commands.restore import INCOMPLETE, RESTORE_PROPERTY
from zfsglacier.errors import EXIT_CHAIN, EXIT_INTEGRITY, EXIT_OK
from zfsglacier.remote.manifest import manifest_name
from zfsglacier.remote.manifest_index import INDEX_NAME
from zfsglacier.remote.manifest_index import decode as index_decode
from zfsglacier.zfs import cmd as zfs

pytestmark = pytest.mark.integration
POSITIONS = {"full": 0, "middle": 1, "newest": 2}


@dataclass(frozen=True)
class Chain:
    """A full and two incrementals, stored once; copied into each test's remote."""

    pool: rig.Pool
    dataset: str
    stored: Path  # a copy of the dataset's folder on the remote, as the backups left it
    snapshots: list[str]  # oldest first
    objects: list[str]  # data object names, oldest first
    tree: dict[str, str]  # the dataset's files at the newest backup


@dataclass(frozen=True)
class Case:
    chain: Chain
    remote: rig.Remote
    config: Path

    @property
    def folder(self) -> Path:
        return self.remote.root / self.chain.dataset

    def data(self, position: int) -> Path:
        return self.folder / self.chain.objects[position]

    def manifest(self, position: int) -> Path:
        return self.folder / manifest_name(self.chain.snapshots[position])

    def rclone_path(self, stored: Path) -> str:
        return self.remote.path(f"{self.chain.dataset}/{stored.name}")


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    rig.need_tool("zfs")
    rig.need_tool("rclone")
    workdir = tmp_path_factory.mktemp("corruption")
    with pytest.MonkeyPatch.context() as patch, rig.file_pool() as pool, rig.local_remote() as remote:
        patch.setenv("ZFSGLACIER_LOCK_DIR", str(workdir / "locks"))
        dataset, _ = back_up_a_chain(pool, remote, workdir, seed="corruption", n_files=30)
        stored = workdir / "stored"
        shutil.copytree(remote.root / dataset, stored)
        manifests = [json.loads(p.read_bytes()) for p in stored.glob("*.manifest.json")]
        manifests.sort(key=lambda m: m["createtxg"])
        assert [m["kind"] for m in manifests] == ["full", "incremental", "incremental"]
        yield Chain(pool, dataset, stored, [m["snapshot"] for m in manifests], [m["object"] for m in manifests],
                    rig.tree_digest(pool.path("data")))


@pytest.fixture
def remote_kind() -> str:
    """Tests parametrize it to "s3" where they run on S3 too."""
    return "local"


@pytest.fixture
def case(chain: Chain, remote_kind: str, request: pytest.FixtureRequest, tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[Case]:
    """The stored chain on a fresh remote."""
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))
    with _remote(request, remote_kind) as remote:
        shutil.copytree(chain.stored, remote.root / chain.dataset)
        yield Case(chain, remote, write_config(tmp_path, chain.dataset, remote, "zstd"))


def _remote(request: pytest.FixtureRequest, kind: str):  # type: ignore[no-untyped-def]
    if kind == "s3":
        server: rig.S3Server = request.getfixturevalue("s3_server")
        return server.remote()
    return rig.local_remote()


@pytest.fixture
def target(chain: Chain) -> Iterator[str]:
    name = chain.pool.dataset("r" + secrets.token_hex(3))
    yield name
    zfs.destroy_dataset(name)


# --- what a test looks at ---------------------------------------------------------------------------


def restore(case: Case, target: str, *flags: str) -> int:
    return cli("restore", "--config", case.config, "--target-dataset", target, "--yes", *flags)


def held(target: str) -> list[str]:
    return [s.partition("@")[2] for s in snapshots(target)] if dataset_exists(target) else []


def dataset_exists(name: str) -> bool:
    return rig.run(["zfs", "list", "-H", "-o", "name", name], check=False).returncode == 0


def prop(dataset: str, name: str) -> str:
    return rig.out(["zfs", "get", "-H", "-o", "value", name, dataset])


def damage(path: Path, how: str) -> bytes:
    """Damage a stored object; returns its original bytes."""
    original = path.read_bytes()
    if how == "flip":
        data = bytearray(original)
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    elif how == "truncate":
        path.write_bytes(original[: len(original) // 2])
    else:
        path.unlink()
    return original


def flip_a_digit_of_stored_bytes(path: Path) -> None:
    """A flip that leaves valid JSON and a plausible manifest: only its self-check can tell."""
    text = path.read_bytes()
    key = b'"stored_bytes": '
    at = text.index(key) + len(key)
    assert text[at:at + 1].isdigit()
    path.write_bytes(text[:at] + bytes([text[at] ^ 0x01]) + text[at + 1:])
    assert json.loads(path.read_bytes())["stored_bytes"] != json.loads(text)["stored_bytes"]


def assert_complete(case: Case, target: str) -> None:
    assert held(target) == case.chain.snapshots
    assert prop(target, RESTORE_PROPERTY) == "-"
    assert prop(target, "mounted") == "yes"
    assert rig.tree_digest(Path(prop(target, "mountpoint"))) == case.chain.tree


# --- the matrix: data objects -----------------------------------------------------------------------

S3_DATA = {("flip", "middle"), ("truncate", "newest"), ("delete", "full")}
DATA_CASES = [
    (how, where, kind) for how in ("flip", "truncate", "delete") for where in POSITIONS for kind in ("local", "s3")
    if kind == "local" or (how, where) in S3_DATA
]


@pytest.mark.parametrize(("how", "where", "remote_kind"), DATA_CASES)
def test_damaged_data_object(case: Case, target: str, capsys: pytest.CaptureFixture[str], how: str,
                             where: str) -> None:
    position = POSITIONS[where]
    path = case.data(position)
    original = damage(path, how)
    code = restore(case, target)
    line = error_line(capsys)
    assert case.rclone_path(path) in line
    if how == "delete":
        assert code == EXIT_CHAIN and "is missing" in line
    else:
        assert code == EXIT_INTEGRITY
    if how != "flip" or position == 0:
        # Seen before anything started (size, presence), or in the first object: no target at all.
        assert not dataset_exists(target)
        if how == "truncate":
            assert "bytes on the remote, its manifest says" in line
        return
    # Found while streaming: what came before is kept, marked unfinished and unmounted, and named.
    assert held(target) == case.chain.snapshots[:position]
    assert f"it holds {target}@{case.chain.snapshots[position - 1]} ({position} of 3 backups)" in line
    assert prop(target, RESTORE_PROPERTY) == INCOMPLETE
    assert prop(target, "mounted") == "no"
    # Run again, still damaged: refused the same way, and what was received stays.
    assert restore(case, target) == EXIT_INTEGRITY
    assert path.name in error_line(capsys)
    assert held(target) == case.chain.snapshots[:position]
    # The object is back (from another copy): the same restore continues where it stopped.
    path.write_bytes(original)
    assert restore(case, target) == EXIT_OK
    assert "continue the unfinished restore" in capsys.readouterr().err
    assert_complete(case, target)


# --- the matrix: manifests ---------------------------------------------------------------------------

S3_MANIFEST = {("flip", "newest"), ("truncate", "middle"), ("delete", "middle")}
MANIFEST_CASES = [
    (how, where, kind) for how in ("flip", "truncate", "delete") for where in POSITIONS for kind in ("local", "s3")
    if kind == "local" or (how, where) in S3_MANIFEST
]


@pytest.mark.parametrize(("how", "where", "remote_kind"), MANIFEST_CASES)
def test_damaged_manifest(case: Case, target: str, capsys: pytest.CaptureFixture[str], how: str,
                          where: str) -> None:
    position = POSITIONS[where]
    path = case.manifest(position)
    manifest_path = case.rclone_path(path)
    if how == "flip":
        flip_a_digit_of_stored_bytes(path)
        # Same size as the index's copy, the committed bytes: restore uses the copy and is right to.
        assert restore(case, target) == EXIT_OK
        assert_complete(case, target)
        zfs.destroy_dataset(target)
        # verify reads the manifest objects themselves.
        capsys.readouterr()
        assert cli("verify", "--config", case.config, "--all") == EXIT_INTEGRITY
        failed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAILED")]
        assert failed == [f"FAILED  manifest {manifest_path}: damaged: its manifest_sha256 does not match its content"]
        (case.folder / INDEX_NAME).unlink()  # now the damaged object is all there is
    else:
        damage(path, how)
    capsys.readouterr()
    code = restore(case, target)
    line = error_line(capsys)
    assert f"manifest {manifest_path}: " in line
    if how == "delete":
        assert code == EXIT_CHAIN and "missing, though its backup was committed" in line
    else:
        assert code == EXIT_INTEGRITY
        assert "damaged" in line if how == "flip" else "not valid JSON" in line
    assert "the newest backup is unknown: give --snapshot" in line
    assert not dataset_exists(target)
    # list shows the other backups, warns about this one, and fails as restore does.
    assert cli("list", "--config", case.config, "--json") == code
    listed = capsys.readouterr()
    assert [r["snapshot"] for r in json.loads(listed.out)] == [s for i, s in enumerate(case.chain.snapshots)
                                                               if i != position]
    assert f"manifest {manifest_path}: " in listed.err
    if position == 2:
        return
    # The chain of the newest backup needs the damaged one: the gap is named, nothing is received.
    assert restore(case, target, "--snapshot", case.chain.snapshots[2]) == code
    line = error_line(capsys)
    assert f"manifest {manifest_path}: " in line
    assert f"needed: chain broken: {case.chain.snapshots[position + 1]} is an incremental" in line
    assert not dataset_exists(target)


@pytest.mark.parametrize("how", ["flip", "truncate", "delete"])
def test_a_damaged_newest_manifest_leaves_the_older_backups_restorable(case: Case, target: str, how: str) -> None:
    damage(case.manifest(2), how)
    assert restore(case, target, "--snapshot", case.chain.snapshots[1]) == EXIT_OK
    assert held(target) == case.chain.snapshots[:2]
    assert prop(target, RESTORE_PROPERTY) == "-"


# --- a deleted manifest never costs the data ---------------------------------------------------------


@pytest.mark.parametrize("remote_kind", ["local", "s3"])
def test_a_committed_backup_whose_manifest_was_deleted_keeps_its_data(
    case: Case, target: str, capsys: pytest.CaptureFixture[str], remote_kind: str
) -> None:
    """The index shows the backup was committed: the next backups keep its data, and say so."""
    middle = case.manifest(1)
    copy = middle.read_bytes()
    middle.unlink()
    (case.chain.pool.path("data") / f"more-{remote_kind}.txt").write_text("more\n")
    for _ in range(2):  # the second backup still finds the copy: the first rewrote the index with it
        capsys.readouterr()
        assert cli("backup", "--config", case.config) == EXIT_OK
        err = capsys.readouterr().err
        assert f"keeping {case.rclone_path(case.data(1))}: its manifest is missing" in err
        assert case.data(1).read_bytes()
        assert index_decode((case.folder / INDEX_NAME).read_bytes())[middle.name] == copy
    capsys.readouterr()
    assert cli("verify", "--config", case.config, "--all") == EXIT_CHAIN
    assert f"FAILED  manifest {case.rclone_path(middle)}: missing" in capsys.readouterr().out
    # Put back from the index's copy, it is a backup again.
    middle.write_bytes(copy)
    assert restore(case, target, "--snapshot", case.chain.snapshots[2]) == EXIT_OK
    assert held(target) == case.chain.snapshots


def test_a_data_object_whose_manifest_was_never_committed_is_still_removed(
    case: Case, capsys: pytest.CaptureFixture[str]
) -> None:
    """Left by a killed run: no manifest and no index entry, so not a backup."""
    leftover = case.folder / "glacier-backup-20990101T000000Z.incr.zfs.zst"
    leftover.write_bytes(os.urandom(64))
    (case.chain.pool.path("data") / "leftover-test.txt").write_text("x\n")
    assert cli("backup", "--config", case.config) == EXIT_OK
    assert "removing" in capsys.readouterr().err
    assert not leftover.exists()
