"""Backups into S3 storage classes and restores from cold storage, on moto's S3 server (127.0.0.1),
which like AWS refuses to read a DEEP_ARCHIVE object until it is restored (thawed). moto thaws at once
where AWS takes hours: what these tests prove is which objects are asked for, when a restore stops
with exit 9, and that the next run (or --wait) restores the chain."""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import rig
from helpers import cli, dataset_exists, error_line, list_json, snapshots, write_config

from zfsglacier.errors import EXIT_REFUSED, EXIT_THAW_PENDING, EXIT_USAGE

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))


def tiers(remote: rig.Remote, dataset: str) -> dict[str, str]:
    listed = json.loads(rig.out(remote.argv("lsjson", remote.path(dataset))))
    return {entry["Name"]: entry.get("Tier") for entry in listed}


def back_up(zpool: rig.Pool, remote: rig.Remote, tmp_path: Path, storage_class: str, steps: int = 2,
            seed: str = "cold") -> tuple[str, Path]:
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    config = with_rclone_keys(write_config(tmp_path, dataset, remote), f"storage_class = {storage_class}\n")
    for step in range(steps):
        rig.populate(zpool.path("data") / f"step{step}", seed=f"{seed}-{step}", n_files=8)
        assert cli("backup", "--config", config) == 0
    return dataset, config


def test_data_goes_to_deep_archive_manifests_stay_readable_and_a_restore_thaws_exactly_what_it_needs(
    zpool: rig.Pool, moto_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset, config = back_up(zpool, moto_remote, tmp_path, "DEEP_ARCHIVE")
    records = list_json(config, capsys)  # reads manifests and index: it would fail were they archived
    assert [r["kind"] for r in records] == ["full", "incremental"]
    stored = tiers(moto_remote, dataset)
    data = {str(r["object"]).rpartition("/")[2] for r in records}
    assert {name: tier for name, tier in stored.items() if name in data} == dict.fromkeys(data, "DEEP_ARCHIVE")
    assert {tier for name, tier in stored.items() if name not in data} == {"STANDARD"}, stored
    object_path = moto_remote.path(str(records[0]["object"]).split(f"{moto_remote.bucket}/", 1)[1])
    refused = rig.run(moto_remote.argv("cat", "--count", "1", object_path), check=False)
    assert refused.returncode != 0 and "restore first" in refused.stderr.decode(), "moto must refuse a frozen read"

    target = zpool.dataset("restored")
    capsys.readouterr()
    assert cli("restore", "--config", config, "--target-dataset", target, "--yes", "--thaw-priority", "Bulk") \
        == EXIT_THAW_PENDING
    said = capsys.readouterr().err
    assert "2 object(s)" in said and "are in DEEP_ARCHIVE and must be thawed first: priority Bulk" in said
    assert "thaw requested for 2 object(s)" in error_line_of(said) and "up to 48 hours" in error_line_of(said)
    assert not dataset_exists(target), "nothing is received before the chain is readable"

    # The next run finds them thawed and restores.
    assert cli("restore", "--config", config, "--target-dataset", target, "--yes") == 0
    assert rig.tree_digest(zpool.path("restored")) == rig.tree_digest(zpool.path("data"))

    # A new incremental is frozen again: only it is asked for.
    rig.populate(zpool.path("data") / "step9", seed="cold-9", n_files=4)
    assert cli("backup", "--config", config) == 0
    capsys.readouterr()
    assert cli("restore", "--config", config, "--target-dataset", zpool.dataset("again"), "--yes") \
        == EXIT_THAW_PENDING
    assert "thaw requested for 1 object(s)" in error_line(capsys)


def error_line_of(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("zfsglacier: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_restore_with_wait_thaws_and_restores_in_one_run(
    zpool: rig.Pool, moto_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, config = back_up(zpool, moto_remote, tmp_path, "GLACIER", seed="wait")
    target = zpool.dataset("restored")
    capsys.readouterr()
    assert cli("restore", "--config", config, "--target-dataset", target, "--yes", "--wait",
               "--thaw-priority", "Expedited", "--thaw-days", "1") == 0
    said = capsys.readouterr().err
    assert "thaw requested for 2 object(s)" in said and "1-5 minutes" in said and "thawed: all 2 object(s)" in said
    assert rig.tree_digest(zpool.path("restored")) == rig.tree_digest(zpool.path("data"))


def test_expedited_is_refused_for_deep_archive_before_anything_is_asked(
    zpool: rig.Pool, moto_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, config = back_up(zpool, moto_remote, tmp_path, "DEEP_ARCHIVE", steps=1, seed="expedited")
    capsys.readouterr()
    assert cli("restore", "--config", config, "--target-dataset", zpool.dataset("r"), "--yes",
               "--thaw-priority", "Expedited") == EXIT_USAGE
    assert "--thaw-priority Expedited: Deep Archive objects thaw only with Standard" in error_line(capsys)
    # Still frozen: the refused run asked for nothing.
    assert cli("restore", "--config", config, "--target-dataset", zpool.dataset("r"), "--yes") == EXIT_THAW_PENDING


def test_a_stream_smaller_than_the_minimum_billed_size_stays_in_the_default_class(
    zpool: rig.Pool, moto_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = zpool.dataset("tiny")
    rig.run(["zfs", "create", dataset])
    (zpool.path("tiny") / "note.txt").write_text("small\n")
    config = write_config(tmp_path, dataset, moto_remote)
    config.write_text(config.read_text().replace("[compression]", "storage_class = STANDARD_IA\n[compression]"))
    assert cli("backup", "--config", config) == 0
    (record,) = list_json(config, capsys)
    assert int(str(record["stored_bytes"])) < 128 * 1024
    assert tiers(moto_remote, dataset)[str(record["object"]).rpartition("/")[2]] == "STANDARD"


# --- any provider: what the listing shows, what the manifest recorded, and what the remote refuses ------

PROVIDERS = ("AWS", "Other")  # rclone lists each object's Tier for AWS, no tier at all for Other


@pytest.fixture(params=PROVIDERS, ids=[f"provider={p}" for p in PROVIDERS])
def any_provider(request: pytest.FixtureRequest, moto_server: rig.MotoServer) -> Iterator[rig.Remote]:
    with moto_server.remote(provider=request.param) as remote:
        yield remote


def with_rclone_keys(config: Path, keys: str) -> Path:
    """`keys` (lines) added to the config's [rclone] section."""
    config.write_text(config.read_text().replace("[compression]", f"{keys}[compression]"))
    return config


def back_up_in_volumes(zpool: rig.Pool, remote: rig.Remote, tmp_path: Path, rclone_keys: str) -> tuple[str, Path]:
    """A full of three volumes (max_object_size = 1M) and two small incrementals."""
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    (zpool.path("data") / "random.bin").write_bytes(os.urandom(2_500_000))
    config = with_rclone_keys(write_config(tmp_path, dataset, remote), f"max_object_size = 1M\n{rclone_keys}")
    for step in range(3):
        if step:
            rig.populate(zpool.path("data") / f"step{step}", seed=f"volumes-{step}", n_files=4)
        assert cli("backup", "--config", config) == 0
    return dataset, config


def data_objects(config: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The rclone paths of every data object (volume) of every backup, in chain order."""
    return [str(v["object"]) for r in list_json(config, capsys) for v in r["volumes"]]  # type: ignore[attr-defined]


@pytest.mark.parametrize("storage_class", ["GLACIER", "DEEP_ARCHIVE"])
def test_a_chain_in_volumes_is_thawed_whether_or_not_the_provider_lists_tiers(
    storage_class: str, zpool: rig.Pool, any_provider: rig.Remote, tmp_path: Path,
    capsys: pytest.CaptureFixture[str]
) -> None:
    dataset, config = back_up_in_volumes(zpool, any_provider, tmp_path, f"storage_class = {storage_class}\n")
    records = list_json(config, capsys)
    assert {r["storage_class"] for r in records} == {storage_class}, "the manifest records the class asked for"
    objects = data_objects(config, capsys)
    assert len(objects) == 5, objects  # 3 volumes of the full, 2 incrementals
    listed = set(tiers(any_provider, dataset).values())
    assert listed == ({storage_class, "STANDARD"} if any_provider.kind == "moto-AWS" else {None})

    target = zpool.dataset("restored")
    capsys.readouterr()
    assert cli("restore", "--config", config, "--target-dataset", target, "--yes") == EXIT_THAW_PENDING
    said = capsys.readouterr().err
    assert "5 object(s), " in said and f"are in {storage_class} and must be thawed first" in said
    assert "the thaw's retrieval fee at AWS list prices" in said
    assert "thaw requested for 5 object(s)" in error_line_of(said)
    assert not dataset_exists(target)
    assert cli("restore", "--config", config, "--target-dataset", target, "--yes") == 0
    assert rig.tree_digest(zpool.path("restored")) == rig.tree_digest(zpool.path("data"))


@pytest.mark.parametrize("storage_class", ["GLACIER", "DEEP_ARCHIVE"])
def test_verify_of_frozen_objects_requests_their_thaw_when_asked_and_says_what_it_costs(
    storage_class: str, zpool: rig.Pool, any_provider: rig.Remote, tmp_path: Path,
    capsys: pytest.CaptureFixture[str]
) -> None:
    _, config = back_up_in_volumes(zpool, any_provider, tmp_path, f"storage_class = {storage_class}\n")
    capsys.readouterr()
    assert cli("verify", "--config", config) == EXIT_REFUSED  # no terminal here, and no --yes
    said = capsys.readouterr()
    assert "5 object(s) to verify are frozen in an archive tier" in error_line_of(said.err)
    assert "the thaw's retrieval fee at AWS list prices" in said.out

    assert cli("verify", "--config", config, "--yes", "--thaw-priority", "Bulk") == EXIT_THAW_PENDING
    said = capsys.readouterr()
    assert "thaw requested for 5 object(s)" in error_line_of(said.err)
    assert "run the same verify again" in error_line_of(said.err)
    fee = "$0.00" if storage_class == "GLACIER" else "under $0.01"  # Glacier's Bulk is free
    assert f"retrieval fee at AWS list prices (us-east-1): {fee}" in said.out, said.out

    assert cli("verify", "--config", config) == 0  # moto thaws at once
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["OK"] * 3


def test_verify_with_wait_thaws_and_verifies_in_one_run(
    zpool: rig.Pool, any_provider: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, config = back_up_in_volumes(zpool, any_provider, tmp_path, "storage_class = GLACIER\n")
    capsys.readouterr()
    assert cli("verify", "--config", config, "--yes", "--wait", "--thaw-priority", "Expedited") == 0
    said = capsys.readouterr()
    assert "thawed: all 5 object(s)" in said.err
    assert [line.split()[0] for line in said.out.splitlines() if line.startswith(("OK", "FAILED"))] == ["OK"] * 3


# A bucket lifecycle rule moves objects to an archive tier behind zfsglacier's back: neither the manifest
# (no storage_class was asked for) nor, with provider = Other, the listing says they are cold. Here
# `rclone settier` through a provider = AWS config for the same bucket does what the rule would.

def go_cold(config: Path, objects: list[str], tier: str = "DEEP_ARCHIVE") -> None:
    aws = config.parent / "aws-rclone.conf"
    conf = Path(config.read_text().split("config_path = ", 1)[1].splitlines()[0])
    aws.write_text(conf.read_text().replace("provider = Other", "provider = AWS"))
    for path in objects:
        rig.run([rig.find_tool("rclone") or "rclone", "--config", str(aws), "settier", tier, path])


def test_objects_moved_cold_by_a_lifecycle_rule_are_thawed_when_the_read_is_refused(
    zpool: rig.Pool, moto_server: rig.MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with moto_server.remote(provider="Other") as remote:
        _, config = back_up_in_volumes(zpool, remote, tmp_path, "")
        objects = data_objects(config, capsys)
        go_cold(config, objects)
        refused = rig.run(remote.argv("cat", "--count", "1", objects[0]), check=False)
        assert refused.returncode != 0 and "restore first" in refused.stderr.decode()

        target = zpool.dataset("restored")
        capsys.readouterr()
        assert cli("restore", "--config", config, "--target-dataset", target, "--yes") == EXIT_THAW_PENDING
        said = capsys.readouterr().err
        assert "the remote refused to read" in said and "named no cold storage class" in said
        assert "5 object(s), " in said and "an archive tier the listing does not name" in said
        line = error_line_of(said)
        assert "thaw requested for 5 object(s)" in line and "rclone cat: exited" not in line
        assert not dataset_exists(target), "the full was not received: nothing is left"
        assert cli("restore", "--config", config, "--target-dataset", target, "--yes") == 0
        assert rig.tree_digest(zpool.path("restored")) == rig.tree_digest(zpool.path("data"))


@pytest.mark.parametrize("wait", [False, True], ids=["exit-9", "wait"])
def test_a_middle_incremental_gone_cold_stops_the_restore_after_the_full_and_it_continues(
    wait: bool, zpool: rig.Pool, moto_server: rig.MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with moto_server.remote(provider="Other") as remote:
        _, config = back_up_in_volumes(zpool, remote, tmp_path, "")
        records = list_json(config, capsys)
        go_cold(config, [str(records[1]["object"])])
        target = zpool.dataset("restored")
        capsys.readouterr()
        if wait:
            assert cli("restore", "--config", config, "--target-dataset", target, "--yes", "--wait") == 0
            said = capsys.readouterr().err
            assert "thaw requested for 1 object(s)" in said and "thawed: all 1 object(s)" in said
        else:
            assert cli("restore", "--config", config, "--target-dataset", target, "--yes") == EXIT_THAW_PENDING
            line = error_line(capsys)
            assert "thaw requested for 1 object(s)" in line
            assert f"{target} is unfinished: it holds {target}@{records[0]['snapshot']} (1 of 3 backups)" in line
            assert "the same restore run again continues from there" in line
            assert [s.partition("@")[2] for s in snapshots(target)] == [records[0]["snapshot"]]
            assert cli("restore", "--config", config, "--target-dataset", target, "--yes") == 0
        assert rig.tree_digest(zpool.path("restored")) == rig.tree_digest(zpool.path("data"))
        assert [s.partition("@")[2] for s in snapshots(target)] == [r["snapshot"] for r in records]


def test_verify_of_objects_gone_cold_unseen_requests_their_thaw(
    zpool: rig.Pool, moto_server: rig.MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with moto_server.remote(provider="Other") as remote:
        _, config = back_up_in_volumes(zpool, remote, tmp_path, "")
        records = list_json(config, capsys)
        go_cold(config, [str(v["object"]) for v in records[0]["volumes"]])  # type: ignore[attr-defined]
        capsys.readouterr()
        assert cli("verify", "--config", config, "--yes") == EXIT_THAW_PENDING
        said = capsys.readouterr()
        assert said.out.splitlines()[-3:] == [
            f"FROZEN  {records[0]['snapshot']}  not verified: in an archive tier and not thawed",
            *(line for line in said.out.splitlines()[-2:] if line.startswith("OK      "))], said.out
        assert "thaw requested for 3 object(s)" in error_line_of(said.err)
        assert cli("verify", "--config", config) == 0


def test_no_thaw_is_requested_on_yes_alone_for_a_chain_that_may_not_fit(
    zpool: rig.Pool, moto_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, config = back_up_in_volumes(zpool, moto_remote, tmp_path, "storage_class = DEEP_ARCHIVE\n")
    small = zpool.dataset("small")
    rig.run(["zfs", "create", "-o", "quota=1M", small])
    capsys.readouterr()
    assert cli("restore", "--config", config, "--target-dataset", f"{small}/copy", "--yes") == EXIT_REFUSED
    said = capsys.readouterr().err
    assert "WARNING: the chain's streams are" in said and "must be thawed first" in said
    assert "not requesting a billed thaw for a restore that may not fit" in error_line_of(said)
    first = data_objects(config, capsys)[0]
    still = rig.run(moto_remote.argv("cat", "--count", "1", first), check=False)
    assert still.returncode != 0 and "restore first" in still.stderr.decode(), "no thaw was requested"


# --- through an rclone crypt remote over S3: crypt passes no `rclone backend` command on ----------------

@pytest.fixture
def crypt_over_moto(moto_remote: rig.Remote, tmp_path: Path) -> rig.Remote:
    """A crypt remote (encrypted names) over the moto bucket's folder `vault`."""
    password = rig.out(["rclone", "obscure", secrets.token_hex(16)])
    config = tmp_path / "rclone-crypt.conf"
    config.write_text(moto_remote.config_path.read_text() + "\n".join([
        "[zgtvault]", "type = crypt", f"remote = {moto_remote.path('vault')}", "filename_encryption = standard",
        "directory_name_encryption = true", f"password = {password}"]) + "\n")
    return rig.Remote("crypt", config, "zgtvault", "folder", tmp_path / "no-local-folder")


def moto_call(server: rig.MotoServer, method: str, path: str) -> bytes:
    """A request to moto's S3 API (it checks no credentials)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request(method, path, body=b"x" * (5 << 20) if method == "PUT" else None)
        response = connection.getresponse()
        body = response.read()
        assert response.status == 200, f"{method} {path}: {response.status} {body[:300]!r}"
        return body
    finally:
        connection.close()


def unfinished_uploads(server: rig.MotoServer, bucket: str) -> list[str]:
    listing = moto_call(server, "GET", f"/{bucket}?uploads")
    return re.findall(r"<Key>([^<]+)</Key>", listing.decode())


def test_through_crypt_a_restore_thaws_on_the_remote_below_and_a_backup_aborts_unfinished_uploads(
    zpool: rig.Pool, moto_server: rig.MotoServer, moto_remote: rig.Remote, crypt_over_moto: rig.Remote,
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset, config = back_up_in_volumes(zpool, crypt_over_moto, tmp_path, "storage_class = DEEP_ARCHIVE\n")
    target = zpool.dataset("restored")
    capsys.readouterr()
    assert cli("restore", "--config", config, "--target-dataset", target, "--yes") == EXIT_THAW_PENDING
    said = capsys.readouterr().err
    assert "5 object(s), " in said and "are in DEEP_ARCHIVE and must be thawed first" in said
    assert "thaw requested for 5 object(s)" in error_line_of(said)
    assert cli("restore", "--config", config, "--target-dataset", target, "--yes") == 0
    assert rig.tree_digest(zpool.path("restored")) == rig.tree_digest(zpool.path("data"))

    # A killed upload's unfinished multipart upload, under the dataset's encrypted folder on S3.
    folder = rig.out(crypt_over_moto.argv("backend", "encode", "zgtvault:", crypt_over_moto.path(dataset)
                                          .partition(":")[2]))
    key = f"vault/{folder}/{rig.out(crypt_over_moto.argv('backend', 'encode', 'zgtvault:', 'x')).strip()}"
    upload_id = re.search(rb"<UploadId>([^<]+)</UploadId>",
                          moto_call(moto_server, "POST", f"/{moto_remote.bucket}/{key}?uploads"))
    assert upload_id is not None
    moto_call(moto_server, "PUT", f"/{moto_remote.bucket}/{key}?partNumber=1&uploadId={upload_id[1].decode()}")
    assert unfinished_uploads(moto_server, moto_remote.bucket) == [key]

    rig.populate(zpool.path("data") / "more", seed="crypt-more", n_files=3)
    capsys.readouterr()
    assert cli("backup", "--config", config) == 0
    assert f"aborted the unfinished multipart upload of {key}" in capsys.readouterr().err
    assert unfinished_uploads(moto_server, moto_remote.bucket) == []
