"""Secrets: no credential from the environment or the rclone config shows in output, logs or errors,
even with --debug; `zfs send` gets no credential variable at all, and rclone only its own settings and
cloud credentials, never an unrelated secret of the caller's environment."""

from __future__ import annotations

import os
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import rig
from helpers import cli, list_json, snapshots, start_cli, wait_for_child, write_config

from zfsglacier.errors import EXIT_REMOTE, EXIT_USAGE

pytestmark = pytest.mark.integration

# Present in every child's environment: the basics proc.child_env keeps, and the locale it sets.
BASIC_VARIABLES = {"PATH", "HOME", "TMPDIR", "TZ", "USER", "LOGNAME", "LC_ALL"}
RCLONE_PREFIXES = ("RCLONE_", "AWS_", "GOOGLE_", "AZURE_", "B2_", "SWIFT_", "OS_")


def marker(what: str) -> str:
    return f"zgtmarker{what}{secrets.token_hex(6)}"


class Secrets:
    """Marker values in the environment and the rclone config, and a check that none is shown."""

    def __init__(self, server: rig.S3Server) -> None:
        self.environment = {
            "AWS_SECRET_ACCESS_KEY": marker("awssecret"),
            "AWS_ACCESS_KEY_ID": marker("awskeyid"),
            # Overrides the config file's secret_access_key: it must be the real one for a run to work.
            "RCLONE_S3_SECRET_ACCESS_KEY": server.secret_key,
            "MY_DB_PASSWORD": marker("dbpassword"),
        }
        self.config = {"access_key_id": server.access_key, "secret_access_key": server.secret_key}

    def values(self) -> list[str]:
        return [*self.environment.values(), *self.config.values()]

    def assert_none_in(self, text: str) -> None:
        shown = [value for value in self.values() if value in text]
        assert shown == [], f"secrets shown: {shown}"


@pytest.fixture
def s3_remote(s3_server: rig.S3Server) -> Iterator[rig.Remote]:
    with s3_server.remote() as remote:
        yield remote


@pytest.fixture
def marked(s3_server: rig.S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Secrets:
    known = Secrets(s3_server)
    for name, value in known.environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ZFSGLACIER_LOCK_DIR", str(tmp_path / "locks"))
    return known


def s3_config(path: Path, remote: rig.Remote, server: rig.S3Server, secret_key: str) -> Path:
    path.write_text(f"[{remote.name}]\ntype = s3\nprovider = Rclone\nendpoint = {server.endpoint}\n"
                    f"access_key_id = {server.access_key}\nsecret_access_key = {secret_key}\n")
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str]:
    capsys.readouterr()
    code = cli("--debug", *argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_no_secret_in_the_output_of_backup_list_restore_and_failures(
    zpool: rig.Pool, s3_server: rig.S3Server, s3_remote: rig.Remote, marked: Secrets, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    rig.populate(zpool.path("data"), seed="secrets")
    config = write_config(tmp_path, dataset, s3_remote)

    for argv in (["backup", "--dry-run"], ["backup"], ["list"], ["list", "--json"],
                 ["restore", "--target-dataset", zpool.dataset("r"), "--yes"], ["verify"]):
        code, output = run_cli(capsys, *argv, "--config", config)
        assert code == 0, output
        assert "run rclone lsjson" in output  # --debug shows every command run
        marked.assert_none_in(output)
    assert rig.tree_digest(zpool.path("r")) == rig.tree_digest(zpool.path("data"))

    # A wrong secret, in the environment (which wins over the file) and in the file: both refused.
    wrong_in_environment, wrong_in_file = marker("wrongenv"), marker("wrongfile")
    s3_config(s3_remote.config_path, s3_remote, s3_server, wrong_in_file)
    marked.config["wrong"] = wrong_in_file
    monkeypatch.setenv("RCLONE_S3_SECRET_ACCESS_KEY", wrong_in_environment)
    marked.environment["RCLONE_S3_SECRET_ACCESS_KEY"] = wrong_in_environment
    before = snapshots(dataset)
    rig.mutate(zpool.path("data"), seed="secrets")
    code, output = run_cli(capsys, "backup", "--config", config)
    assert code == EXIT_REMOTE, output
    assert "error: rclone lsjson" in output and "SignatureDoesNotMatch" in output, output
    marked.assert_none_in(output)
    monkeypatch.delenv("RCLONE_S3_SECRET_ACCESS_KEY")
    code, output = run_cli(capsys, "list", "--config", config)
    assert code == EXIT_REMOTE and "SignatureDoesNotMatch" in output, output
    marked.assert_none_in(output)
    assert snapshots(dataset) == before


def test_an_unparsable_rclone_config_line_holding_a_secret_is_not_shown(
    zpool: rig.Pool, s3_remote: rig.Remote, marked: Secrets, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    # rclone itself echoes the line it cannot parse: "could not parse line: secret_access_key ..."
    leaked = marker("garbled")
    marked.config["garbled"] = leaked
    s3_remote.config_path.write_text(f"[{s3_remote.name}]\ntype = s3\nsecret_access_key {leaked}\n")
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    config = write_config(tmp_path, dataset, s3_remote)
    for argv in (["backup"], ["list"]):
        code, output = run_cli(capsys, *argv, "--config", config)
        assert code == EXIT_USAGE, output
        assert f"error: rclone config file {s3_remote.config_path} ([rclone] config_path): rclone cannot parse it" \
               in output, output
        marked.assert_none_in(output)
    assert snapshots(dataset) == []


def environment_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(entry.decode().partition("=")[::2] for entry in raw.split(b"\0") if entry)


def test_children_get_only_the_environment_they_need(
    zpool: rig.Pool, s3_remote: rig.Remote, marked: Secrets, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    dataset = zpool.dataset("data")
    rig.run(["zfs", "create", dataset])
    rig.populate(zpool.path("data"), seed="environ")
    # Random data, bigger than the pipes between the stages: zfs send is still running when rcat stops.
    (zpool.path("data") / "big.bin").write_bytes(os.urandom(24 << 20))
    config = write_config(tmp_path, dataset, s3_remote)

    process = start_cli("--debug", "backup", "--config", config, env=dict(os.environ))
    rcat = wait_for_child(process.pid, " rcat ")
    os.kill(rcat, signal.SIGSTOP)
    send = wait_for_child(process.pid, "zfs send")
    try:
        send_environment, rcat_environment = environment_of(send), environment_of(rcat)
    finally:
        os.kill(rcat, signal.SIGCONT)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err.decode()
    marked.assert_none_in(out.decode() + err.decode())
    assert len(list_json(config, capsys)) == 1

    assert set(send_environment) <= BASIC_VARIABLES, sorted(send_environment)
    assert "MY_DB_PASSWORD" not in rcat_environment
    assert {name for name in rcat_environment if name not in BASIC_VARIABLES and not name.startswith(RCLONE_PREFIXES)} \
        == set()
    # rclone does get what it may authenticate with (env_auth, RCLONE_S3_*).
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "RCLONE_S3_SECRET_ACCESS_KEY"):
        assert rcat_environment[name] == marked.environment[name]
