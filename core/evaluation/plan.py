"""Running a plan: every (noise level, method, fraction) cell, cached on disk.

:func:`run_plan` builds one :class:`~.protocol.Evaluator` per label-noise level and
evaluates every method at every fraction. Each finished cell is stored as
``<cache_dir>/<key>.json.gz`` where ``key`` is the SHA-256 of: a cache format version,
the digest of the feature arrays used (selection + evaluation models, labels, split,
paths), the selection models, the evaluation model, the method, its validated parameters,
the budget strategy, the fraction and the evaluation configuration (trainer and
parameters, seeds, hold-out, noise rate and seed, confidence). Re-running a finished
plan therefore only reads the cache (``stats["cells_computed"] == 0``).
"""

from __future__ import annotations

import datetime as _dt
import gzip
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import CoresetError
from ..features import FeatureSet
from ..provenance import machine_description, package_versions
from ..workspace import atomic_write_bytes
from .protocol import CellResult, EvalConfig, Evaluator, default_selection_models, features_digest, method_label
from .report import EvaluationReport

CACHE_VERSION = 1

# progress(done, total, description)
PlanProgress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class MethodSpec:
    """A selector with its budget strategy and parameters (``ram_apl@difficulty``)."""

    method: str
    budget: str = "paper"
    params: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return method_label(self.method, self.budget)

    @classmethod
    def parse(cls, text: str, default_budget: str = "paper", params: Mapping[str, Any] | None = None) -> MethodSpec:
        """``"ram_apl"`` or ``"ram_apl@difficulty"`` -> a validated spec."""
        from ..selection import BUDGET_STRATEGIES, get_selector

        name, _, budget = text.strip().partition("@")
        budget = budget.strip() or default_budget
        name = name.strip()
        spec = get_selector(name)  # raises on unknown names
        if budget not in BUDGET_STRATEGIES or budget == "manual":
            raise CoresetError(
                f"Method {text!r}: budget must be one of {', '.join(b for b in BUDGET_STRATEGIES if b != 'manual')}."
            )
        validated = spec.make_params(dict(params or {})).to_dict()
        return cls(name, budget, validated)


def parse_methods(
    text: str | Sequence[str], default_budget: str = "paper", params: Mapping[str, Mapping[str, Any]] | None = None
) -> list[MethodSpec]:
    """Comma-separated method specs; ``params[method]`` are that method's parameters."""
    items = text.split(",") if isinstance(text, str) else list(text)
    specs, seen = [], set()
    params = dict(params or {})
    for item in items:
        if not item.strip():
            continue
        spec = MethodSpec.parse(item, default_budget, params.get(item.strip().partition("@")[0].strip()))
        if spec.label not in seen:
            seen.add(spec.label)
            specs.append(spec)
    if not specs:
        raise CoresetError("No selection method given (e.g. --methods ram_apl,random).")
    return specs


def parse_fractions(text: str | Sequence[float]) -> list[float]:
    """``"0.01,0.1"`` -> ``[0.01, 0.1]`` (each in (0, 1], duplicates removed, order kept)."""
    from ..selection import check_fraction

    items = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for item in items:
        if isinstance(item, str) and not item.strip():
            continue
        p = check_fraction(item.strip() if isinstance(item, str) else item)
        if p not in out:
            out.append(p)
    if not out:
        raise CoresetError("No fraction given (e.g. --fractions 0.1,0.3).")
    return out


def cell_key(
    digest: str,
    selection_models: Sequence[str],
    eval_model: str | None,
    spec: MethodSpec,
    fraction: float,
    config: EvalConfig,
) -> str:
    payload = {
        "v": CACHE_VERSION,
        "features": digest,
        "selection_models": list(selection_models),
        "eval_model": eval_model,
        "method": spec.method,
        "budget": spec.budget,
        "params": spec.params,
        "fraction": float(fraction),
        "config": config.to_dict(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _read_cell(path: Path) -> CellResult | None:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            return CellResult.from_dict(json.load(fh))
    except (OSError, EOFError, ValueError, KeyError, TypeError):
        return None  # unreadable or stale: recompute


def _write_cell(path: Path, cell: CellResult) -> None:
    data = json.dumps(cell.to_dict(), allow_nan=False, default=str).encode("utf-8")
    atomic_write_bytes(path, gzip.compress(data, compresslevel=6, mtime=0))


def dataset_info(fs: FeatureSet) -> dict:
    """The dataset block of the report, from the features' meta when the embedder wrote it."""
    ds = dict(fs.meta.get("dataset", {})) if isinstance(fs.meta, dict) else {}
    ds.setdefault("rows", len(fs))
    return ds


def run_plan(
    fs: FeatureSet,
    methods: Sequence[MethodSpec | str],
    fractions: Sequence[float],
    config: EvalConfig | None = None,
    *,
    noise_levels: Sequence[float] | None = None,
    selection_models: Sequence[str] | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: str = "auto",
    progress: PlanProgress | None = None,
    kind: str = "run",
    features_path: str | None = None,
    extra_timing: Mapping[str, float] | None = None,
) -> EvaluationReport:
    """Evaluate every method at every fraction and noise level; return the report.

    Args:
        fs: the feature set (selection models, evaluation model, labels, split, paths).
        methods: :class:`MethodSpec` or strings (``ram_apl``, ``ram_apl@difficulty``).
            ``random`` is added (first) when missing: it is the baseline.
        fractions: fractions p in (0, 1].
        config: the evaluation configuration (default :class:`EvalConfig()`).
        noise_levels: label-noise rates (default ``[config.label_noise]``).
        selection_models: features the selectors use (default: every model but the
            evaluation model, see :func:`~.protocol.default_eval_model`).
        cache_dir: folder of finished cells (``None``: no cache).
        progress: ``progress(done, total, description)`` after each cell.
    """
    started = time.perf_counter()
    config = config or EvalConfig()
    specs = [m if isinstance(m, MethodSpec) else MethodSpec.parse(m) for m in methods]
    if not any(s.method == "random" and s.budget == "paper" for s in specs):
        specs.insert(0, MethodSpec("random"))
    fractions = parse_fractions(list(fractions))
    levels = [float(config.label_noise)] if noise_levels is None else [float(x) for x in noise_levels]
    if not levels:
        raise CoresetError("No label-noise level given.")
    # Resolve the models once, as the Evaluator would, to key the cache.
    selection_models = list(selection_models) if selection_models else default_selection_models(fs.models, config)
    cache = Path(cache_dir) if cache_dir is not None else None
    total = len(levels) * len(specs) * len(fractions)
    done = 0
    cells: list[CellResult] = []
    computed = cached = fits = 0
    t_select = t_train = 0.0
    protocols = []
    digest = None
    for level in levels:
        cfg = replace(config, label_noise=level)
        ev = Evaluator(fs, cfg, selection_models, device=device)
        if digest is None:
            used = list(dict.fromkeys(list(selection_models) + ([ev.eval_model] if ev.eval_model else [])))
            digest = features_digest(fs, used)
        protocols.append(ev.describe())
        for spec in specs:
            for p in fractions:
                key = cell_key(digest, selection_models, ev.eval_model, spec, p, cfg)
                path = cache / f"{key}.json.gz" if cache is not None else None
                cell = _read_cell(path) if path is not None and path.is_file() else None
                if cell is None:
                    cell = ev.evaluate(spec.method, p, spec.budget, spec.params, allow_empty=True)
                    cell.key = key
                    t_select += cell.timing_s.get("select", 0.0)
                    t_train += cell.timing_s.get("train", 0.0)
                    if path is not None:
                        _write_cell(path, cell)
                    computed += 1
                else:
                    cached += 1
                cells.append(cell)
                done += 1
                if progress is not None:
                    progress(done, total, f"noise {level:g} {spec.label} p={p:g}")
        fits += ev.fits
    first = protocols[0]
    protocol = {
        k: v for k, v in first.items() if k not in ("noise", "selection_models", "eval_model", "eval_also_selects")
    }
    protocol["noise"] = [p["noise"] for p in protocols]
    meta_models = fs.meta.get("models", {}) if isinstance(fs.meta, dict) else {}
    features = {
        "path": features_path,
        "digest": digest,
        "available": fs.models,
        "models": meta_models,
        "selection_models": first["selection_models"],
        "eval_model": first["eval_model"],
        "eval_also_selects": first["eval_also_selects"],
    }
    timing = {"total": time.perf_counter() - started, "select": t_select, "train": t_train}
    timing.update(dict(extra_timing or {}))
    return EvaluationReport(
        kind=kind,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        dataset=dataset_info(fs),
        features=features,
        protocol=protocol,
        config=replace(config, label_noise=levels[0]).to_dict(),
        plan={
            "methods": [s.label for s in specs],
            "method_params": {s.label: s.params for s in specs},
            "fractions": fractions,
            "noise_levels": levels,
        },
        cells=cells,
        versions=package_versions(),
        machine=machine_description(),
        timing_s=timing,
        stats={"cells_computed": computed, "cells_cached": cached, "fits": fits},
    )


__all__ = ["CACHE_VERSION", "MethodSpec", "cell_key", "parse_fractions", "parse_methods", "run_plan"]


def single_cell_report(
    evaluator: Evaluator,
    cell: CellResult,
    fs: FeatureSet,
    *,
    started: float,
    features_path: str | None = None,
    selection_file: str | None = None,
    embedding_s: float = 0.0,
) -> EvaluationReport:
    """The :class:`EvaluationReport` of one evaluated selection (``coreset-studio evaluate``, the app).

    ``started`` is the :func:`time.perf_counter` value when the work began (the report's
    total time runs from there); ``features_path``/``selection_file`` are recorded when known.
    """
    config = evaluator.config
    desc = evaluator.describe()
    protocol = {
        k: v for k, v in desc.items() if k not in ("noise", "selection_models", "eval_model", "eval_also_selects")
    }
    protocol["noise"] = [desc["noise"]]
    used = list(dict.fromkeys(evaluator.selection_models + ([evaluator.eval_model] if evaluator.eval_model else [])))
    return EvaluationReport(
        kind="evaluate",
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        dataset=dataset_info(fs),
        features={
            "path": features_path,
            "digest": features_digest(fs, used),
            "available": fs.models,
            "models": fs.meta.get("models", {}) if isinstance(fs.meta, dict) else {},
            "selection_models": evaluator.selection_models,
            "eval_model": evaluator.eval_model,
            "eval_also_selects": evaluator.eval_also_selects,
        },
        protocol=protocol,
        config=config.to_dict(),
        plan={
            "methods": [cell.label],
            "method_params": {cell.label: cell.params},
            "fractions": [cell.fraction],
            "noise_levels": [config.label_noise],
            "selection_file": selection_file,
        },
        cells=[cell],
        versions=package_versions(),
        machine=machine_description(),
        timing_s={
            "total": time.perf_counter() - started,
            "embedding": embedding_s,
            "select": cell.timing_s.get("select", 0.0),
            "train": cell.timing_s.get("train", 0.0),
        },
        stats={"cells_computed": 1, "cells_cached": 0, "fits": evaluator.fits},
    )
