"""The evaluation configuration (:class:`EvalConfig`) and the choice of evaluation features."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..params import Params, param
from .probes import make_trainer, trainer_uses_images

#: Preferred evaluation extractors, best first (a model that did not select is chosen).
EVAL_MODEL_PREFERENCE = ("effnet-lite2", "effnet-lite1", "effnet-lite0")


@dataclass(frozen=True)
class EvalConfig(Params):
    """How subsets are evaluated: a :class:`core.params.Params` (declared, validated once on
    construction, form-building; every seed explicit).

    Attributes:
        trainer: a registered trainer (:func:`~core.evaluation.probes.list_trainers`: ``linear``, ``mlp``, ``finetune``).
        trainer_params: the trainer's parameters (see :mod:`.probes`), stored with every default filled in.
        eval_model: features used by ``linear``/``mlp`` (ignored by ``finetune``).
        seeds: seeds of the random baselines, stochastic selectors and stochastic trainers.
        holdout: test fraction of the stratified hold-out when there is no test split.
        holdout_seed: seed of the hold-out draw.
        label_noise: symmetric label-noise rate eta in [0, 1) on the training pool.
        noise_seed: seed of the label noise.
        confidence: level of the difference interval (default 0.95).
    """

    trainer: str = param("linear", "Model trained on each subset: linear, mlp or finetune.")
    trainer_params: dict = param(default_factory=dict, help="The trainer's parameters (NAME=VALUE).")
    eval_model: str | None = param(
        None, "Features the linear/mlp trainer uses (default: a model that did not select, see default_eval_model)."
    )
    seeds: tuple[int, ...] = param(
        (0, 1, 2, 3, 4), "Seeds of the random baselines, stochastic selectors and stochastic trainers (distinct, >= 0)."
    )
    holdout: float = param(
        0.2,
        "Test fraction of the stratified hold-out when the data has no test split.",
        minimum=0.0,
        maximum=1.0,
        exclusive_minimum=True,
        exclusive_maximum=True,
    )
    holdout_seed: int = param(0, "Seed of the hold-out draw.", minimum=0)
    label_noise: float = param(
        0.0, "Symmetric label-noise rate on the training pool.", minimum=0.0, maximum=1.0, exclusive_maximum=True
    )
    noise_seed: int = param(0, "Seed of the label noise.", minimum=0)
    confidence: float = param(
        0.95,
        "Level of the difference interval.",
        minimum=0.0,
        maximum=1.0,
        exclusive_minimum=True,
        exclusive_maximum=True,
    )

    @classmethod
    def subject(cls) -> str:
        return "the evaluation"

    def validate(self) -> None:
        # the trainer's parameters with every default filled in (so equal configs give equal cache keys)
        object.__setattr__(self, "trainer_params", make_trainer(self.trainer, self.trainer_params).to_dict())
        try:
            seeds = tuple(int(s) for s in self.seeds)
        except (TypeError, ValueError):
            seeds = ()
        if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
            self.fail("seeds", f"must be distinct non-negative integers, got {self.seeds!r}")
        object.__setattr__(self, "seeds", seeds)

    def make_trainer(self):
        return make_trainer(self.trainer, self.trainer_params)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["seeds"] = list(self.seeds)
        d["trainer_params"] = dict(self.trainer_params)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EvalConfig:
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


def default_selection_models(available: Sequence[str], config: EvalConfig) -> list[str]:
    """Every model but the evaluation model (all of them for ``finetune``, or when only one)."""
    available = list(available)
    if trainer_uses_images(config.trainer):
        return available
    eval_model = config.eval_model or default_eval_model(available, [])
    return [m for m in available if m != eval_model] or [eval_model]


__all__ = ["EVAL_MODEL_PREFERENCE", "EvalConfig", "default_eval_model", "default_selection_models"]
