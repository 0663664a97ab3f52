"""Selection runs saved in the workspace: a run saves and reloads with its config.

A *run* is one selection (its config: method, fraction, budget, seed, parameters, manual
counts, the models and the embedding it ran on) with its result, the hand edits made to it
and the evaluations made of it. The app saves every run here, so a restart of the server
keeps them; ``RunStore.list_runs(fingerprint)`` is the run list of one dataset.

Layout under ``<workspace>/runs/<dataset fingerprint>/<run folder>/`` (the run folder is a
sha256 of the run's key, so any run id is a safe folder name)::

    config.json          {"run_id", "key", "config": {...}, "created", "versions"}
    selection.json       SelectionResult.to_json(include_table=False)
    table.parquet        the per-sample table (SelectionResult.table)
    edits.json           {"added": [rows], "dropped": [rows]}
    evaluations/<key>/   meta.json ({"note", "created"}) and the report files (report.json, ...)

Every file is written atomically (temp file + rename); a run folder without a readable
``config.json`` and ``selection.json`` is not listed (it is reported by :meth:`RunStore.problems`),
and one run's broken file never hides another run. Nothing here imports Streamlit.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .selection.result import SelectionResult
from .workspace import atomic_write_bytes, atomic_write_text, resolve_workspace

RUNS_DIR = "runs"
_FINGERPRINT = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_EVAL_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
REPORT_FILES = ("report.json", "report.html", "subset.csv", "scores.csv")


@dataclass(frozen=True)
class RunRecord:
    """One saved run as listed: its id, key, config, when it was made, and where it lives."""

    run_id: str
    key: str
    config: dict
    created: float
    folder: Path
    evaluations: tuple[str, ...] = ()  # evaluation keys, oldest first
    added: frozenset[int] = frozenset()  # its hand edits: rows added to / dropped from the subset
    dropped: frozenset[int] = frozenset()

    @property
    def n_edits(self) -> int:
        return len(self.added) + len(self.dropped)


@dataclass(frozen=True)
class SavedEvaluation:
    """An evaluation of a run read back: its key, note and report files (name -> bytes)."""

    key: str
    note: str
    files: dict[str, bytes] = field(default_factory=dict)
    created: float = 0.0


def _folder_name(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:20]


class RunStore:
    """The runs of a workspace (``<workspace>/runs``); see the module docstring for the layout."""

    def __init__(self, workspace: str | Path | None = None) -> None:
        self.root = resolve_workspace(workspace) / RUNS_DIR
        self._problems: list[str] = []

    # ------------------------------------------------------------------ paths
    def _dataset_dir(self, fingerprint: str) -> Path:
        if not _FINGERPRINT.match(str(fingerprint)):
            raise ValueError(f"not a dataset fingerprint: {fingerprint!r}")
        return self.root / fingerprint

    def folder(self, fingerprint: str, key: str) -> Path:
        return self._dataset_dir(fingerprint) / _folder_name(key)

    # ------------------------------------------------------------------ runs
    def save_run(
        self, fingerprint: str, run_id: str, key: str, config: Mapping[str, Any], result: SelectionResult
    ) -> Path:
        """Save (or overwrite) a run: its config and its result. ``key`` identifies the run
        (what determines its result, e.g. the embedding key and the config); ``run_id`` is the
        name people see. Returns the run folder."""
        folder = self.folder(fingerprint, key)
        buf = io.BytesIO()
        result.table.to_parquet(buf, index=False)
        atomic_write_bytes(folder / "table.parquet", buf.getvalue())
        atomic_write_text(folder / "selection.json", result.to_json(include_table=False))
        meta = {
            "run_id": run_id,
            "key": key,
            "config": dict(config),
            "created": time.time(),
            "versions": dict(result.versions),
        }
        atomic_write_text(folder / "config.json", json.dumps(meta, sort_keys=True, default=str))
        return folder

    def _read_meta(self, folder: Path) -> dict | None:
        try:
            meta = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            if not isinstance(meta, dict) or not {"run_id", "key", "config"} <= set(meta):
                raise ValueError("missing run_id/key/config")
            if not (folder / "selection.json").is_file():
                raise ValueError("selection.json is missing")
            return meta
        except (OSError, ValueError) as exc:
            self._problems.append(f"{folder}: not a readable saved run ({exc}); delete the folder to drop it")
            return None

    def list_runs(self, fingerprint: str) -> list[RunRecord]:
        """The saved runs of one dataset, oldest first (unreadable folders are skipped and
        reported by :meth:`problems`)."""
        self._problems = []
        base = self._dataset_dir(fingerprint)
        if not base.is_dir():
            return []
        out = []
        for folder in sorted(p for p in base.iterdir() if p.is_dir()):
            meta = self._read_meta(folder)
            if meta is None:
                continue
            evals = folder / "evaluations"
            keys = (
                tuple(
                    p.name
                    for p in sorted(
                        (p for p in evals.iterdir() if (p / "meta.json").is_file()),
                        key=lambda p: ((p / "meta.json").stat().st_mtime_ns, p.name),
                    )
                )
                if evals.is_dir()
                else ()
            )
            added, dropped = self.load_edits_in(folder)
            out.append(
                RunRecord(
                    str(meta["run_id"]),
                    str(meta["key"]),
                    dict(meta["config"]),
                    float(meta.get("created", 0.0)),
                    folder,
                    keys,
                    frozenset(added),
                    frozenset(dropped),
                )
            )
        return sorted(out, key=lambda r: (r.created, r.run_id))

    def problems(self) -> list[str]:
        """What the last :meth:`list_runs` could not read (one line per folder)."""
        return list(self._problems)

    def load_result(self, fingerprint: str, key: str) -> SelectionResult | None:
        """The saved result of the run ``key`` (None when it is not saved or unreadable)."""
        folder = self.folder(fingerprint, key)
        try:
            d = json.loads((folder / "selection.json").read_text(encoding="utf-8"))
            result = SelectionResult.from_dict(d)
            result.table = pd.read_parquet(folder / "table.parquet")
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return result

    def delete_run(self, fingerprint: str, key: str) -> bool:
        """Delete a saved run with its edits and evaluations; True if it existed."""
        folder = self.folder(fingerprint, key)
        if not folder.is_dir():
            return False
        shutil.rmtree(folder)
        return True

    # ------------------------------------------------------------------ edits
    def save_edits(self, fingerprint: str, key: str, added, dropped) -> None:
        """Save the hand edits of a saved run (row indices added to / dropped from its subset)."""
        folder = self.folder(fingerprint, key)
        if not (folder / "config.json").is_file():
            return  # not a saved run (it was deleted): nothing to attach the edits to
        atomic_write_text(
            folder / "edits.json",
            json.dumps({"added": sorted(int(i) for i in added), "dropped": sorted(int(i) for i in dropped)}),
        )

    @staticmethod
    def load_edits_in(folder: Path) -> tuple[set[int], set[int]]:
        try:
            d = json.loads((folder / "edits.json").read_text(encoding="utf-8"))
            return {int(i) for i in d.get("added", [])}, {int(i) for i in d.get("dropped", [])}
        except (OSError, ValueError, TypeError, AttributeError):
            return set(), set()

    def load_edits(self, fingerprint: str, key: str) -> tuple[set[int], set[int]]:
        """The saved hand edits ``(added, dropped)`` of a run (empty when none)."""
        return self.load_edits_in(self.folder(fingerprint, key))

    # ------------------------------------------------------------------ evaluations
    def save_evaluation(
        self, fingerprint: str, key: str, eval_key: str, files: Mapping[str, bytes], note: str = ""
    ) -> None:
        """Save an evaluation of a saved run: its note and report files (``REPORT_FILES``)."""
        if not _EVAL_KEY.match(eval_key):
            raise ValueError(f"not an evaluation key: {eval_key!r}")
        folder = self.folder(fingerprint, key)
        if not (folder / "config.json").is_file():
            return
        target = folder / "evaluations" / eval_key
        for name in REPORT_FILES:
            if name in files:
                atomic_write_bytes(target / name, files[name])
        atomic_write_text(target / "meta.json", json.dumps({"note": note, "created": time.time()}))

    def load_evaluation(self, fingerprint: str, key: str, eval_key: str) -> SavedEvaluation | None:
        """A saved evaluation (None when absent or unreadable)."""
        if not _EVAL_KEY.match(eval_key):
            return None
        target = self.folder(fingerprint, key) / "evaluations" / eval_key
        try:
            meta = json.loads((target / "meta.json").read_text(encoding="utf-8"))
            files = {n: (target / n).read_bytes() for n in REPORT_FILES if (target / n).is_file()}
        except (OSError, ValueError):
            return None
        if "report.json" not in files:
            return None
        return SavedEvaluation(eval_key, str(meta.get("note", "")), files, float(meta.get("created", 0.0)))


__all__ = ["REPORT_FILES", "RunRecord", "RunStore", "SavedEvaluation"]
