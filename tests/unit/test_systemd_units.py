"""The systemd units in systemd/: systemd loads them without a complaint, the service's sandbox rates 4.0 or
better in `systemd-analyze security`, keeps what zfs and rclone need, and the glacier-backup.*.example
copies (the names older install steps copy) say the same as zfsglacier.service and zfsglacier.timer. The
restore drill's units (zfsglacier-verify.*) run `verify --drill` weekly in the backup's sandbox."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import rig

SYSTEMD_DIR = Path(__file__).resolve().parents[2] / "systemd"
BINARY = "/usr/local/bin/zfsglacier"  # where the README's install steps link the console script
EXEC_START = f"{BINARY} backup --config /etc/zfsglacier/config.ini"
MAX_EXPOSURE = 4.0

# Unit name stem -> (service file, timer file) as shipped.
UNITS = {
    "zfsglacier": (SYSTEMD_DIR / "zfsglacier.service", SYSTEMD_DIR / "zfsglacier.timer"),
    "glacier-backup": (SYSTEMD_DIR / "glacier-backup.service.example", SYSTEMD_DIR / "glacier-backup.timer.example"),
    "zfsglacier-verify": (SYSTEMD_DIR / "zfsglacier-verify.service", SYSTEMD_DIR / "zfsglacier-verify.timer"),
}

# Each of these gives the service a mount namespace of its own (or, for the last ones, takes away what zfs
# or rclone needs): a dataset zfs mounts in there is invisible to the host, and host mounts copied in can
# keep datasets busy. The service must do without them (see the comments in zfsglacier.service).
FORBIDDEN = ("ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "PrivateMounts", "PrivateIPC",
             "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups",
             "ProtectProc", "ProcSubset", "ReadWritePaths", "ReadOnlyPaths", "InaccessiblePaths", "ExecPaths",
             "NoExecPaths", "BindPaths", "BindReadOnlyPaths", "TemporaryFileSystem", "MountFlags",
             "RootDirectory", "RootImage", "MountAPIVFS", "PrivateNetwork", "PrivateUsers", "DynamicUser")
FALSE = ("no", "false", "0", "off", "")


def _settings(path: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) of each setting, in order; systemd allows a key more than once."""
    section, found = "", []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        assert "=" in line and not line.endswith("\\"), f"{path.name}: unexpected line {raw!r}"
        key, _, value = line.partition("=")
        found.append((section, key.strip(), value.strip()))
    return found


def _values(path: Path, section: str, key: str) -> list[str]:
    return [v for s, k, v in _settings(path) if (s, k) == (section, key)]


def _words(path: Path, section: str, key: str) -> set[str]:
    return {word for value in _values(path, section, key) for word in value.split()}


def _install(tmp_path: Path, stem: str) -> tuple[Path, Path]:
    """The stem's units under their unit names in tmp_path, ExecStart's binary replaced by a stand-in.

    `systemd-analyze verify` refuses a unit whose ExecStart binary does not exist, and the console script
    is not installed at /usr/local/bin on a test machine. So the copy runs tmp_path/bin/zfsglacier, an
    executable stub; nothing else in the unit changes (the replacement must hit exactly once).
    """
    stub = tmp_path / "bin" / "zfsglacier"
    stub.parent.mkdir(exist_ok=True)
    stub.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    stub.chmod(0o755)
    service, timer = UNITS[stem]
    text = service.read_text(encoding="utf-8")
    assert text.count(BINARY) == 1, f"{service.name}: expected {BINARY} exactly once (in ExecStart=)"
    service_copy, timer_copy = tmp_path / f"{stem}.service", tmp_path / f"{stem}.timer"
    service_copy.write_text(text.replace(BINARY, str(stub)), encoding="utf-8")
    shutil.copyfile(timer, timer_copy)
    return service_copy, timer_copy


def _verify(tool: str, *units: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool, "--man=no", "verify", *map(str, units)], capture_output=True, text=True,
                          check=False, timeout=60, cwd=units[0].parent)


@pytest.fixture(scope="module")
def analyze() -> str:
    return rig.need_tool("systemd-analyze")


@pytest.mark.parametrize("stem", sorted(UNITS))
def test_units_verify_without_a_complaint(analyze: str, tmp_path: Path, stem: str) -> None:
    service, timer = _install(tmp_path, stem)
    result = _verify(analyze, service, timer)
    # verify exits 0 on a line it ignores (unknown key, unparsable value): any message is a failure.
    assert result.returncode == 0 and not result.stderr.strip() and not result.stdout.strip(), (
        f"systemd-analyze verify {stem}.service {stem}.timer: exit {result.returncode}\n"
        f"{result.stdout}{result.stderr}")


def test_verify_reports_a_bad_line(analyze: str, tmp_path: Path) -> None:
    """The check above relies on verify printing something for a line it ignores: make sure this one does."""
    service, timer = _install(tmp_path, "zfsglacier")
    timer.write_text(timer.read_text(encoding="utf-8").replace("Persistent=true", "Persistent=maybe"),
                     encoding="utf-8")
    service.write_text(service.read_text(encoding="utf-8") + "NoSuchSetting=1\n", encoding="utf-8")
    result = _verify(analyze, service, timer)
    assert "Persistent" in result.stderr or "maybe" in result.stderr, result.stderr
    assert "NoSuchSetting" in result.stderr, result.stderr


@pytest.mark.parametrize("stem", sorted(UNITS))
def test_service_exposure_at_most_4(analyze: str, tmp_path: Path, stem: str) -> None:
    service, _ = _install(tmp_path, stem)
    result = subprocess.run([analyze, "security", "--offline=true", "--no-pager", str(service)],
                            capture_output=True, text=True, check=False, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    found = re.search(rf"Overall exposure level for {re.escape(service.name)}: (\d+(?:\.\d+)?)\b", result.stdout)
    assert found, f"no overall exposure in:\n{result.stdout}{result.stderr}"
    exposure = float(found.group(1))
    assert exposure <= MAX_EXPOSURE, f"{stem}.service: exposure {exposure} > {MAX_EXPOSURE}\n{result.stdout}"


def test_service_runs_the_backup_once_and_stops_cleanly() -> None:
    service = UNITS["zfsglacier"][0]
    assert _values(service, "Service", "Type") == ["oneshot"]
    assert _values(service, "Service", "ExecStart") == [EXEC_START]
    # zfsglacier aborts cleanly on SIGTERM: it alone gets it, and has time to clean up.
    assert _values(service, "Service", "KillMode") == ["mixed"]
    assert _values(service, "Service", "TimeoutStopSec") not in ([], ["0"], ["infinity"])


def test_sandbox_keeps_what_zfs_and_rclone_need() -> None:
    service = UNITS["zfsglacier"][0]
    for section, key, value in _settings(service):
        if key in FORBIDDEN:
            assert value.lower() in FALSE, f"[{section}] {key}={value}: see FORBIDDEN in this test"
        if key == "User":  # zfs needs root
            assert value in ("", "root", "0"), f"[{section}] User={value}: zfs needs root"
    # The OpenZFS ioctls and mount(2) check CAP_SYS_ADMIN.
    assert "CAP_SYS_ADMIN" in _words(service, "Service", "CapabilityBoundingSet")
    assert not any(w.startswith("~") for w in _words(service, "Service", "CapabilityBoundingSet"))
    # /dev/zfs stays reachable (OpenZFS); zfs receive mounts what it received.
    devices = [[*v.split(), "rwm"][:2] for v in _values(service, "Service", "DeviceAllow")]
    assert any(node == "/dev/zfs" and "r" in access and "w" in access for node, access in devices), devices
    allowed = [v for v in _values(service, "Service", "SystemCallFilter") if not v.startswith("~")]
    assert any("@mount" in v.split() for v in allowed)
    denied = {w for v in _values(service, "Service", "SystemCallFilter") if v.startswith("~") for w in v[1:].split()}
    assert "@mount" not in denied
    # rclone reaches the remote over IPv4/IPv6; zfs-fuse's zfs talks to its daemon over a unix socket.
    families = _words(service, "Service", "RestrictAddressFamilies")
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= families and not any(f.startswith("~") for f in families)


def test_timer_catches_up_and_spreads_the_start() -> None:
    timer = UNITS["zfsglacier"][1]
    assert _values(timer, "Timer", "Persistent") in (["true"], ["yes"])
    delay = _values(timer, "Timer", "RandomizedDelaySec")
    assert len(delay) == 1 and delay[0] not in ("", "0", "0s"), delay
    assert _values(timer, "Timer", "OnCalendar")
    assert _values(timer, "Install", "WantedBy") == ["timers.target"]


def _comparable(path: Path, stem: str) -> list[str]:
    """The file's lines; a Unit= line must name the service of the same stem, and compares as a placeholder."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("Unit="):
            assert line.strip() == f"Unit={stem}.service", f"{path.name}: {line.strip()} starts another service"
            lines[i] = "Unit=<the service of the same name>"
    return lines


def test_example_copies_say_the_same() -> None:
    (service, timer), (example_service, example_timer) = UNITS["zfsglacier"], UNITS["glacier-backup"]
    assert example_service.read_bytes() == service.read_bytes(), (
        f"{example_service.name} differs from {service.name}: copy it over")
    assert _comparable(example_timer, "glacier-backup") == _comparable(timer, "zfsglacier"), (
        f"{example_timer.name} differs from {timer.name} (beyond its Unit= line): copy it over")


def test_the_drill_runs_weekly_in_the_backups_sandbox() -> None:
    (backup, _), (drill, timer) = UNITS["zfsglacier"], UNITS["zfsglacier-verify"]
    assert _values(drill, "Service", "ExecStart") == [f"{BINARY} verify --drill --config /etc/zfsglacier/config.ini"]
    differing = {"Description", "ExecStart"}
    assert [x for x in _settings(drill) if x[1] not in differing] == \
        [x for x in _settings(backup) if x[1] not in differing], "the drill's sandbox is the backup's"
    assert _values(timer, "Timer", "OnCalendar") == ["weekly"]
    assert _values(timer, "Timer", "Persistent") == ["true"]
    assert _values(timer, "Timer", "RandomizedDelaySec") not in ([], ["0"])
    assert _values(timer, "Install", "WantedBy") == ["timers.target"]
