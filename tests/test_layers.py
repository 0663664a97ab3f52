"""The layering rule: the library (``core``) never imports Streamlit or the app, not even
through another package. ruff's banned-import rule (pyproject, TID251) catches a direct
``import streamlit`` in ``core/``; this test imports every ``core`` module in a fresh
interpreter and looks at what ended up in ``sys.modules``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Imports the module given and, for a package, every module below it, then prints the modules imported and the ones
# under the forbidden top-level names. ``__main__`` modules run a program when imported: skipped.
_PROBE = """
import importlib, json, pkgutil, sys
pkg = importlib.import_module(sys.argv[1])
forbidden = sys.argv[2].split(",")
imported = [pkg.__name__]
for info in pkgutil.walk_packages(getattr(pkg, "__path__", []), pkg.__name__ + "."):
    if info.name.rsplit(".", 1)[-1] == "__main__":
        continue
    importlib.import_module(info.name)
    imported.append(info.name)
bad = sorted(m for m in sys.modules if m.split(".")[0] in forbidden)
print(json.dumps({"imported": imported, "forbidden": bad}))
"""


def _import_all(package: str, forbidden: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, package, ",".join(forbidden)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_core_never_imports_streamlit_or_the_app():
    found = _import_all("core", ["streamlit", "app"])
    # The walk really reached the leaves (so an empty list below is not vacuous).
    assert {"core.selection.auto", "core.evaluation.report", "core.cli.run", "core.export.html"} <= set(
        found["imported"]
    )
    assert found["forbidden"] == [], f"core imported {found['forbidden']}: the UI belongs in app/"


def test_the_probe_sees_an_imported_package():
    """The same probe on ``app`` finds streamlit: the check above can fail."""
    found = _import_all("app.hover", ["streamlit"])
    assert "streamlit" in found["forbidden"]
