"""Backups under S3 Object Lock ([rclone] object_lock), on moto's S3 server (127.0.0.1), which enforces
Object Lock on a bucket made with it: a locked version refuses a delete by its id, and a plain delete
only adds a delete marker. What the locks are is read with the S3 API (boto3, moto's own dependency),
never through zfsglacier; both modes, and rclone's `provider = AWS` and `Other`.

The attacker holds the backup host's credential: deletes, purges, and overwrites manifests and the
index; `restore --as-of` a time before the attack restores from the versions of then."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
import rig
from botocore.exceptions import ClientError
from helpers import cli, list_json, write_config
from refusing_proxy import refusing_proxy

from zfsglacier.commands import backup_commit
from zfsglacier.commands import prune as prune_command
from zfsglacier.errors import EXIT_REMOTE, EXIT_USAGE, RemoteError
from zfsglacier.policy.chain_lock import MARGIN_DAYS
from zfsglacier.remote import manifest_index, object_lock
from zfsglacier.remote.manifest import SELF_CHECK, content_sha256

pytestmark = pytest.mark.integration

BOTH = [("governance", "AWS"), ("compliance", "Other")]
EVERY = [(mode, provider) for mode in ("governance", "compliance") for provider in ("AWS", "Other")]


@pytest.fixture(autouse=True)
def _lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))


@pytest.fixture(autouse=True)
def _probe_each_bucket_anew() -> Iterator[None]:
    object_lock._probed.clear()
    yield
    object_lock._probed.clear()


def s3_api(server: rig.MotoServer):  # type: ignore[no-untyped-def]
    return boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id="testing",
                        aws_secret_access_key="testing", region_name="us-east-1")  # noqa: S106  # moto's test keys


def locked_config(tmp_path: Path, dataset: str, remote: rig.Remote, mode: str, *, full_every: str = "30d",
                  max_age: str = "90d", rclone_keys: str = "", extra: str = "") -> Path:
    config = write_config(tmp_path, dataset, remote,
                          extra=f"[chain]\nfull_every = {full_every}\n[retention]\nmax_age = {max_age}\n{extra}")
    lock = f"object_lock = {mode}\n" if mode else ""
    config.write_text(config.read_text().replace("[compression]", f"{lock}{rclone_keys}[compression]"))
    return config


def key_of(remote: rig.Remote, rclone_path: str) -> str:
    return rclone_path.split(f"{remote.bucket}/", 1)[1]


def make_dataset(zpool: rig.Pool) -> str:
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    return dataset


@pytest.mark.parametrize(("mode", "provider"), EVERY)
def test_every_object_of_a_locked_chain_carries_the_lock_of_its_full(
    zpool: rig.Pool, moto_server: rig.MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    mode: str, provider: str,
) -> None:
    with moto_server.remote(provider, object_lock=True) as remote:
        dataset = make_dataset(zpool)
        # Volumes of 1M: the full is three objects, each a multipart upload.
        (zpool.path("data") / "random.bin").write_bytes(os.urandom(2_500_000))
        config = locked_config(tmp_path, dataset, remote, mode, rclone_keys="max_object_size = 1M\n")
        for step in range(3):
            rig.populate(zpool.path("data") / f"step{step}", seed=f"lock-{step}", n_files=4)
            assert cli("backup", "--config", config) == 0
        records = list_json(config, capsys)
        assert [r["kind"] for r in records] == ["full", "incremental", "incremental"]
        assert len(records[0]["volumes"]) == 3  # type: ignore[arg-type]
        assert {(r["lock_mode"], r["lock_until"]) for r in records} == {(mode.upper(), records[0]["lock_until"])}
        until = datetime.fromisoformat(str(records[0]["lock_until"]))
        created = datetime.fromisoformat(str(records[0]["created"]))
        expected = created + timedelta(days=30 + 90 + MARGIN_DAYS)
        assert abs(until - expected) < timedelta(minutes=2), (until, expected)

        api = s3_api(moto_server)
        for record in records:
            objects = [str(v["object"]) for v in record["volumes"]]  # type: ignore[attr-defined]
            manifest = str(record["object"]).rsplit("/", 1)[0] + f"/{record['snapshot']}.manifest.json"
            for path in [*objects, manifest]:
                head = api.head_object(Bucket=remote.bucket, Key=key_of(remote, path))
                assert head.get("ObjectLockMode") == mode.upper(), (path, head)
                assert head.get("ObjectLockRetainUntilDate") == until, (path, head)
        index = api.head_object(Bucket=remote.bucket, Key=f"{dataset}/{manifest_index.INDEX_NAME}")
        assert "ObjectLockMode" not in index, "the index is a cache a restore never needs: written unlocked"

        capsys.readouterr()
        assert cli("list", "--config", config) == 0
        table = capsys.readouterr().out
        assert "LOCKED UNTIL" in table and f"{records[0]['lock_until']} ({mode.upper()})" in table


@pytest.mark.parametrize(("mode", "provider"), BOTH)
def test_an_attacker_with_the_backup_credential_cannot_destroy_a_locked_chain(
    zpool: rig.Pool, moto_server: rig.MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    mode: str, provider: str,
) -> None:
    with moto_server.remote(provider, object_lock=True) as remote:
        dataset = make_dataset(zpool)
        config = locked_config(tmp_path, dataset, remote, mode)
        for step in range(3):
            rig.populate(zpool.path("data") / f"step{step}", seed=f"attack-{step}", n_files=6)
            assert cli("backup", "--config", config) == 0
        before = list_json(config, capsys)
        time.sleep(1.5)
        moment = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        time.sleep(1.5)

        # The attack, with the backup host's own rclone config.
        folder = remote.path(dataset)
        newest_manifest = f"{folder}/{before[-1]['snapshot']}.manifest.json"
        rig.run(remote.argv("rcat", newest_manifest), input=b"garbage")
        rig.run(remote.argv("rcat", f"{folder}/{manifest_index.INDEX_NAME}"), input=b'{"format": "nonsense"}')
        rig.run(remote.argv("delete", folder))
        assert list_json(config, capsys) == []
        # rclone purge deletes every version of a versioned bucket by its id: refused for the locked ones.
        purge = rig.run(remote.argv("purge", folder), check=False)
        assert purge.returncode != 0 and b"AccessDenied" in purge.stderr

        capsys.readouterr()
        assert cli("list", "--config", config, "--json", "--as-of", moment) == 0
        assert json.loads(capsys.readouterr().out) == before

        target = zpool.dataset("restored")
        assert cli("restore", "--config", config, "--target-dataset", target, "--yes", "--as-of", moment) == 0
        assert rig.tree_digest(zpool.path("restored")) == rig.tree_digest(zpool.path("data"))
        capsys.readouterr()
        assert cli("verify", "--config", config, "--as-of", moment) == 0
        assert capsys.readouterr().out.count("OK ") == 3

        # Deleting the locked versions themselves, by their ids, is refused.
        api = s3_api(moto_server)
        key = key_of(remote, str(before[0]["object"]))
        versions = [v for v in api.list_object_versions(Bucket=remote.bucket, Prefix=key)["Versions"]
                    if v["Key"] == key]
        assert versions
        for version in versions:
            with pytest.raises(ClientError, match="AccessDenied"):
                api.delete_object(Bucket=remote.bucket, Key=key, VersionId=version["VersionId"])


def test_a_forged_index_entry_of_the_right_size_is_caught_and_the_manifests_restore(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """The index is a cache anyone with the host's credential can rewrite: a copy forged to the size of the
    manifest it copies (with a fresh self-check) must not steer a restore."""
    dataset = make_dataset(zpool)
    config = write_config(tmp_path, dataset, local_remote)
    for step in range(2):
        rig.populate(zpool.path("data") / f"step{step}", seed=f"forge-{step}", n_files=6)
        assert cli("backup", "--config", config) == 0
    index_path = local_remote.root / dataset / manifest_index.INDEX_NAME
    copies = manifest_index.decode(index_path.read_bytes())
    name = sorted(copies)[-1]
    doc = json.loads(copies[name])
    doc["sha256"] = "f" * 64 if doc["sha256"] != "f" * 64 else "e" * 64
    doc[SELF_CHECK] = content_sha256(doc)
    forged = (json.dumps(doc, indent=2) + "\n").encode()
    assert len(forged) == len(copies[name])
    index_path.write_bytes(manifest_index.encode({**copies, name: forged}))

    capsys.readouterr()
    assert cli("restore", "--config", config, "--target-dataset", zpool.dataset("restored"), "--yes") == 0
    assert "differs from the manifest object" in capsys.readouterr().err
    assert rig.tree_digest(zpool.path("restored")) == rig.tree_digest(zpool.path("data"))


def test_as_of_is_refused_where_the_remote_keeps_no_versions(
    local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    config = write_config(tmp_path, "tank/data", local_remote)
    capsys.readouterr()
    assert cli("list", "--config", config, "--as-of", "2026-11-30") == EXIT_USAGE  # this host's zone: any offset
    assert "reads the earlier versions of objects in a versioned S3 bucket" in capsys.readouterr().err
    capsys.readouterr()
    assert cli("restore", "--config", config, "--target-dataset", "tank/x", "--as-of", "2026-11-30T04:00Z") \
        == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--as-of 2026-11-30T04:00:00Z: reads the earlier versions of objects in a versioned S3 bucket" in err
    assert "stores on a remote of type local, which keeps no versions" in err


@pytest.mark.parametrize(("mode", "provider"), BOTH)
def test_a_chain_that_would_outlive_its_lock_gets_a_new_full(
    zpool: rig.Pool, moto_server: rig.MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    mode: str, provider: str,
) -> None:
    with moto_server.remote(provider, object_lock=True) as remote:
        dataset = make_dataset(zpool)
        unlocked = locked_config(tmp_path, dataset, remote, "")
        assert cli("backup", "--config", unlocked) == 0
        config = locked_config(tmp_path, dataset, remote, mode)
        capsys.readouterr()
        assert cli("backup", "--config", config) == 0
        assert "is not locked ([rclone] object_lock" in capsys.readouterr().err
        assert cli("backup", "--config", config) == 0  # the locked chain goes on
        # Retention now keeps backups longer than the chain's lock lasts: the next one starts a new chain.
        longer = locked_config(tmp_path, dataset, remote, mode, max_age="200d")
        capsys.readouterr()
        assert cli("backup", "--config", longer) == 0
        said = capsys.readouterr().err
        assert "a chain never outlives the lock of its full" in said and "must stay locked until" in said
        records = list_json(config, capsys)
        assert [r["kind"] for r in records] == ["full", "full", "incremental", "full"]
        assert records[0]["lock_mode"] is None and records[1]["lock_until"] == records[2]["lock_until"]
        assert str(records[3]["lock_until"]) > str(records[2]["lock_until"])


@pytest.mark.parametrize(("mode", "provider"), BOTH)
def test_prune_keeps_a_chain_until_its_lock_ends_then_deletes_it(
    zpool: rig.Pool, moto_server: rig.MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, mode: str, provider: str,
) -> None:
    with moto_server.remote(provider, object_lock=True) as remote:
        dataset = make_dataset(zpool)
        config = locked_config(tmp_path, dataset, remote, mode, full_every="1d", max_age="1d")  # locks of 9 days
        assert cli("backup", "--config", config) == 0
        assert cli("backup", "--config", config) == 0
        assert cli("backup", "--config", config, "--full") == 0
        records = list_json(config, capsys)
        until = datetime.fromisoformat(str(records[0]["lock_until"]))

        monkeypatch.setattr(prune_command, "_now", lambda: until - timedelta(days=6))  # expired, still locked
        capsys.readouterr()
        assert cli("prune", "--config", config) == 0
        said = capsys.readouterr().err
        assert f"the chain from {records[0]['snapshot']} (2 backup(s)) is past [retention]" in said
        assert f"locked until {records[0]['lock_until']}: it can be deleted from then" in said
        assert len(list_json(config, capsys)) == 3

        monkeypatch.setattr(prune_command, "_now", lambda: until + timedelta(seconds=1))
        assert cli("prune", "--config", config) == 0
        assert [r["snapshot"] for r in list_json(config, capsys)] == [records[2]["snapshot"]]
        # In a versioned bucket the delete only hid them: their versions are still there.
        api = s3_api(moto_server)
        key = key_of(remote, str(records[0]["object"]))
        listed = api.list_object_versions(Bucket=remote.bucket, Prefix=key)
        assert [v["Key"] for v in listed.get("Versions", [])] == [key]
        assert [m["Key"] for m in listed.get("DeleteMarkers", [])] == [key]


def test_a_backup_only_credential_backs_up_and_says_what_it_could_not_delete(
    zpool: rig.Pool, moto_server: rig.MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with refusing_proxy(moto_server.port) as (endpoint, refused), \
            moto_server.remote("AWS", object_lock=True, endpoint=endpoint) as remote:
        dataset = make_dataset(zpool)
        config = locked_config(tmp_path, dataset, remote, "governance", full_every="1d", max_age="1d")
        assert cli("backup", "--config", config) == 0

        # A run that fails after its data is uploaded: its cleanup may not delete the data.
        def fail(*_: object) -> None:
            raise RemoteError("rclone rcat", "the upload check failed (injected)")

        monkeypatch.setattr(backup_commit, "_check_stored", fail)
        rig.populate(zpool.path("data") / "more", seed="denied", n_files=4)
        capsys.readouterr()
        assert cli("backup", "--config", config) == EXIT_REMOTE
        said = capsys.readouterr().err
        assert "error: rclone rcat: the upload check failed (injected)" in said
        assert "stays on the remote: the remote refused to delete it" in said and "this credential may not delete" \
            in said
        assert any(request.startswith("DELETE ") for request in refused)
        monkeypatch.undo()
        monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))

        # The next backup cannot remove that leftover either: it says so, and backs up.
        capsys.readouterr()
        assert cli("backup", "--config", config) == 0
        said = capsys.readouterr().err
        assert "stays on the remote: the remote refused to delete it" in said
        assert [r["kind"] for r in list_json(config, capsys)] == ["full", "incremental"]

        # Pruning needs the other credential, and says so.
        assert cli("backup", "--config", config, "--full") == 0
        records = list_json(config, capsys)
        monkeypatch.setattr(prune_command, "_now",
                            lambda: datetime.fromisoformat(str(records[0]["lock_until"])) + timedelta(seconds=1))
        capsys.readouterr()
        assert cli("prune", "--config", config) == EXIT_REMOTE
        assert "this credential may not delete (s3:DeleteObject); prune with the credential meant for it" \
            in capsys.readouterr().err
        assert len(list_json(config, capsys)) == 3


def test_a_bucket_without_object_lock_is_refused_before_any_snapshot(
    zpool: rig.Pool, moto_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    dataset = make_dataset(zpool)
    config = locked_config(tmp_path, dataset, moto_remote, "compliance")
    capsys.readouterr()
    assert cli("backup", "--config", config) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "[rclone] object_lock = compliance: the bucket" in err and "its versioning is Unversioned" in err
    assert rig.out(["zfs", "list", "-H", "-t", "snapshot", "-o", "name", "-r", dataset]).strip() == ""


def test_a_remote_that_is_not_s3_is_refused_before_any_snapshot(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    dataset = make_dataset(zpool)
    config = locked_config(tmp_path, dataset, local_remote, "governance")
    capsys.readouterr()
    assert cli("backup", "--config", config) == EXIT_USAGE
    assert "[rclone] object_lock = governance: the remote zgtlocal: stores on a remote of type local" \
        in capsys.readouterr().err
    assert rig.out(["zfs", "list", "-H", "-t", "snapshot", "-o", "name", "-r", dataset]).strip() == ""


def test_a_dry_run_shows_the_probe_and_the_locks_and_changes_nothing(
    zpool: rig.Pool, moto_server: rig.MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    with moto_server.remote("Other", object_lock=True) as remote:
        dataset = make_dataset(zpool)
        config = locked_config(tmp_path, dataset, remote, "compliance")
        capsys.readouterr()
        assert cli("backup", "--config", config, "--dry-run") == 0
        out = capsys.readouterr().out
        probe = next(line for line in out.splitlines() if object_lock.PROBE_NAME in line)
        assert "rcat" in probe and "--s3-object-lock-mode COMPLIANCE" in probe
        assert "# each object of this backup is locked (COMPLIANCE) until" in out
        assert out.count("--s3-object-lock-set-after-upload") == 3  # the probe, the data, the manifest
        assert rig.run(remote.argv("lsjson", "-R", remote.path()), check=True).stdout.strip() == b"[\n]"


def test_a_crypt_remote_over_a_locked_bucket_is_locked_and_restores_as_of(
    zpool: rig.Pool, moto_server: rig.MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """The lock flags reach the S3 remote under the crypt remote, and the locks are read back through it."""
    with moto_server.remote("AWS", object_lock=True) as under:
        password = rig.out(["rclone", "obscure", "zgt-crypt-password"]).strip()
        config_path = tmp_path / "rclone-crypt.conf"
        config_path.write_text(under.config_path.read_text() + "\n".join([
            "[zgtcrypt]", "type = crypt", f"remote = {under.name}:{under.bucket}/vault", f"password = {password}",
        ]) + "\n")
        crypt = rig.Remote("crypt", config_path, "zgtcrypt", "backups", tmp_path / "no-local-folder")
        dataset = make_dataset(zpool)
        config = locked_config(tmp_path, dataset, crypt, "compliance")
        for step in range(2):
            rig.populate(zpool.path("data") / f"step{step}", seed=f"crypt-{step}", n_files=4)
            assert cli("backup", "--config", config) == 0
        before = list_json(config, capsys)
        assert [r["lock_mode"] for r in before] == ["COMPLIANCE", "COMPLIANCE"]
        api = s3_api(moto_server)
        stored = [o["Key"] for o in api.list_objects_v2(Bucket=under.bucket, Prefix="vault/")["Contents"]]
        locked = [key for key in stored if api.head_object(Bucket=under.bucket, Key=key).get("ObjectLockMode")]
        assert len(locked) == 5, stored  # the probe, and each backup's data and manifest; not the index
        time.sleep(1.5)
        moment = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        time.sleep(1.5)
        rig.run(crypt.argv("delete", crypt.path(dataset)))
        assert list_json(config, capsys) == []
        target = zpool.dataset("restored")
        assert cli("restore", "--config", config, "--target-dataset", target, "--yes", "--as-of", moment) == 0
        assert rig.tree_digest(zpool.path("restored")) == rig.tree_digest(zpool.path("data"))
