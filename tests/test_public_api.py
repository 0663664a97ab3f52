"""``core``'s public API: every exported name resolves to its module's object, is documented,
and ``import core`` alone stays light (no torch)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import core

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", [n for n in core.__all__ if n != "__version__"])
def test_exported_name_is_its_module_object_and_documented(name):
    import importlib

    value = getattr(core, name)
    assert value is getattr(importlib.import_module(core._EXPORTS[name]), name)
    if callable(value):
        assert (value.__doc__ or "").strip(), f"core.{name} has no docstring"


def test_the_names_the_issue_asks_for_are_there():
    for name in ("load_dataset", "embed_dataset", "run_selection", "Evaluator", "list_selectors", "list_embedders"):
        assert name in core.__all__ and name in dir(core)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        core.nope  # noqa: B018


def test_import_core_does_not_load_torch():
    code = "import sys, core; print('torch' in sys.modules, 'streamlit' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
    ).stdout.split()
    assert out == ["False", "False"]


def test_the_package_is_marked_typed():
    assert (ROOT / "core" / "py.typed").is_file()
    assert 'core = ["py.typed"]' in (ROOT / "pyproject.toml").read_text()


def _imports(path: Path) -> set[str]:
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_cli_and_the_app_call_core_and_never_each_other():
    app_imports = set().union(*(_imports(p) for p in (ROOT / "app").rglob("*.py")))
    assert not [m for m in app_imports if m == "core.cli" or m.startswith("core.cli.")]
    core_imports = set().union(*(_imports(p) for p in (ROOT / "core").rglob("*.py")))
    assert not [m for m in core_imports if m.split(".")[0] in ("app", "streamlit")]
