"""The code map in zfsglacier/__init__.py holds: every module imports only from its own layer's
package or from the layers below, and the side-by-side packages (stream and policy, remote and zfs)
never import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "zfsglacier"
# Top to bottom; units on one line share a floor and may not import each other (except within one unit).
FLOORS: tuple[tuple[str, ...], ...] = (
    ("__main__",),
    ("cli",),
    ("commands",),
    ("stream", "policy"),
    ("remote", "zfs"),
    ("config", "config_values", "proc", "signals", "lock", "background", "threads"),
    ("codec", "errors", "names", "units", "__init__"),
)
FLOOR = {unit: level for level, units in enumerate(FLOORS) for unit in units}
CORE = {"config", "config_values", "proc", "signals", "lock", "background", "threads"}
GROUND = {"codec", "errors", "names", "units", "__init__"}


def unit_of(path: Path) -> str:
    """The unit a file belongs to: its subpackage, or its own name at the top."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def imported_units(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (the package imports itself by absolute names)"
            if node.module == "zfsglacier":
                found |= {"__init__" if alias.name == "__version__" else alias.name for alias in node.names}
            elif node.module and node.module.startswith("zfsglacier."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("zfsglacier.")}
    return found


def violations(path: Path, mine: str) -> list[str]:
    """The imports of `path` (a module of unit `mine`) that do not go down."""
    found = []
    for other in sorted(imported_units(path) - {mine}):
        if other not in FLOOR:
            found.append(f"imports zfsglacier.{other}, which is on no floor")
        elif {mine, other} <= CORE or {mine, other} <= GROUND:
            continue  # the modules of the core (and of the ground) may use each other, without circles
        elif FLOOR[other] <= FLOOR[mine]:
            found.append(f"{mine} (floor {FLOOR[mine]}) imports zfsglacier.{other} (floor {FLOOR[other]})")
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_unit_has_a_floor() -> None:
    assert {unit_of(path) for path in MODULES} == set(FLOOR)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_down(path: Path) -> None:
    """Imports go down only (see the code map in zfsglacier/__init__.py)."""
    assert violations(path, unit_of(path)) == []


def test_the_check_reports_imports_up_and_sideways(tmp_path: Path) -> None:
    source = tmp_path / "example.py"
    source.write_text("from zfsglacier.stream.progress import Progress\nfrom zfsglacier.zfs import cmd\n"
                      "from zfsglacier.remote.manifest import Manifest\nfrom zfsglacier import errors\n")
    assert violations(source, "remote") == [
        "remote (floor 4) imports zfsglacier.stream (floor 3)",
        "remote (floor 4) imports zfsglacier.zfs (floor 4)",
    ]
    assert violations(source, "commands") == []
