"""Typed, validated parameters of every selector (one frozen dataclass per method).

Declared with the one parameter system, :mod:`core.params` (:func:`~core.params.param`
fields of a :class:`~core.params.Params` dataclass). The app builds its form from
:meth:`SelectorParams.describe`; the CLI parses ``--param name=value`` strings with
:meth:`SelectorParams.from_mapping`, which converts each value by the field's type and
raises :class:`SelectionInputError` naming the bad parameter and the allowed ones. Ranges
are declared once, in the field metadata, and checked on construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from ..errors import SelectionInputError
from ..params import ParamInfo, Params, param

Normalize = Literal["none", "l2"]


@dataclass(frozen=True)
class SelectorParams(Params):
    """Base class of selector parameters (:class:`core.params.Params`): errors are
    :class:`SelectionInputError` naming the parameter and ``method '<name>'``."""

    method: ClassVar[str] = ""
    error: ClassVar[type[Exception]] = SelectionInputError

    @classmethod
    def subject(cls) -> str:
        return f"method {cls.method!r}"

    @classmethod
    def unknown_message(cls, name: str, allowed: list[str]) -> str:
        return f"Unknown parameter {name!r} for method {cls.method!r}; allowed: {', '.join(allowed) if allowed else '(none)'}."


_NORMALIZE_HELP = "Row normalisation of each model's features before use: none (raw) or l2."
_MODEL_HELP = (
    "Model whose features to use; empty = all selected models (a single model as is, "
    "several models each L2-normalised per row, then concatenated)."
)


@dataclass(frozen=True)
class RamAplParams(SelectorParams):
    """RAM-APL: score = W1(p) RAM + (1 - W1(p)) (1 - APL), W1(p) = a + (1 - a) / (1 + exp(k (p - s)))."""

    method: ClassVar[str] = "ram_apl"
    a: float = param(0.2, "Floor a of the RAM weight W1(p) (0..1).", minimum=0.0, maximum=1.0)
    k: float = param(1.0, "Steepness k of the sigmoid in W1(p).")
    s: float = param(0.5, "Midpoint s (a fraction) of the sigmoid in W1(p).")
    normalize: Normalize = param("none", _NORMALIZE_HELP)


@dataclass(frozen=True)
class MinParams(SelectorParams):
    """MIN: closest to the class mean (mean within-class rank over models)."""

    method: ClassVar[str] = "min"
    normalize: Normalize = param("none", _NORMALIZE_HELP)


@dataclass(frozen=True)
class SingleModelParams(SelectorParams):
    """Parameters shared by the methods that work in one feature space."""

    model: str = param("", _MODEL_HELP)
    normalize: Normalize = param("none", _NORMALIZE_HELP + " Only for a single model; a concatenation is always L2.")


@dataclass(frozen=True)
class ModerateDSParams(SingleModelParams):
    method: ClassVar[str] = "moderate_ds"


@dataclass(frozen=True)
class KCenterParams(SingleModelParams):
    method: ClassVar[str] = "kcenter"


@dataclass(frozen=True)
class HerdingParams(SingleModelParams):
    method: ClassVar[str] = "herding"


@dataclass(frozen=True)
class FacilityLocationParams(SelectorParams):
    """Facility location on shifted cosine similarity s = (1 + cos) / 2."""

    method: ClassVar[str] = "facility_location"
    model: str = param("", _MODEL_HELP)
    max_dense: int = param(
        20000,
        "Largest class handled exactly with a dense n x n similarity; larger classes are "
        "split at random into blocks of at most this size (one-round GreeDi).",
        minimum=2,
    )


@dataclass(frozen=True)
class GraphCutParams(SelectorParams):
    """Graph cut f(S) = sum_{i in V, j in S} s_ij - lam sum_{i, j in S} s_ij, s = (1 + cos) / 2."""

    method: ClassVar[str] = "graph_cut"
    model: str = param("", _MODEL_HELP)
    lam: float = param(
        0.5, "Redundancy weight lambda (0 = pure representativeness; <= 0.5 keeps f monotone).", minimum=0.0
    )


@dataclass(frozen=True)
class RandomParams(SelectorParams):
    """Uniform sampling without replacement within each class (no parameters)."""

    method: ClassVar[str] = "random"


# --------------------------------------------------------------------------- adaptive selectors
_CONSENSUS_K_HELP = "Neighbours k of the label consensus (per model, cosine, self excluded)."
_CONSENSUS_MAX_HELP = (
    "A row is a suspected mislabel when another class is better supported and the support of "
    "its own label is at most this (0..1; see core/selection/consensus.py)."
)


@dataclass(frozen=True)
class CleanedParams(SelectorParams):
    """Set aside suspected mislabels (label consensus across models), then run ``inner``."""

    method: ClassVar[str] = "cleaned"
    inner: Literal["herding", "random", "kcenter", "graph_cut"] = param(
        "herding", "Selector run on the rows left after setting suspected mislabels aside."
    )
    k: int = param(10, _CONSENSUS_K_HELP, minimum=1)
    max_agreement: float = param(0.05, _CONSENSUS_MAX_HELP, minimum=0.0, maximum=1.0)


@dataclass(frozen=True)
class CCSParams(SelectorParams):
    """Coverage-centric coreset selection (Zheng et al., ICLR 2023) on a training-free difficulty."""

    method: ClassVar[str] = "ccs"
    cutoff: float = param(
        0.1,
        "Hard cutoff beta: share of the hardest rows of each class set aside first (0..1).",
        minimum=0.0,
        maximum=0.99,
    )
    strata: int = param(50, "Number of equal-width difficulty strata (the paper's code uses 50).", minimum=1)


@dataclass(frozen=True)
class BWSParams(SelectorParams):
    """Best window selection (Choi et al., ICML 2024, arXiv 2406.03057) on a training-free difficulty."""

    method: ClassVar[str] = "bws"
    step: float = param(
        0.05,
        "Grid step of the window start, as a share of each class's ranking (0..1).",
        minimum=0.0,
        maximum=1.0,
        exclusive_minimum=True,
    )
    ridge: float = param(
        1.0, "L2 penalty lambda of the ridge classifier that scores each window.", minimum=0.0, exclusive_minimum=True
    )
    model: str = param("", _MODEL_HELP)


DEFAULT_AUTO_CANDIDATES = "random,herding,cleaned,cleaned:inner=random,ram_apl,ccs,bws"


@dataclass(frozen=True)
class AutoParams(SelectorParams):
    """Pick the selector by stratified k-fold inside the pool, against random subsets."""

    method: ClassVar[str] = "auto"
    candidates: str = param(
        DEFAULT_AUTO_CANDIDATES,
        "Comma-separated candidates, each NAME or NAME:PARAM=VALUE[:PARAM=VALUE]; random is always one of them.",
    )
    folds: int = param(3, "Stratified folds k of the pool (select on k-1 folds, score on the held-out one).", minimum=2)
    repeats: int = param(3, "Random subsets per fold that every candidate is compared with.", minimum=1)
    probe: Literal["logistic", "ridge"] = param(
        "logistic",
        "Probe trained on each fold's subset: logistic = the evaluation's linear probe "
        "(standardised, logistic regression, C = 1); ridge = a closed-form ridge classifier (faster, "
        "but blind to label noise).",
    )
    ridge: float = param(
        1.0, "L2 penalty lambda of the ridge probe (probe = ridge).", minimum=0.0, exclusive_minimum=True
    )
    cv_seed: int = param(0, "Seed of the folds and of the candidates' random choices inside them.", minimum=0)
    sample: int = param(
        10_000,
        "A pool of more rows is estimated on a stratified seeded sample of about this many rows "
        "(0 = always the whole pool).",
        minimum=0,
    )
    sample_classes: int = param(
        100,
        "A pool of more classes is estimated on this many of its classes, drawn at random (seeded); 0 = every class.",
        minimum=0,
    )
    margin: float = param(
        0.0, "Estimated gain over random (percentage points) a candidate needs to be chosen over random.", minimum=0.0
    )
    time_budget_s: float = param(
        0.0,
        "Stop trying further candidates after this many seconds (0 = no limit); "
        "the choice is made among the candidates tried.",
        minimum=0.0,
    )


__all__ = [
    "AutoParams",
    "BWSParams",
    "CCSParams",
    "CleanedParams",
    "DEFAULT_AUTO_CANDIDATES",
    "FacilityLocationParams",
    "GraphCutParams",
    "HerdingParams",
    "KCenterParams",
    "MinParams",
    "ModerateDSParams",
    "ParamInfo",
    "RamAplParams",
    "RandomParams",
    "SelectorParams",
    "SingleModelParams",
    "param",
]
