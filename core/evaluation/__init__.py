"""Evaluation: what is a subset worth against a random one of the same size and the full set?

Modules: :mod:`.probes` (the trainer registry: ``linear``, ``mlp``, ``finetune``),
:mod:`.protocol` (the protocol, with one module per step: :mod:`.config`, :mod:`.split`,
:mod:`.noise`, :mod:`.evaluator`, :mod:`.results`, :mod:`.digests`),
:mod:`.statistics` (mean ± std, the difference to random with its interval),
:mod:`.report` (:class:`EvaluationReport`, saved as report.json) and :mod:`.plan`
(:func:`run_plan`: many methods x fractions x noise levels, cached per cell).

Accuracies are fractions in [0, 1] in every object; tables and reports show percent.
"""

from .plan import MethodSpec, parse_fractions, parse_methods, run_plan
from .probes import FinetuneTrainer, LinearProbe, MLPProbe, get_trainer, list_trainers, make_trainer, register_trainer
from .protocol import (
    CellResult,
    EvalConfig,
    EvalSplit,
    Evaluator,
    GroupResult,
    default_eval_model,
    make_split,
    stratified_holdout,
    symmetric_label_noise,
)
from .report import EvaluationReport
from .statistics import Difference, difference_interval, mean_ranks, mean_std

__all__ = [
    "CellResult",
    "Difference",
    "EvalConfig",
    "EvalSplit",
    "EvaluationReport",
    "Evaluator",
    "FinetuneTrainer",
    "GroupResult",
    "LinearProbe",
    "MLPProbe",
    "MethodSpec",
    "default_eval_model",
    "difference_interval",
    "get_trainer",
    "list_trainers",
    "make_split",
    "make_trainer",
    "mean_ranks",
    "mean_std",
    "parse_fractions",
    "parse_methods",
    "register_trainer",
    "run_plan",
    "stratified_holdout",
    "symmetric_label_noise",
]
