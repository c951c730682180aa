"""The catalog index on real ZFS and real rclone: a copy of the committed manifests that only ever
saves requests. Missing, corrupt, stale or unwritable, it never changes what is a backup."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import rig
from helpers import cli, list_json, write_config

from zfsglacier import proc
from zfsglacier.remote.manifest import SELF_CHECK, Manifest, content_sha256, manifest_name
from zfsglacier.remote.manifest_index import INDEX_NAME
from zfsglacier.remote.manifest_index import decode as index_decode
from zfsglacier.remote.manifest_index import encode as index_encode
from zfsglacier.remote.rclone import Rclone
from zfsglacier.remote.rclone_output import RemoteObject

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))


@pytest.fixture
def rclone_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The stage of every short command zfsglacier runs ("rclone lsjson", "rclone cat", ...), in order."""
    calls: list[str] = []
    real_run = proc.run

    def spy(stage: str, *args: object, **kwargs: object) -> proc.Result:
        calls.append(stage)
        return real_run(stage, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(proc, "run", spy)
    return calls


def _backups(zpool: rig.Pool, remote: rig.Remote, tmp_path: Path, count: int) -> tuple[str, Path, list[dict[str, str]]]:
    """A dataset with a few bytes in it, backed up `count` times; the tree after each backup."""
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    config = write_config(tmp_path, dataset, remote, retention=0)
    states = []
    for round_number in range(count):
        (zpool.path("data") / f"round-{round_number}.txt").write_text(f"round {round_number}\n" * (round_number + 1))
        assert cli("backup", "--config", config) == 0
        states.append(rig.tree_digest(zpool.path("data")))
    return dataset, config, states


def _manifests_on(remote: rig.Remote, dataset: str) -> dict[str, bytes]:
    folder = remote.root / dataset
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.name.endswith(".manifest.json")}


def _index_on(remote: rig.Remote, dataset: str) -> dict[str, bytes]:
    return index_decode((remote.root / dataset / INDEX_NAME).read_bytes())


def _restore_newest(config: Path, zpool: rig.Pool, name: str) -> dict[str, str]:
    assert cli("restore", "--config", config, "--target-dataset", zpool.dataset(name), "--yes") == 0
    return rig.tree_digest(zpool.path(name))


def loaded_then(calls: list[str]) -> list[str]:
    """The calls after the listing and the index read, which run at the same time, in either order."""
    assert sorted(calls[:2]) == ["rclone cat", "rclone lsjson"], calls
    return calls[2:]


def test_index_copies_every_committed_manifest_and_is_rebuilt_when_deleted(
    zpool: rig.Pool, rclone_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    rclone_calls: list[str],
) -> None:
    dataset, config, states = _backups(zpool, rclone_remote, tmp_path, 3)
    manifests = _manifests_on(rclone_remote, dataset)
    assert len(manifests) == 3
    assert _index_on(rclone_remote, dataset) == manifests

    # With a current index, loading the catalog is one listing and one read, at the same time: no manifest
    # is fetched.
    rclone_calls.clear()
    records = list_json(config, capsys)
    assert sorted(manifest_name(str(r["snapshot"])) for r in records) == sorted(manifests)
    assert sorted(rclone_calls) == ["rclone cat", "rclone lsjson"]

    # Restore plans from the index and streams the data: the read path on this remote.
    assert _restore_newest(config, zpool, "restored") == states[-1]

    # Without the index, every manifest is fetched by one rclone copy, and nothing is missing.
    rig.run(rclone_remote.argv("deletefile", rclone_remote.path(f"{dataset}/{INDEX_NAME}")))
    assert not (rclone_remote.root / dataset / INDEX_NAME).exists()
    rclone_calls.clear()
    capsys.readouterr()
    assert cli("list", "--config", config, "--json") == 0
    captured = capsys.readouterr()
    assert [r["snapshot"] for r in json.loads(captured.out)] == [r["snapshot"] for r in records]
    # (the index read beside the listing found none)
    assert sorted(rclone_calls) == ["rclone cat", "rclone copy", "rclone lsjson"]
    assert "index" not in captured.err  # a missing index is not worth a warning

    # The next backup writes the index again, with every manifest, its own included.
    (zpool.path("data") / "round-3.txt").write_text("round 3\n")
    assert cli("backup", "--config", config) == 0
    manifests = _manifests_on(rclone_remote, dataset)
    assert len(manifests) == 4
    assert _index_on(rclone_remote, dataset) == manifests
    assert [r["kind"] for r in list_json(config, capsys)] == ["full", "incremental", "incremental", "incremental"]


def test_a_corrupt_index_is_ignored_with_a_warning_and_replaced_by_the_next_backup(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    rclone_calls: list[str],
) -> None:
    dataset, config, _ = _backups(zpool, local_remote, tmp_path, 2)
    index_path = local_remote.root / dataset / INDEX_NAME
    index_path.write_bytes(b"\x00\xff\xfe not an index {{{")
    rclone_calls.clear()
    capsys.readouterr()
    assert cli("list", "--config", config, "--json") == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)) == 2
    assert f"index {local_remote.path(f'{dataset}/{INDEX_NAME}')}: not valid JSON" in captured.err
    assert "ignored" in captured.err
    assert loaded_then(rclone_calls) == ["rclone copy"]

    (zpool.path("data") / "round-2.txt").write_text("round 2\n")
    assert cli("backup", "--config", config) == 0
    assert _index_on(local_remote, dataset) == _manifests_on(local_remote, dataset)
    assert len(_index_on(local_remote, dataset)) == 3


def test_a_stale_index_never_outranks_the_manifests_on_the_remote(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    rclone_calls: list[str],
) -> None:
    dataset, config, states = _backups(zpool, local_remote, tmp_path, 3)
    folder = local_remote.root / dataset
    first, second, third = (str(r["snapshot"]) for r in list_json(config, capsys))
    stale_index = (folder / INDEX_NAME).read_bytes()

    # The first manifest is rewritten after the index was: still valid, a different size.
    first_path = folder / manifest_name(first)
    doc = json.loads(first_path.read_bytes())
    doc.update(host=doc["host"] + "-renamed-host", created="2001-02-03T04:05:06.789000+00:00")
    doc[SELF_CHECK] = content_sha256(doc)
    first_path.write_bytes((json.dumps(doc, indent=2) + "\n").encode())
    Manifest.from_json(first_path.read_bytes(), "edited")  # still a good manifest
    # The newest backup is gone, manifest and data (a manifest gone while its data stays: test_corruption.py).
    (folder / manifest_name(third)).unlink()
    next(folder.glob(f"{third}.incr.zfs.*")).unlink()
    assert (folder / INDEX_NAME).read_bytes() == stale_index
    assert manifest_name(third) in index_decode(stale_index)

    rclone_calls.clear()
    records = list_json(config, capsys)
    assert loaded_then(rclone_calls) == ["rclone copy"]  # the edited manifest is fetched
    assert [r["snapshot"] for r in records] == [first, second]
    assert records[0]["created"] == "2001-02-03T04:05:06.789000+00:00"  # the object's, not the index's
    assert records[1]["created"] == Manifest.from_json(index_decode(stale_index)[manifest_name(second)], "i").created
    assert _restore_newest(config, zpool, "restored") == states[1]

    # The next backup's index copies what the remote holds, not the stale entries.
    (zpool.path("data") / "round-3.txt").write_text("round 3\n")
    assert cli("backup", "--config", config) == 0
    rewritten = _index_on(local_remote, dataset)
    assert rewritten == _manifests_on(local_remote, dataset)
    assert manifest_name(third) not in rewritten
    assert rewritten[manifest_name(first)] == first_path.read_bytes()


def test_an_index_entry_without_its_manifest_object_is_not_a_backup(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset, config, states = _backups(zpool, local_remote, tmp_path, 2)
    folder = local_remote.root / dataset
    entries = index_decode((folder / INDEX_NAME).read_bytes())
    newest = Manifest.from_json(entries[max(entries)], "index")
    # A forged entry: a newer incremental on the newest backup, whose objects were never written.
    forged = json.loads(newest.to_json())
    forged.update(snapshot="glacier-backup-29991231T235959Z", guid="4242", createtxg=newest.createtxg + 1000,
                  kind="incremental", base=newest.snapshot, base_guid=newest.guid,
                  object="glacier-backup-29991231T235959Z.incr.zfs.zst")
    entries[manifest_name(forged["snapshot"])] = (json.dumps(forged, indent=2) + "\n").encode()
    (folder / INDEX_NAME).write_bytes(index_encode(entries))

    records = list_json(config, capsys)
    assert sorted(manifest_name(str(r["snapshot"])) for r in records) == sorted(_manifests_on(local_remote, dataset))
    assert len(records) == 2
    assert forged["snapshot"] not in {r["snapshot"] for r in records}
    assert _restore_newest(config, zpool, "restored") == states[-1]
    capsys.readouterr()
    assert cli("restore", "--config", config, "--target-dataset", zpool.dataset("forged"), "--yes",
               "--snapshot", forged["snapshot"]) != 0
    assert "has no committed backup" in capsys.readouterr().err


def test_a_failing_index_write_leaves_the_backup_committed(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    (zpool.path("data") / "file.txt").write_text("committed\n")
    config = write_config(tmp_path, dataset, local_remote)
    # A directory where the index goes: rclone cannot write the object.
    (local_remote.root / dataset / INDEX_NAME).mkdir(parents=True)
    capsys.readouterr()
    assert cli("backup", "--config", config) == 0
    err = capsys.readouterr().err
    assert "is committed, but rewriting the index" in err
    assert INDEX_NAME in err
    records = list_json(config, capsys)
    assert len(records) == 1
    assert (local_remote.root / dataset / manifest_name(str(records[0]["snapshot"]))).is_file()
    assert _restore_newest(config, zpool, "restored") == rig.tree_digest(zpool.path("data"))

    # Once the index can be written again, the next backup's index holds both backups.
    (local_remote.root / dataset / INDEX_NAME).rmdir()
    (zpool.path("data") / "file.txt").write_text("committed twice\n")
    assert cli("backup", "--config", config) == 0
    assert len(_index_on(local_remote, dataset)) == 2
    assert _index_on(local_remote, dataset) == _manifests_on(local_remote, dataset)



def test_a_valid_utf16_manifest_does_not_fail_the_next_backup_after_its_commit(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset, config, _ = _backups(zpool, local_remote, tmp_path, 1)
    first = local_remote.root / dataset / manifest_name(str(list_json(config, capsys)[0]["snapshot"]))
    first.write_bytes(first.read_bytes().decode().encode("utf-16"))  # json.loads still reads it
    assert len(list_json(config, capsys)) == 1
    (zpool.path("data") / "round-1.txt").write_text("round 1\n")
    capsys.readouterr()
    code = cli("backup", "--config", config)
    err = capsys.readouterr().err
    assert len(list_json(config, capsys)) == 2  # committed either way
    assert code == 0, err


def test_an_index_gone_between_listing_and_reading_only_makes_loading_slower(
    zpool: rig.Pool, local_remote: rig.Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dataset, config, _ = _backups(zpool, local_remote, tmp_path, 2)
    index_path = local_remote.root / dataset / INDEX_NAME
    real_list_dir = Rclone.list_dir

    def list_then_lose_the_index(self: Rclone, path: str) -> list[RemoteObject]:
        listed = real_list_dir(self, path)
        index_path.unlink(missing_ok=True)  # e.g. deleted by hand while this run lists
        return listed

    monkeypatch.setattr(Rclone, "list_dir", list_then_lose_the_index)
    capsys.readouterr()
    code = cli("list", "--config", config, "--json")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert len(json.loads(captured.out)) == 2
