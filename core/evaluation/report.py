"""The saved result of an evaluation or a whole run: :class:`EvaluationReport` (report.json).

A report holds everything needed to reproduce and read the numbers: the dataset
fingerprint, the feature models and their weights identities, the selection and
evaluation models, the protocol (split, hold-out rows, label noise and flipped rows), the
evaluation configuration with every seed, the package versions and the machine, the
timings, and one :class:`~core.evaluation.protocol.CellResult` per evaluated selection
(selector, parameters, budget table, accuracies per seed, per-class accuracies, the
difference to random with its interval). ``to_dict``/``from_dict`` round-trip it exactly
through JSON. Accuracies are stored in [0, 1]; tables show percent.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import CoresetError
from ..workspace import atomic_write_text
from .protocol import CellResult, EvalConfig
from .statistics import mean_ranks

REPORT_FORMAT = 1


def _pct(v: float | None) -> float:
    return math.nan if v is None or not math.isfinite(v) else 100.0 * v


@dataclass(eq=False)
class EvaluationReport:
    """What ``coreset-studio evaluate`` and ``run`` save as ``report.json``.

    Attributes:
        kind: ``evaluate`` (one selection) or ``run`` (a plan).
        created: ISO 8601 time (UTC).
        dataset: name, root, source, fingerprint, images (from the features' meta when known).
        features: ``digest`` (SHA-256 of the arrays used), ``available`` models, ``models``
            (identities and weights from the embedder), ``selection_models``, ``eval_model``,
            ``eval_also_selects``, ``path`` (features file, if any).
        protocol: the split (source, pool/test sizes, hold-out fraction, seed and rows),
            classes, test samples per class, and per noise level: rate, seed, flipped rows.
        config: :meth:`EvalConfig.to_dict` (trainer and parameters, seeds, hold-out, ...).
        plan: methods (labels), fractions, noise levels.
        cells: the evaluated selections.
        versions: package versions; machine: the machine description.
        timing_s: wall seconds (``total``, ``embedding``, ``select``, ``train``).
        stats: ``cells_computed``, ``cells_cached``, ``fits``.
    """

    kind: str
    created: str
    dataset: dict
    features: dict
    protocol: dict
    config: dict
    plan: dict
    cells: list[CellResult]
    versions: dict = field(default_factory=dict)
    machine: dict = field(default_factory=dict)
    timing_s: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ round trip
    def to_dict(self, include_tables: bool = False) -> dict:
        cells = []
        for c in self.cells:
            d = c.to_dict()
            if not include_tables:
                d["selection"] = {k: v for k, v in d["selection"].items() if k != "table"}
            cells.append(d)
        return {
            "format": REPORT_FORMAT,
            "kind": self.kind,
            "created": self.created,
            "dataset": self.dataset,
            "features": self.features,
            "protocol": self.protocol,
            "config": self.config,
            "plan": self.plan,
            "cells": cells,
            "versions": self.versions,
            "machine": self.machine,
            "timing_s": self.timing_s,
            "stats": self.stats,
        }

    def to_json(self, include_tables: bool = False, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(include_tables), indent=indent, allow_nan=False, default=_json_default)

    @classmethod
    def from_dict(cls, d: dict) -> EvaluationReport:
        if d.get("format") != REPORT_FORMAT:
            raise CoresetError(f"Unsupported report format {d.get('format')!r} (expected {REPORT_FORMAT}).")
        return cls(
            kind=d["kind"],
            created=d["created"],
            dataset=d["dataset"],
            features=d["features"],
            protocol=d["protocol"],
            config=d["config"],
            plan=d["plan"],
            cells=[CellResult.from_dict(c) for c in d["cells"]],
            versions=d.get("versions", {}),
            machine=d.get("machine", {}),
            timing_s=d.get("timing_s", {}),
            stats=d.get("stats", {}),
        )

    @classmethod
    def from_json(cls, text: str) -> EvaluationReport:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | os.PathLike, include_tables: bool = False) -> Path:
        return atomic_write_text(path, self.to_json(include_tables))

    @classmethod
    def load(cls, path: str | os.PathLike) -> EvaluationReport:
        path = Path(path)
        try:
            return cls.from_json(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, KeyError) as exc:
            raise CoresetError(f"Cannot read report {path}: {exc}") from exc

    @property
    def eval_config(self) -> EvalConfig:
        return EvalConfig.from_dict(self.config)

    # ------------------------------------------------------------------ tables
    def results_frame(self) -> pd.DataFrame:
        """One row per cell; accuracies in percent (mean ± sample std over the seeds).

        Columns: noise, method, fraction, kept, acc, acc_std, random, random_std, diff,
        ci_low, ci_high, ci_kind, full, flipped_kept (method, mean over seeds),
        flipped_kept_random, deterministic, chosen (``auto``: the method it picked; else empty).
        """
        rows = []
        for c in self.cells:
            rows.append(
                {
                    "noise": c.label_noise,
                    "method": c.label,
                    "fraction": c.fraction,
                    "kept": int(sum(c.budget_counts.values())),
                    "acc": _pct(c.method_result.mean),
                    "acc_std": _pct(c.method_result.std),
                    "random": _pct(c.random.mean),
                    "random_std": _pct(c.random.std),
                    "diff": _pct(c.difference.diff),
                    "ci_low": _pct(c.difference.low),
                    "ci_high": _pct(c.difference.high),
                    "ci_kind": c.difference.kind,
                    "full": _pct(c.full.mean),
                    "flipped_kept": float(pd.Series(c.method_result.flipped_kept).mean()),
                    "flipped_kept_random": float(pd.Series(c.random.flipped_kept).mean()),
                    "deterministic": c.deterministic,
                    "chosen": (c.selection.get("details") or {}).get("chosen", "") if c.method == "auto" else "",
                }
            )
        return pd.DataFrame(rows)

    def mean_ranks(self) -> dict[float, dict[str, float]]:
        """Per noise level: mean rank of each method's mean accuracy over the fractions (1 = best)."""
        frame = self.results_frame()
        out: dict[float, dict[str, float]] = {}
        if frame.empty:
            return out
        for noise, sub in frame.groupby("noise", sort=True):
            pivot = sub.pivot_table(index="method", columns="fraction", values="acc", aggfunc="mean")
            out[float(noise)] = mean_ranks({m: pivot.loc[m].tolist() for m in pivot.index})
        return out

    def format_table(self) -> str:
        """The results table as plain text (what the CLI prints)."""
        frame = self.results_frame()
        if frame.empty:
            return "(no results)"
        lines = [
            f"{'noise':>5} {'method':<24} {'frac':>6} {'kept':>6} {'acc % (mean±std)':>17} "
            f"{'random %':>13} {'diff [95% CI]':>24} {'full %':>7}"
        ]

        def ms(m, s):
            return f"{m:6.2f}±{s:5.2f}" if math.isfinite(s) else f"{m:6.2f}      "

        for r in frame.itertuples():
            ci = (
                f"{r.diff:+6.2f} [{r.ci_low:+6.2f},{r.ci_high:+6.2f}]"
                if math.isfinite(r.ci_low)
                else f"{r.diff:+6.2f} [   n/a]"
            )
            if r.method == "random":
                ci = "(baseline)"
            name = f"{r.method} ({r.chosen})" if r.chosen else r.method
            lines.append(
                f"{r.noise:5.2f} {name:<24} {r.fraction:6.3f} {r.kept:6d} {ms(r.acc, r.acc_std):>17} "
                f"{ms(r.random, r.random_std):>13} {ci:>24} {r.full:7.2f}"
            )
        return "\n".join(lines)


def _json_default(value: Any):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


__all__ = ["EvaluationReport", "REPORT_FORMAT"]
