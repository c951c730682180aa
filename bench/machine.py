"""What the numbers were measured on."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path

from zfsglacier.codec.registry import default_threads


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _tool_version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip("* ") if lines else "unknown"


def describe() -> dict[str, str | int | float]:
    return {
        "hostname": socket.gethostname(),
        "cores": os.cpu_count() or 1,
        "usable_cores": default_threads(),
        "cpu_model": cpu_model(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30), 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "zstandard": _version("zstandard"),
        "isal": _version("isal"),
        "zstd": _tool_version(["zstd", "--version"]),
        "pigz": _tool_version(["pigz", "--version"]),
        "gzip": _tool_version(["gzip", "--version"]),
    }


def one_line(machine: dict[str, str | int | float]) -> str:
    return (
        f"{machine['hostname']}: {machine['cores']} cores ({machine['usable_cores']} usable), {machine['cpu_model']}, "
        f"{machine['memory_gib']} GiB; Python {machine['python']}, zstandard {machine['zstandard']}, "
        f"isal {machine['isal']}; {machine['zstd']}; {machine['pigz']}; {machine['gzip']}"
    )
