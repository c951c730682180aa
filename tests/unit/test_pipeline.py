"""The pumps and the process layer with stand-in stages (sh, cat, head): the ordering guarantees
that keep a failed stream from being committed, without needing zfs or rclone."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from zfsglacier.codec.registry import CODECS, get_codec
from zfsglacier.errors import IntegrityError, RemoteError, ZfsError
from zfsglacier.proc import Child, how_it_ended, run
from zfsglacier.remote.manifest import Volume
from zfsglacier.stream.pipeline import Expected, HeldBackTail, Source, VolumeTarget, receive_from_remote, send_to_remote
from zfsglacier.stream.ranged_reads import Part, ReadSettings

# Opens like a zfs stream (a DRR_BEGIN record's type field: what the "none" codec checks for).
RAW = bytes(16) + os.urandom(3 << 20) + b"compressible " * 300_000


def sink_argv(tmp_path: Path) -> list[str]:
    """A stand-in for rclone rcat/zfs receive: stores its input, and marks that it saw a clean end."""
    return ["sh", "-c", f'cat > "{tmp_path}/out" && echo eof > "{tmp_path}/committed"']


def one_object(argv: list[str]) -> VolumeTarget:
    """Upload the stored stream as one object, with `argv`."""
    return VolumeTarget(lambda name: argv, lambda number: "object")


def download_of(argv: list[str], expected: Expected, redact: Callable[[str], str] = str) -> Source:
    """Download one object with `argv` (whatever range is asked for: one stream, no retry)."""
    return Source([Part(expected.path, Volume("object", expected.stored_bytes, expected.sha256))],
                  lambda path, offset, count: argv, ReadSettings(streams=1, retries=0), redact)


def no_progress(raw: int, stored: int) -> None:
    pass


def compress(name: str, data: bytes) -> bytes:
    codec = get_codec(name)
    buffer = io.BytesIO()
    writer = codec.open_writer(buffer, codec.default_level, 2)
    writer.write(data)
    writer.close()
    return buffer.getvalue()


@pytest.mark.parametrize("name", sorted(CODECS))
def test_send_compresses_hashes_and_counts(name: str, tmp_path: Path) -> None:
    source = tmp_path / "raw"
    source.write_bytes(RAW)
    codec = get_codec(name)
    stats = send_to_remote(["cat", str(source)], one_object(sink_argv(tmp_path)), codec, codec.default_level, 2,
                           no_progress)
    stored = (tmp_path / "out").read_bytes()
    assert (tmp_path / "committed").exists()
    assert stats.raw_bytes == len(RAW)
    assert stats.stored_bytes == len(stored)
    assert stats.sha256 == hashlib.sha256(stored).hexdigest()
    out = bytearray()
    reader = codec.open_reader(io.BytesIO(stored))
    while chunk := reader.read(1 << 20):
        out += chunk
    assert bytes(out) == RAW


def test_a_failing_source_never_lets_the_sink_see_a_clean_end(tmp_path: Path) -> None:
    # The source writes 4 MiB, then fails: like a zfs send that dies; its output ends like a good one.
    failing = ["sh", "-c", "head -c 4194304 /dev/zero; echo 'send: I/O error' >&2; exit 7"]
    with pytest.raises(ZfsError) as info:
        send_to_remote(failing, one_object(sink_argv(tmp_path)), get_codec("zstd"), 3, 2, no_progress)
    assert str(info.value) == "zfs send: exited with status 7: send: I/O error"
    assert not (tmp_path / "committed").exists(), "the sink was killed before its input was closed"


def test_a_failing_sink_is_reported_with_its_stderr(tmp_path: Path) -> None:
    source = tmp_path / "raw"
    source.write_bytes(RAW)
    sink = ["sh", "-c", "head -c 1000 >/dev/null; echo 'Failed to rcat: access denied' >&2; exit 4"]
    with pytest.raises(RemoteError) as info:
        send_to_remote(["cat", str(source)], one_object(sink), get_codec("pigz"), 2, 2, no_progress)
    assert str(info.value) == "rclone rcat: exited with status 4: Failed to rcat: access denied"


def hide(text: str) -> str:
    return text.replace("s3cr3t", "[redacted]")


def test_what_a_failing_upload_or_download_says_is_redacted(tmp_path: Path) -> None:
    source = tmp_path / "raw"
    source.write_bytes(RAW)
    sink = ["sh", "-c", "head -c 1000 >/dev/null; echo 'Failed: bad key s3cr3t' >&2; exit 4"]
    with pytest.raises(RemoteError) as upload:
        send_to_remote(["cat", str(source)], one_object(sink), get_codec("zstd"), 3, 2, no_progress, redact=hide)
    assert str(upload.value) == "rclone rcat: exited with status 4: Failed: bad key [redacted]"

    path, expected = stored_object(tmp_path)
    download = ["sh", "-c", f'head -c 100 "{path}"; echo "ERROR : key s3cr3t refused" >&2; exit 1']
    with pytest.raises(RemoteError) as download_error:
        receive_from_remote(download_of(download, expected, redact=hide), get_codec("zstd"), expected, no_progress,
                            sink_argv(tmp_path))
    assert str(download_error.value) == ("rclone cat: reading r:b/object: exited with status 1: ERROR : key "
                                         "[redacted] refused")


def test_an_empty_stream_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ZfsError, match="produced no data"):
        send_to_remote(["true"], one_object(sink_argv(tmp_path)), get_codec("zstd"), 3, 2, no_progress)
    assert not (tmp_path / "committed").exists()


def stored_object(tmp_path: Path, name: str = "zstd") -> tuple[Path, Expected]:
    blob = compress(name, RAW)
    path = tmp_path / "object"
    path.write_bytes(blob)
    return path, Expected("r:b/object", len(blob), hashlib.sha256(blob).hexdigest(), len(RAW))


@pytest.mark.parametrize("name", sorted(CODECS))
def test_receive_verifies_then_delivers_everything(name: str, tmp_path: Path) -> None:
    path, expected = stored_object(tmp_path, name)
    stats = receive_from_remote(download_of(["cat", str(path)], expected), get_codec(name), expected, no_progress,
                            sink_argv(tmp_path))
    assert (tmp_path / "out").read_bytes() == RAW
    assert (tmp_path / "committed").exists()
    assert (stats.raw_bytes, stats.stored_bytes, stats.sha256) == (len(RAW), expected.stored_bytes, expected.sha256)


@pytest.mark.parametrize("wrong", ["sha256", "stored_bytes", "raw_bytes"])
def test_receive_holds_back_the_end_when_the_object_does_not_match(wrong: str, tmp_path: Path) -> None:
    path, expected = stored_object(tmp_path)
    if wrong == "sha256":
        expected = Expected(expected.path, expected.stored_bytes, "0" * 64, expected.raw_bytes)
    elif wrong == "stored_bytes":
        expected = Expected(expected.path, expected.stored_bytes + 1, expected.sha256, expected.raw_bytes)
    else:
        expected = Expected(expected.path, expected.stored_bytes, expected.sha256, expected.raw_bytes - 1)
    with pytest.raises(IntegrityError, match="r:b/object"):
        receive_from_remote(download_of(["cat", str(path)], expected), get_codec("zstd"), expected, no_progress,
                            sink_argv(tmp_path))
    assert not (tmp_path / "committed").exists()
    delivered = (tmp_path / "out").read_bytes() if (tmp_path / "out").exists() else b""
    assert len(delivered) <= len(RAW) - (1 << 20), "at least the last MiB (the END record) was held back"


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_an_uncompressed_object_is_checked_by_its_sha256_before_the_end_is_delivered(damage: str,
                                                                                      tmp_path: Path) -> None:
    path, expected = stored_object(tmp_path, "none")
    blob = bytearray(path.read_bytes())
    if damage == "flip":
        blob[len(blob) // 2] ^= 0x01
    else:
        del blob[len(blob) * 2 // 3:]
    path.write_bytes(blob)
    with pytest.raises(IntegrityError, match="r:b/object"):
        receive_from_remote(download_of(["cat", str(path)], expected), get_codec("none"), expected, no_progress,
                            sink_argv(tmp_path))
    assert not (tmp_path / "committed").exists()
    delivered = (tmp_path / "out").read_bytes() if (tmp_path / "out").exists() else b""
    assert len(delivered) <= len(RAW) - (1 << 20), "at least the last MiB (the END record) was held back"


def test_a_failed_download_is_blamed_on_the_download(tmp_path: Path) -> None:
    path, expected = stored_object(tmp_path)
    half = expected.stored_bytes // 2
    download = ["sh", "-c", f'head -c {half} "{path}"; echo "ERROR : connection reset" >&2; exit 1']
    with pytest.raises(RemoteError, match="rclone cat: reading r:b/object: exited with status 1: ERROR : "
                                          "connection reset"):
        receive_from_remote(download_of(download, expected), get_codec("zstd"), expected, no_progress,
                            sink_argv(tmp_path))
    assert not (tmp_path / "committed").exists()


def test_not_the_expected_format(tmp_path: Path) -> None:
    path, expected = stored_object(tmp_path, "pigz")
    with pytest.raises(IntegrityError, match="not a zstd stream"):
        receive_from_remote(download_of(["cat", str(path)], expected), get_codec("zstd"), expected, no_progress,
                            sink_argv(tmp_path))


def test_child_drains_a_chatty_stderr_and_keeps_its_tail() -> None:
    chatty = ["sh", "-c", "i=0; while [ $i -lt 20000 ]; do echo line $i >&2; i=$((i+1)); done; exit 3"]
    child = Child("chatty", chatty, error=ZfsError)
    assert child.wait(timeout=60) == 3  # 20000 lines would fill a pipe nobody reads
    message = str(child.failure())
    assert message.startswith("chatty: exited with status 3: ")
    assert message.endswith("line 19999") and "line 19980" in message and "line 19979" not in message


def test_run_reports_missing_programs_and_failures() -> None:
    with pytest.raises(ZfsError, match="zfs: program not found: /nonexistent/zfs"):
        run("zfs", ["/nonexistent/zfs"], error=ZfsError)
    with pytest.raises(RemoteError, match=r"^x: exited with status 2: boom$"):
        run("x", ["sh", "-c", "echo boom >&2; exit 2"], error=RemoteError)


def test_children_get_a_minimal_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    monkeypatch.setenv("RCLONE_CONFIG_PASS", "pw")
    out = run("env", ["env"], error=ZfsError).stdout.decode()
    assert "hunter2" not in out  # zfs needs no cloud credentials
    assert "RCLONE_CONFIG_PASS" not in out  # nor rclone's: only rclone.env() passes them on
    assert "LC_ALL=C" in out


def test_held_back_releases_only_what_the_newest_bytes_do_not_need_and_keeps_the_order() -> None:
    held = HeldBackTail(10)
    released: list[bytes] = []
    stream = [bytes([n]) * size for n, size in enumerate((4, 3, 6, 1, 12, 2, 5))]
    for pushed, chunk in enumerate(stream, start=1):
        released += held.push(chunk)
        assert stream[: len(released)] == released, "released in order, a prefix of the stream"
        kept = stream[len(released):pushed]
        kept_bytes = sum(map(len, kept))
        assert kept_bytes >= min(10, sum(map(len, stream[:pushed]))), "the newest 10 bytes stay held"
        assert kept_bytes - len(kept[0]) < 10, "nothing held that the newest 10 bytes do not need"
    assert len(released) == 4
    rest = held.release()
    assert all(a is b for a, b in zip(released + rest, stream, strict=True)), "the chunks themselves: no copies"
    assert held.release() == []


@pytest.mark.parametrize(("returncode", "text"), [
    (-9, "killed by signal SIGKILL"),
    (4, "exited with status 4"),
    (143, "exited with status 143 (after SIGTERM)"),  # rclone's own exit on SIGTERM
    (130, "exited with status 130 (after SIGINT)"),
    (137, "exited with status 137"),  # no program exits itself after SIGKILL: not read as one
])
def test_how_a_child_ended(returncode: int, text: str) -> None:
    assert how_it_ended(returncode) == text
