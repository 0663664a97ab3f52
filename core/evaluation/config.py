"""The evaluation configuration (:class:`EvalConfig`) and the choice of evaluation features."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

from ..errors import CoresetError
from .probes import make_trainer, trainer_uses_images

#: Preferred evaluation extractors, best first (a model that did not select is chosen).
EVAL_MODEL_PREFERENCE = ("effnet-lite2", "effnet-lite1", "effnet-lite0")


@dataclass(frozen=True)
class EvalConfig:
    """How subsets are evaluated (validated on construction; every seed explicit).

    Attributes:
        trainer: ``linear``, ``mlp`` or ``finetune``.
        trainer_params: the trainer's parameters (see :mod:`.probes`).
        eval_model: features used by ``linear``/``mlp`` (ignored by ``finetune``).
        seeds: seeds of the random baselines, stochastic selectors and stochastic trainers.
        holdout: test fraction of the stratified hold-out when there is no test split.
        holdout_seed: seed of the hold-out draw.
        label_noise: symmetric label-noise rate eta in [0, 1) on the training pool.
        noise_seed: seed of the label noise.
        confidence: level of the difference interval (default 0.95).
    """

    trainer: str = "linear"
    trainer_params: dict = field(default_factory=dict)
    eval_model: str | None = None
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    holdout: float = 0.2
    holdout_seed: int = 0
    label_noise: float = 0.0
    noise_seed: int = 0
    confidence: float = 0.95

    def __post_init__(self) -> None:
        # validated, with every default filled in (so equal configs give equal cache keys)
        object.__setattr__(self, "trainer_params", make_trainer(self.trainer, self.trainer_params).to_dict())
        seeds = tuple(int(s) for s in self.seeds)
        if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
            raise CoresetError(f"seeds must be distinct non-negative integers, got {self.seeds!r}.")
        object.__setattr__(self, "seeds", seeds)
        if not (0.0 < float(self.holdout) < 1.0):
            raise CoresetError(f"holdout must be in (0, 1), got {self.holdout!r}.")
        if not (0.0 <= float(self.label_noise) < 1.0):
            raise CoresetError(f"label noise must be in [0, 1), got {self.label_noise!r}.")
        if not (0.0 < float(self.confidence) < 1.0):
            raise CoresetError(f"confidence must be in (0, 1), got {self.confidence!r}.")
        for name in ("holdout_seed", "noise_seed"):
            if int(getattr(self, name)) < 0:
                raise CoresetError(f"{name} must be a non-negative integer.")

    def make_trainer(self):
        return make_trainer(self.trainer, self.trainer_params)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["seeds"] = list(self.seeds)
        d["trainer_params"] = dict(self.trainer_params)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EvalConfig":
        d = dict(d)
        d["seeds"] = tuple(d.get("seeds", (0, 1, 2, 3, 4)))
        return cls(**d)


def default_eval_model(available: Sequence[str], selection_models: Sequence[str]) -> str:
    """The evaluation features: the first of :data:`EVAL_MODEL_PREFERENCE` not used for
    selection, else any other model not used for selection (last in file order), else the
    last selection model (then the evaluator also selected: recorded in the report)."""
    available = list(available)
    unused = [m for m in available if m not in selection_models]
    for name in EVAL_MODEL_PREFERENCE:
        if name in unused:
            return name
    if unused:
        return unused[-1]
    return list(selection_models)[-1] if selection_models else available[-1]


def default_selection_models(available: Sequence[str], config: "EvalConfig") -> list[str]:
    """Every model but the evaluation model (all of them for ``finetune``, or when only one)."""
    available = list(available)
    if trainer_uses_images(config.trainer):
        return available
    eval_model = config.eval_model or default_eval_model(available, [])
    return [m for m in available if m != eval_model] or [eval_model]


__all__ = ["EVAL_MODEL_PREFERENCE", "EvalConfig", "default_eval_model", "default_selection_models"]
