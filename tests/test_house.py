"""The shape of the house, checked: SQL only in the store, imports pointing down, small modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.files import ROOT

PACKAGE = ROOT / "publisher"
# What each room may import of ours (docs/architecture.md).
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "briefs": {"core"},
    "store": {"core"},
    "render": {"core", "briefs"},
    "mail": {"core", "render"},
    "publish": {"core", "briefs", "store", "render"},
    "delivery": {"core", "store", "mail", "render"},
    "web": {"core", "briefs", "store", "render", "mail", "publish", "delivery"},
}
MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


def _room(path: Path) -> str | None:
    rel = path.relative_to(PACKAGE).parts
    return rel[0] if len(rel) > 1 else None


def _imports(path: Path) -> list[tuple[str, int]]:
    """Absolute names of the modules ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    package = ["publisher", *path.relative_to(PACKAGE).parts[:-1]]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((name, node.lineno))
    return out


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_store_speaks_sql(path: Path) -> None:
    if _room(path) == "store":
        return
    bad = [f"{name} (line {line})" for name, line in _imports(path) if name.split(".")[0] == "sqlalchemy"]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize("path", [p for p in MODULES if _room(p) in ALLOWED], ids=lambda p: str(p.relative_to(ROOT)))
def test_rooms_import_only_rooms_below(path: Path) -> None:
    room = _room(path)
    assert room is not None
    allowed = ALLOWED[room] | {room}
    bad = []
    for name, line in _imports(path):
        parts = name.split(".")
        if parts[0] == "publisher" and len(parts) > 1 and parts[1] in ALLOWED and parts[1] not in allowed:
            bad.append(f"{name} (line {line})")
        if parts[:2] in (["publisher", "cli"], ["publisher", "service"]):
            bad.append(f"{name} (line {line})")
    assert not bad, f"{path.relative_to(ROOT)} ({room}) imports {bad}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_functions_stay_small(path: Path) -> None:
    lines = path.read_text().count("\n")
    assert lines <= 500, f"{path.relative_to(ROOT)} has {lines} lines"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            assert length <= 80, f"{path.relative_to(ROOT)}:{node.lineno} {node.name} is {length} lines"


def test_the_wheel_lists_every_package() -> None:
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in PACKAGE.rglob("__init__.py")
    } | {"publisher.templates"}
    # The template folders too: setuptools warns of each one it would install as mere data.
    templates = ROOT / "templates"
    found |= {
        ".".join(("publisher", "templates", *d.relative_to(templates).parts))
        for d in templates.rglob("*") if d.is_dir() and "__pycache__" not in d.parts
    }
    assert listed == found
