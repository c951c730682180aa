"""Fixtures for real-tool tests (see rig.py) and the CI skip policy: with CI=true nothing may be skipped."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Lets every test `import rig`, whatever pytest's import mode and wherever the test file lives.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import rig


@pytest.fixture(autouse=True)
def _zfsglacier_logger() -> Iterator[None]:
    """main() sets up the "zfsglacier" logger (a handler on the stderr of that moment, --debug's level):
    put it back after each test, so that no test sees another's."""
    logger = logging.getLogger("zfsglacier")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


_REAL_TOOL_FIXTURES = {"zpool", "rclone_remote", "local_remote", "s3_server", "killable_s3_server", "moto_server",
                       "moto_remote"}


@pytest.fixture
def zpool() -> Iterator[rig.Pool]:
    """A fresh file-backed pool (512 MiB sparse vdev), destroyed with its files after the test."""
    rig.need_tool("zfs")
    rig.need_tool("zpool")
    with rig.file_pool() as pool:
        yield pool


@pytest.fixture(scope="session")
def s3_server() -> Iterator[rig.S3Server]:
    """One `rclone serve s3` on 127.0.0.1 for the whole session."""
    rclone = rig.need_tool("rclone")
    with rig.s3_server(rclone) as server:
        yield server


@pytest.fixture
def killable_s3_server() -> Iterator[rig.S3Server]:
    """An `rclone serve s3` of the test's own, which it may kill and restart (the session's must live)."""
    rclone = rig.need_tool("rclone")
    with rig.s3_server(rclone) as server:
        yield server


@pytest.fixture(scope="session")
def moto_server() -> Iterator[rig.MotoServer]:
    """moto's S3 server on 127.0.0.1 for the whole session: storage classes, and reads of Glacier and
    Deep Archive objects refused until they are restored, as on AWS."""
    rig.need_tool("rclone")
    with rig.moto_server() as server:
        yield server


@pytest.fixture
def moto_remote(moto_server: rig.MotoServer) -> Iterator[rig.Remote]:
    """An empty bucket on moto's S3 server."""
    with moto_server.remote() as remote:
        yield remote


@pytest.fixture(params=["local", "s3"], ids=["local", "s3"])
def rclone_remote(request: pytest.FixtureRequest) -> Iterator[rig.Remote]:
    """An empty bucket on a local (alias) remote, then on an S3 remote served by rclone."""
    rig.need_tool("rclone")
    if request.param == "local":
        with rig.local_remote() as remote:
            yield remote
    else:
        server: rig.S3Server = request.getfixturevalue("s3_server")
        with server.remote() as remote:
            yield remote


@pytest.fixture
def local_remote() -> Iterator[rig.Remote]:
    """An empty bucket on a local (alias) remote."""
    rig.need_tool("rclone")
    with rig.local_remote() as remote:
        yield remote


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests using the real-tool fixtures are integration tests even if not marked: `-m "not integration"`
    # then leaves them out.
    for item in items:
        if _REAL_TOOL_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Tests marked openzfs prove what only kernel OpenZFS does: on zfs-fuse they are deselected
    # (make test passes -m "not openzfs"); one asked for by hand fails here, never runs against zfs-fuse.
    if item.get_closest_marker("openzfs") is not None and not rig.kernel_openzfs():
        pytest.fail("this test needs kernel OpenZFS, which this host does not have: run make test-openzfs "
                    "(or deselect it with -m 'not openzfs')", pytrace=False)


_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # An expected failure (xfail) is reported as skipped too: it is no pass either.
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # A real-tool test skipped (or xfailed) in CI would pass green while testing nothing: fail the session.
    if rig.in_ci() and _skipped and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if rig.in_ci() and _skipped:
        terminalreporter.section("CI=true: skipped tests fail this run", sep="=", red=True)
        for nodeid in _skipped:
            terminalreporter.line(nodeid)
