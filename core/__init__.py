"""Coreset Studio: pick the small part of an image dataset worth training on.

The library never imports Streamlit; every step (load a dataset, embed it, select a
subset, evaluate, export) is callable from Python and from the ``coreset-studio`` CLI.

The public API, importable from ``core`` itself::

    import core

    ds = core.load_dataset("path/to/images")                    # folder, manifest, zip or "demo"
    run = core.embed_dataset(ds, ["effnet-lite0"])               # -> EmbeddingRun (.features: FeatureSet)
    fs = run.features
    pool, _ = core.selection_pool(fs)
    result = core.run_selection("auto", fs.features, fs.labels, 0.1, pool=pool)   # -> SelectionResult
    ev = core.Evaluator(fs, core.EvalConfig(seeds=(0, 1, 2)))
    cell = ev.evaluate("ram_apl", 0.1)                           # subset vs random vs full pool
    outcome = core.evaluate_result(fs, result)                   # report.json / report.html as bytes

Discovery: :func:`list_selectors` / :func:`get_selector` (selectors, their parameters and
capabilities), :func:`list_embedders` / :func:`embedder_names`, :func:`list_trainers`
(evaluation trainers). Every parameter set (selectors, trainers, :class:`EvalConfig`) is a
:class:`Params`: validated on construction, :meth:`Params.describe` gives its form.

``import core`` stays light: the names above are imported on first use (torch is loaded by
the selection and embedding parts only when they are touched).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> module it lives in (imported on first access).
_EXPORTS: dict[str, str] = {
    # datasets
    "Dataset": "core.datasets",
    "load_dataset": "core.datasets",
    "load_demo": "core.datasets",
    # embeddings
    "embed_dataset": "core.embedding",
    "EmbeddingRun": "core.embedding",
    "list_embedders": "core.embedders",
    "embedder_names": "core.embedders",
    "create_embedder": "core.embedders",
    "register_embedder": "core.embedders",
    "DEFAULT_EMBEDDER": "core.embedders",
    # features
    "FeatureSet": "core.features",
    "load_features": "core.features",
    "save_features": "core.features",
    # selection
    "run_selection": "core.selection",
    "SelectionResult": "core.selection",
    "list_selectors": "core.selection",
    "get_selector": "core.selection",
    "register_selector": "core.selection",
    "BUDGET_STRATEGIES": "core.selection",
    "selection_pool": "core.pool",
    "apply_edits": "core.selection.edit",
    # evaluation
    "Evaluator": "core.evaluation",
    "EvalConfig": "core.evaluation",
    "EvaluationReport": "core.evaluation",
    "run_plan": "core.evaluation",
    "list_trainers": "core.evaluation.probes",
    "make_trainer": "core.evaluation.probes",
    # export and workflows
    "export_report": "core.export",
    "report_files": "core.export",
    "evaluate_result": "core.workflows",
    "selection_files": "core.workflows",
    "EvaluationOutcome": "core.workflows",
    # parameters and errors
    "Params": "core.params",
    "ParamInfo": "core.params",
    "CoresetError": "core.errors",
}

__all__ = [
    "__version__",
    "BUDGET_STRATEGIES",
    "CoresetError",
    "DEFAULT_EMBEDDER",
    "Dataset",
    "EmbeddingRun",
    "EvalConfig",
    "EvaluationOutcome",
    "EvaluationReport",
    "Evaluator",
    "FeatureSet",
    "ParamInfo",
    "Params",
    "SelectionResult",
    "apply_edits",
    "create_embedder",
    "embed_dataset",
    "embedder_names",
    "evaluate_result",
    "export_report",
    "get_selector",
    "list_embedders",
    "list_selectors",
    "list_trainers",
    "load_dataset",
    "load_demo",
    "load_features",
    "make_trainer",
    "register_embedder",
    "register_selector",
    "report_files",
    "run_plan",
    "run_selection",
    "save_features",
    "selection_files",
    "selection_pool",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports on demand
    from .datasets import Dataset, load_dataset, load_demo
    from .embedders import DEFAULT_EMBEDDER, create_embedder, embedder_names, list_embedders, register_embedder
    from .embedding import EmbeddingRun, embed_dataset
    from .errors import CoresetError
    from .evaluation import EvalConfig, EvaluationReport, Evaluator, run_plan
    from .evaluation.probes import list_trainers, make_trainer
    from .export import export_report, report_files
    from .features import FeatureSet, load_features, save_features
    from .params import ParamInfo, Params
    from .pool import selection_pool
    from .selection import (
        BUDGET_STRATEGIES,
        SelectionResult,
        get_selector,
        list_selectors,
        register_selector,
        run_selection,
    )
    from .selection.edit import apply_edits
    from .workflows import EvaluationOutcome, evaluate_result, selection_files


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first access (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
