"""Backups through an rclone crypt remote (zfsglacier compresses, rclone encrypts), over a local and an S3
remote: backup, verify, list, restore and the README's by-hand recipe work through it, and what lands on
the underlying storage shows neither the names nor the contents."""

from __future__ import annotations

import json
import math
import secrets
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import rig
from helpers import cli, list_json, write_config

from zfsglacier.errors import EXIT_OK

pytestmark = pytest.mark.integration

CRYPT = "zgtcrypt"  # the crypt remote zfsglacier is configured with
TOP = "vault"  # its folder on the underlying remote: the one name there that is not encrypted
FOLDER = "pool-backups"  # [rclone] bucket_name: a folder inside the crypt remote, so encrypted too
CHILD = "secret-data"  # "-" and "x" never occur in crypt's encrypted names (base32hex, lower case)
BLOCK, BLOCK_MAC, HEADER = 65536, 16, 32  # rclone crypt's format: a header, then a MAC per 64 KiB block


@pytest.fixture(autouse=True)
def _lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))


@dataclass(frozen=True)
class Vault:
    crypt: rig.Remote  # `root` is where its objects are stored, under encrypted names
    under: rig.Remote  # the remote it wraps (local, or S3 through `rclone serve s3`)

    def stored_files(self) -> dict[str, bytes]:
        """Every file the underlying remote holds, by path relative to its bucket: what a provider sees."""
        return {p.relative_to(self.under.root).as_posix(): p.read_bytes()
                for p in sorted(self.under.root.rglob("*")) if p.is_file()}


@dataclass(frozen=True)
class Backed:
    pool: rig.Pool
    dataset: str
    config: Path
    marker: bytes  # written into the dataset, so it is in the plaintext stream


@pytest.fixture
def vault(rclone_remote: rig.Remote, tmp_path: Path) -> Vault:
    """A crypt remote over the parametrized remote, in a copy of that remote's rclone.conf."""
    password, password2 = (rig.out(["rclone", "obscure", secrets.token_hex(16)]) for _ in range(2))
    config = tmp_path / "rclone-crypt.conf"
    config.write_text(rclone_remote.config_path.read_text() + "\n".join([
        f"[{CRYPT}]",
        "type = crypt",
        f"remote = {rclone_remote.name}:{rclone_remote.bucket}/{TOP}",
        "filename_encryption = standard",
        "directory_name_encryption = true",
        f"password = {password}",
        f"password2 = {password2}",
    ]) + "\n")
    return Vault(rig.Remote("crypt", config, CRYPT, FOLDER, rclone_remote.root / TOP), rclone_remote)


@pytest.fixture
def backed_up(zpool: rig.Pool, vault: Vault, tmp_path: Path) -> Backed:
    """A full and an incremental of `<pool>/secret-data` through the crypt remote."""
    dataset = zpool.dataset(CHILD)
    rig.run(["zfs", "create", dataset])
    rig.populate(zpool.path(CHILD), seed="crypt", n_files=12)
    # The marker inside a ZFS record, amid more than a zstd block (128 KiB) of random bytes on each side:
    # zstd stores that block as it is (it cannot shrink it), so the marker is in the compressed object too,
    # and its absence from the stored bytes below is the encryption's doing.
    marker = b"ZGT-PLAINTEXT-MARKER-" + secrets.token_hex(16).encode()
    marked = bytearray(secrets.token_bytes(384 * 1024))
    marked[193 * 1024:193 * 1024 + len(marker)] = marker
    (zpool.path(CHILD) / "marked.dat").write_bytes(bytes(marked))
    config = write_config(tmp_path, dataset, vault.crypt)
    assert cli("backup", "--config", config) == EXIT_OK
    rig.mutate(zpool.path(CHILD), seed=1)
    assert cli("backup", "--config", config) == EXIT_OK
    return Backed(zpool, dataset, config, marker)


def crypt_cat(vault: Vault, path: str) -> bytes:
    return rig.run(vault.crypt.argv("cat", path)).stdout


def test_backup_verify_list_and_restore_through_crypt(backed_up: Backed, vault: Vault,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    pool, dataset, config = backed_up.pool, backed_up.dataset, backed_up.config
    records = list_json(config, capsys)
    assert [r["kind"] for r in records] == ["full", "incremental"]
    assert all(str(r["object"]).startswith(vault.crypt.path(f"{dataset}/glacier-backup-")) for r in records)

    capsys.readouterr()
    assert cli("verify", "--config", config) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [["OK", str(r["snapshot"])] for r in records]

    target = pool.dataset("restored")
    assert cli("restore", "--config", config, "--target-dataset", target, "--yes") == EXIT_OK
    assert rig.tree_digest(pool.path("restored")) == rig.tree_digest(pool.path(CHILD))


def test_the_underlying_storage_shows_no_names_and_no_contents(backed_up: Backed, vault: Vault,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    dataset, marker = backed_up.dataset, backed_up.marker
    records = list_json(backed_up.config, capsys)
    folder = vault.crypt.path(dataset)

    # Through the crypt remote: the plaintext, with everything the checks below look for.
    plain = {e["Name"]: e["Size"] for e in json.loads(rig.out(vault.crypt.argv(
        "lsjson", "--files-only", "--no-mimetype", "--no-modtime", folder)))}
    names = [f"{r['snapshot']}.manifest.json" for r in records] + [str(r["object"]).rpartition("/")[2]
                                                                  for r in records]
    assert set(plain) == {*names, "zfsglacier.index.json"}
    manifest = crypt_cat(vault, f"{folder}/{names[0]}")
    assert b'"sha256"' in manifest and dataset.encode() in manifest
    assert marker in crypt_cat(vault, str(records[0]["object"])), "the check for the marker could not fail"
    assert {plain[str(r["object"]).rpartition("/")[2]] for r in records} == {r["stored_bytes"] for r in records}

    # What the provider holds: the same number of objects, under the crypt remote's top folder only.
    stored = vault.stored_files()
    assert len(stored) == len(plain)
    assert all(path.startswith(f"{TOP}/") for path in stored), sorted(stored)
    words = (CHILD, backed_up.pool.name, FOLDER, "glacier-backup-", "manifest", ".zst", "index", "zfs")
    needles = (marker, b'"sha256"', dataset.encode(), CHILD.encode(), b"glacier-backup-", b"zfsglacier")
    readable = [f"{word!r} in the name {path}" for path in stored for word in words if word in path.lower()]
    readable += [f"{needle!r} in the bytes of {path}" for path, data in stored.items() for needle in needles
                 if needle in data]
    assert not readable, "readable on the underlying remote:\n" + "\n".join(readable)
    # Sizes are not hidden: each object grows by a header and a MAC per 64 KiB block.
    assert sorted(len(data) for data in stored.values()) == sorted(
        size + HEADER + BLOCK_MAC * math.ceil(size / BLOCK) for size in plain.values())


def pipeline(argvs: Sequence[Sequence[str]], workdir: Path) -> None:
    """argv | argv | ... without a shell; each stage's stderr goes to a file, shown if it fails."""
    stages: list[tuple[list[str], subprocess.Popen[bytes], Path]] = []
    previous = None
    for index, argv in enumerate(argvs):
        args = [str(arg) for arg in argv]
        args[0] = rig.find_tool(args[0]) or args[0]
        log = workdir / f"stage{index}.err"
        with open(log, "wb") as err:
            process = subprocess.Popen(args, stdin=previous.stdout if previous else subprocess.DEVNULL,
                                       stdout=subprocess.PIPE if index < len(argvs) - 1 else subprocess.DEVNULL,
                                       stderr=err)
        if previous is not None and previous.stdout is not None:
            previous.stdout.close()  # only the next stage reads it now
        stages.append((args, process, log))
        previous = process
    failed = [(args, process.wait(timeout=120), log) for args, process, log in stages]
    failed = [(args, code, log) for args, code, log in failed if code != 0]
    assert not failed, [(" ".join(args), code, log.read_text(errors="replace")) for args, code, log in failed]


def test_the_readme_by_hand_recipe_works_through_crypt(backed_up: Backed, vault: Vault, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """rclone cat CRYPT:folder/<dataset>/<object> | zstd -d | zfs receive: rclone decrypts, no zfsglacier."""
    pool, dataset = backed_up.pool, backed_up.dataset
    records = list_json(backed_up.config, capsys)
    # `rclone lsf` through the crypt remote shows the plain names (in name order, which is not always
    # creation order: two backups in one second are ...Z and ...Z-1; the restore goes by `list`).
    listed = rig.out(vault.crypt.argv("lsf", vault.crypt.path(dataset))).splitlines()
    assert sorted(str(r["object"]).rpartition("/")[2] for r in records) == [n for n in listed if ".zfs." in n]
    target = pool.dataset("byhand")
    for index, record in enumerate(records):
        name = str(record["object"]).rpartition("/")[2]
        receive = ["zfs", "receive", target] if index == 0 else ["zfs", "receive", "-F", target]
        pipeline([vault.crypt.argv("cat", vault.crypt.path(f"{dataset}/{name}")), ["zstd", "-d", "-q"], receive],
                 tmp_path)
    assert rig.tree_digest(pool.path("byhand")) == rig.tree_digest(pool.path(CHILD))


def test_another_password_is_said_not_taken_for_an_empty_remote(backed_up: Backed, vault: Vault, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """rclone skips the names a wrong password cannot decrypt, so the dataset's folder reads as empty."""
    other = rig.out(["rclone", "obscure", secrets.token_hex(16)])
    text = vault.crypt.config_path.read_text()
    wrong_conf = tmp_path / "rclone-wrong.conf"
    wrong_conf.write_text("\n".join(f"password = {other}" if line.startswith("password =") else line
                                    for line in text.splitlines()) + "\n")
    (tmp_path / "wrong").mkdir()
    wrong = write_config(tmp_path / "wrong", backed_up.dataset,
                         rig.Remote("crypt", wrong_conf, CRYPT, FOLDER, vault.crypt.root))
    capsys.readouterr()
    assert cli("list", "--config", wrong) == EXIT_OK
    said = capsys.readouterr()
    assert said.out.startswith("no committed backups in")
    assert f"{CRYPT}: holds 1 name(s) this crypt remote's password cannot decrypt: if backups were made there, " \
           f"they were made with another password (the password and password2 of [{CRYPT}]" in said.err, said.err
    # With the right password, nothing is said.
    assert cli("list", "--config", backed_up.config) == EXIT_OK
    assert "cannot decrypt" not in capsys.readouterr().err
