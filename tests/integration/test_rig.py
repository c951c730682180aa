"""The test rig itself: pools, data helpers and both rclone remotes, against the real tools."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import rig

# --- data helpers (no real tools) -----------------------------------------------------------------


def test_populate_is_deterministic_and_mixed(tmp_path: Path) -> None:
    rig.populate(tmp_path / "a", seed=7)
    rig.populate(tmp_path / "b", seed=7)
    rig.populate(tmp_path / "c", seed=8)
    digest = rig.tree_digest(tmp_path / "a")
    assert digest == rig.tree_digest(tmp_path / "b")
    assert digest != rig.tree_digest(tmp_path / "c")
    assert digest["empty-dir/empty-child"] == "dir"
    assert digest["link-to-first"].startswith("symlink:")
    total = sum(p.stat().st_size for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert 50_000 < total < 1_000_000


def test_tree_digest_sees_one_byte_and_empty_dirs(tmp_path: Path) -> None:
    rig.populate(tmp_path, seed=1)
    before = rig.tree_digest(tmp_path)
    victim = next(p for p in sorted(tmp_path.rglob("random-*")) if p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 1
    victim.write_bytes(bytes(data))
    after = rig.tree_digest(tmp_path)
    assert {k for k in before if before[k] != after[k]} == {victim.relative_to(tmp_path).as_posix()}
    (tmp_path / "new-empty").mkdir()
    assert rig.tree_digest(tmp_path)["new-empty"] == "dir"


def test_mutate_adds_changes_and_deletes(tmp_path: Path) -> None:
    rig.populate(tmp_path / "a", seed=3)
    rig.populate(tmp_path / "b", seed=3)
    before = rig.tree_digest(tmp_path / "a")
    rig.mutate(tmp_path / "a", seed=1)
    rig.mutate(tmp_path / "b", seed=1)
    after = rig.tree_digest(tmp_path / "a")
    assert after == rig.tree_digest(tmp_path / "b")
    assert set(after) - set(before)  # added
    assert set(before) - set(after)  # deleted
    assert any(after[k] != before[k] for k in set(before) & set(after))  # changed


# --- real tools -----------------------------------------------------------------------------------


@pytest.mark.integration
def test_zpool_is_created_and_destroyed() -> None:
    rig.need_tool("zpool")
    with rig.file_pool() as pool:
        assert rig.pool_exists(pool.name)
        assert rig.out(["zfs", "get", "-Hp", "-o", "value", "mountpoint", pool.name]) == str(pool.mountpoint)
        rig.run(["zfs", "create", pool.dataset("data")])
        rig.populate(pool.path("data"), seed=5)
        rig.run(["zfs", "snapshot", pool.dataset("data") + "@s1"])
        workdir = pool.mountpoint.parent
    assert not rig.pool_exists(pool.name)
    assert not workdir.exists()


@pytest.mark.integration
def test_zpool_fixture_send_receive_round_trip(zpool: rig.Pool) -> None:
    source, copy = zpool.dataset("src"), zpool.dataset("copy")
    rig.run(["zfs", "create", source])
    rig.populate(zpool.path("src"), seed=11)
    rig.run(["zfs", "snapshot", source + "@one"])
    stream = rig.run(["zfs", "send", source + "@one"]).stdout
    rig.run(["zfs", "receive", copy], input=stream)
    assert rig.tree_digest(zpool.path("copy")) == rig.tree_digest(zpool.path("src"))


@pytest.mark.integration
def test_remote_round_trip(rclone_remote: rig.Remote) -> None:
    # Over rclone's 5 MiB s3 chunk size, so the s3 remote takes it as a multipart upload of 3 parts.
    data = os.urandom(12 * 1024 * 1024 + 123)
    key = "pool/data/full.zst"
    rig.run(rclone_remote.argv("rcat", rclone_remote.path(key)), input=data)
    assert rig.run(rclone_remote.argv("cat", rclone_remote.path(key))).stdout == data
    assert (rclone_remote.root / key).read_bytes() == data
    listing = json.loads(rig.run(rclone_remote.argv("lsjson", "-R", "--files-only",
                                                    rclone_remote.path())).stdout)
    assert [(item["Path"], item["Size"]) for item in listing] == [(key, len(data))]


@pytest.mark.integration
def test_remote_sees_objects_changed_behind_its_back(rclone_remote: rig.Remote) -> None:
    key = "x/obj.bin"
    rig.run(rclone_remote.argv("rcat", rclone_remote.path(key)), input=b"original")
    assert rig.run(rclone_remote.argv("cat", rclone_remote.path(key))).stdout == b"original"
    (rclone_remote.root / key).write_bytes(b"corrupted!")
    assert rig.run(rclone_remote.argv("cat", rclone_remote.path(key))).stdout == b"corrupted!"
    (rclone_remote.root / key).unlink()
    listing = rig.run(rclone_remote.argv("lsjson", "-R", "--files-only", rclone_remote.path()))
    assert json.loads(listing.stdout) == []


@pytest.mark.integration
def test_buckets_are_fresh_per_test(rclone_remote: rig.Remote) -> None:
    # Runs after the tests above wrote objects: each test must start with an empty bucket.
    assert list(rclone_remote.root.iterdir()) == []


@pytest.mark.integration
def test_s3_server_idles_after_uploads(s3_server: rig.S3Server) -> None:
    # rclone serve s3 with --dir-cache-time 0s spun a core forever after this sequence.
    with s3_server.remote() as remote:
        rig.run(remote.argv("rcat", remote.path("d/small")), input=b"x")
        rig.run(remote.argv("lsjson", remote.path("d")))
        rig.run(remote.argv("rcat", remote.path("d/big")), input=os.urandom(300_000))
        before = rig.cpu_seconds(s3_server.pid)
        time.sleep(1)
        assert rig.cpu_seconds(s3_server.pid) - before < 0.3
