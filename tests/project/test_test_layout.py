"""The suite's layout mirrors the library: a folder per library unit (and cli, pages, app_ui, browser, project,
utilities), tests named for features, shared code in tests/helpers only."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BESIDES = {"cli", "pages", "app_ui", "browser", "project", "utilities"}


def _units() -> set[str]:
    lib = ROOT / "kd_analysis"
    return {p.name for p in lib.iterdir() if p.is_dir() and (p / "__init__.py").exists()}


def test_every_test_file_sits_in_a_folder_for_a_library_unit_or_a_surface():
    folders = {p.parent.name for p in (ROOT / "tests").rglob("test_*.py")}
    assert not list((ROOT / "tests").glob("test_*.py")), "a test file at the top of tests/: give it its unit's folder"
    assert folders <= _units() | BESIDES, folders - _units() - BESIDES


def test_no_test_file_imports_another():
    offenders = []
    for path in (ROOT / "tests").rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.startswith("tests.") and ".test_" in n]
    assert not offenders, offenders
