"""Backups into S3 storage classes and restores from cold storage, on moto's S3 server (127.0.0.1),
which like AWS refuses to read a DEEP_ARCHIVE object until it is restored (thawed). moto thaws at once
where AWS takes hours: what these tests prove is which objects are asked for, when a restore stops
with exit 9, and that the next run (or --wait) restores the chain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import rig
from helpers import cli, dataset_exists, error_line, list_json, write_config

from zfsglacier.errors import EXIT_THAW_PENDING, EXIT_USAGE

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
    config = write_config(tmp_path, dataset, remote)
    config.write_text(config.read_text().replace("[compression]", f"storage_class = {storage_class}\n[compression]"))
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
