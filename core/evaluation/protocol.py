"""The evaluation protocol: train/test split, label noise, and subset-vs-random comparison.

Protocol for one selection (a *cell*: method, budget strategy, parameters, fraction p,
label-noise rate eta), given a feature set:

1. **Split.** The test set is the dataset's own ``test`` split when it has one; otherwise a
   stratified hold-out of the training rows (:func:`stratified_holdout`: per class
   ``round-half-even(holdout * N_c)`` rows, drawn with a seeded generator,
   default 20 %, seed 0). The remaining ``train`` rows (or all non-test rows when the
   dataset has no split) are the selection pool; ``val`` rows are not used. The hold-out
   rows are recorded in the report and never enter the pool.
2. **Label noise** (optional, :func:`symmetric_label_noise`): each pool label is flipped
   with probability eta to a class drawn uniformly among the *other* classes (seeded).
   Selection and training both see the noisy labels; test labels stay clean. The flipped
   rows are recorded, and the report counts how many of them each subset kept.
3. **Selection.** The method runs on the pool at fraction p with each seed of
   ``seeds``; a method the registry declares not stochastic runs once, and for the others,
   if seeds 0 and 1 give the same subset that one subset is used for every seed (no re-runs).
4. **Random baseline** at exactly the method's per-class kept counts:
   ``run_selection("random", budget="manual", budget_counts=<kept per class>, seed=s)``
   for every seed ``s``.
5. **Full training set**: the whole pool (noisy labels included).
6. **Training and test.** The trainer (:mod:`.probes`) is fitted on each subset with the
   seed ``s`` and scored on the test set: top-1 accuracy in [0, 1] and per-class accuracy
   (correct / test samples of the class). Fits are memoised on (rows, seed) (the seed is
   dropped for deterministic trainers), so identical subsets are trained once.
7. **Statistics** (:mod:`.statistics`): mean ± sample std (ddof=1) over the seeds, and the
   difference to random with a 95 % Welch / one-sample t interval.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import CoresetError
from ..features import FeatureSet
from .probes import make_trainer, trainer_uses_images
from .statistics import Difference, difference_interval, mean_std

#: Stream tags mixed into the seeds of the hold-out and the label noise, so that neither
#: draws the same numbers as a selector seeded with the same integer (``random`` with
#: seed 0 would otherwise keep exactly the rows the noise flipped).
HOLDOUT_STREAM = 0x686F6C64  # "hold"
NOISE_STREAM = 0x6E6F6973  # "nois"

#: Preferred evaluation extractors, best first (a model that did not select is chosen).
EVAL_MODEL_PREFERENCE = ("effnet-lite2", "effnet-lite1", "effnet-lite0")


# --------------------------------------------------------------------------- configuration
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


# --------------------------------------------------------------------------- split and noise
def stratified_holdout(labels: np.ndarray, rows: np.ndarray, fraction: float, seed: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Split ``rows`` into ``(train, test)`` row arrays (sorted), stratified by label.

    Per class: ``n_test = round-half-even(fraction * N_c)``, capped at ``N_c - 1`` so
    every class with at least 2 rows keeps one training row; the test rows are a uniform
    draw without replacement from ``default_rng([seed, HOLDOUT_STREAM])`` (classes in
    sorted order).
    """
    labels = np.asarray(labels)
    rows = np.asarray(rows, dtype=np.int64)
    rng = np.random.default_rng([int(seed), HOLDOUT_STREAM])
    test = []
    for c in np.unique(labels[rows]):
        members = rows[labels[rows] == c]
        k = min(int(np.round(fraction * len(members))), max(len(members) - 1, 0))
        if k > 0:
            test.append(rng.choice(members, size=k, replace=False))
    test_rows = np.sort(np.concatenate(test)) if test else np.zeros(0, dtype=np.int64)
    train_rows = np.setdiff1d(rows, test_rows)
    return train_rows.astype(np.int64), test_rows.astype(np.int64)


def symmetric_label_noise(labels: np.ndarray, rows: np.ndarray, rate: float, seed: int,
                          classes: Sequence | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Flip each label of ``rows`` with probability ``rate`` to a uniformly drawn other class.

    With ``rng = default_rng([seed, NOISE_STREAM])`` (a stream no selector uses): ``u = rng.random(len(rows))``, ``shift =
    rng.integers(1, C, len(rows))``; row ``rows[j]`` is flipped when ``u[j] < rate``, to
    class ``(code + shift[j]) mod C`` (never its own class). Returns ``(noisy labels
    [N] (a copy), flipped mask [N])``; rows outside ``rows`` are unchanged.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels) if classes is None else np.asarray(classes)
    noisy = labels.copy()
    flipped = np.zeros(len(labels), dtype=bool)
    rows = np.asarray(rows, dtype=np.int64)
    n_classes = len(classes)
    if rate <= 0 or n_classes < 2 or rows.size == 0:
        return noisy, flipped
    lookup = {v: i for i, v in enumerate(classes.tolist())}
    codes = np.array([lookup[v] for v in labels[rows].tolist()], dtype=np.int64)
    rng = np.random.default_rng([int(seed), NOISE_STREAM])
    u = rng.random(len(rows))
    shift = rng.integers(1, n_classes, size=len(rows))
    flip = u < rate
    noisy[rows[flip]] = classes[(codes[flip] + shift[flip]) % n_classes]
    flipped[rows[flip]] = True
    return noisy, flipped


@dataclass
class EvalSplit:
    """Which rows train (the selection pool) and which test.

    Attributes:
        pool: rows of the feature set the selectors choose from (sorted).
        test: rows the trainers are scored on (sorted).
        source: ``test split`` or ``hold-out``.
        holdout, seed: the hold-out fraction and seed (when ``source == "hold-out"``).
    """

    pool: np.ndarray
    test: np.ndarray
    source: str
    holdout: float | None = None
    seed: int | None = None

    def to_dict(self) -> dict:
        return {"source": self.source, "n_pool": int(len(self.pool)), "n_test": int(len(self.test)),
                "holdout": self.holdout, "holdout_seed": self.seed,
                "test_rows": self.test.tolist() if self.source == "hold-out" else None}


class EmptySubsetError(CoresetError):
    """The subset to evaluate keeps no image (a fraction too small for every class)."""


def make_split(fs: FeatureSet, holdout: float = 0.2, seed: int = 0) -> EvalSplit:
    """The dataset's test split, else a stratified hold-out of the training rows (step 1)."""
    n = len(fs)
    split = fs.split if fs.split is not None else np.full(n, "train")
    test = np.flatnonzero(split == "test")
    if test.size:
        pool = np.flatnonzero(split == "train")
        if pool.size == 0:
            raise CoresetError("The data has a test split but no training rows to select from.")
        return EvalSplit(pool.astype(np.int64), test.astype(np.int64), "test split")
    candidates = np.flatnonzero(split == "train")
    if candidates.size == 0:
        candidates = np.arange(n)
    pool, test = stratified_holdout(fs.labels, candidates, holdout, seed)
    if test.size == 0:
        raise CoresetError(f"The hold-out of {holdout:.0%} is empty (too few images per class); "
                           "add a test split or more images.")
    return EvalSplit(pool, test, "hold-out", float(holdout), int(seed))


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


def features_digest(fs: FeatureSet, models: Sequence[str]) -> str:
    """SHA-256 over the named feature arrays, labels, split and paths (the cache key's data part)."""
    h = hashlib.sha256()
    for m in models:
        arr = np.ascontiguousarray(fs.features[m])
        h.update(f"{m}:{arr.shape}:{arr.dtype}\n".encode())
        h.update(arr.tobytes())
    for arr in (fs.labels, fs.split, fs.paths):
        h.update(b"--\n")
        if arr is not None:
            h.update("\x1f".join(map(str, np.asarray(arr).tolist())).encode("utf-8", "surrogateescape"))
    return h.hexdigest()


# --------------------------------------------------------------------------- results
@dataclass
class GroupResult:
    """Accuracies of one group (``method``, ``random`` or ``full``) over the seeds.

    Attributes:
        accuracy: top-1 accuracy in [0, 1] per seed (same order as ``seeds``).
        per_class: mean over the seeds of each class's test accuracy in [0, 1] (NaN: no test sample).
        n_train: training-set size per seed.
        flipped_kept: label-flipped rows in the training set, per seed.
    """

    accuracy: list[float]
    per_class: list[float]
    n_train: list[int]
    flipped_kept: list[int]

    @property
    def mean(self) -> float:
        return mean_std(self.accuracy)[0]

    @property
    def std(self) -> float:
        return mean_std(self.accuracy)[1]

    def to_dict(self) -> dict:
        m, s = mean_std(self.accuracy)
        nan_none = lambda v: None if v is None or (isinstance(v, float) and not math.isfinite(v)) else v  # noqa: E731
        return {"accuracy": [float(a) for a in self.accuracy], "mean": nan_none(m), "std": nan_none(s),
                "per_class": [nan_none(float(v)) for v in self.per_class],
                "n_train": [int(v) for v in self.n_train], "flipped_kept": [int(v) for v in self.flipped_kept]}

    @classmethod
    def from_dict(cls, d: dict) -> "GroupResult":
        return cls([float(a) for a in d["accuracy"]],
                   [math.nan if v is None else float(v) for v in d["per_class"]],
                   [int(v) for v in d["n_train"]], [int(v) for v in d["flipped_kept"]])


@dataclass
class CellResult:
    """One evaluated selection (method, budget, params, fraction, noise) over the seeds.

    Attributes:
        method, budget, params, fraction, label_noise, seeds: what was evaluated.
        selection: the method's :class:`~core.selection.SelectionResult` for ``seeds[0]``
            as ``to_dict()`` (with its per-sample ``table`` when ``keep_table``).
        deterministic: True when the selector gave the same subset for two seeds.
        budget_counts: rows kept per class (the random baseline keeps exactly these).
        method_result, random, full: :class:`GroupResult` of each group.
        difference: method minus random (:class:`~.statistics.Difference`), in [0, 1] units.
        timing_s: ``select``, ``train``, ``total`` seconds (of the run that computed it).
        key: the cache key.
    """

    method: str
    budget: str
    params: dict
    fraction: float
    label_noise: float
    seeds: list[int]
    selection: dict
    deterministic: bool
    budget_counts: dict[str, int]
    method_result: GroupResult
    random: GroupResult
    full: GroupResult
    difference: Difference
    timing_s: dict[str, float] = field(default_factory=dict)
    key: str = ""

    @property
    def label(self) -> str:
        """Display name: ``method`` or ``method@budget`` when the budget is not ``paper``."""
        return method_label(self.method, self.budget)

    def selection_result(self):
        from ..selection import SelectionResult

        return SelectionResult.from_dict(self.selection)

    def to_dict(self) -> dict:
        return {"method": self.method, "budget": self.budget, "params": self.params, "fraction": self.fraction,
                "label_noise": self.label_noise, "seeds": list(self.seeds), "deterministic": self.deterministic,
                "budget_counts": {str(k): int(v) for k, v in self.budget_counts.items()},
                "method_result": self.method_result.to_dict(), "random": self.random.to_dict(),
                "full": self.full.to_dict(), "difference": self.difference.to_dict(),
                "timing_s": {k: float(v) for k, v in self.timing_s.items()}, "key": self.key,
                "selection": self.selection}

    @classmethod
    def from_dict(cls, d: dict) -> "CellResult":
        return cls(method=d["method"], budget=d["budget"], params=dict(d["params"]), fraction=float(d["fraction"]),
                   label_noise=float(d["label_noise"]), seeds=[int(s) for s in d["seeds"]],
                   selection=d["selection"], deterministic=bool(d["deterministic"]),
                   budget_counts={str(k): int(v) for k, v in d["budget_counts"].items()},
                   method_result=GroupResult.from_dict(d["method_result"]), random=GroupResult.from_dict(d["random"]),
                   full=GroupResult.from_dict(d["full"]), difference=Difference.from_dict(d["difference"]),
                   timing_s=dict(d.get("timing_s", {})), key=d.get("key", ""))


def method_label(method: str, budget: str) -> str:
    return method if budget == "paper" else f"{method}@{budget}"


# --------------------------------------------------------------------------- the evaluator
class Evaluator:
    """Evaluates selections on one feature set under one :class:`EvalConfig`.

    Built once (split, label noise, trainer inputs), then :meth:`evaluate` runs a cell.
    ``fits`` counts trainer fits actually computed (memoised fits do not count).

    Args:
        fs: the feature set (rows = images; ``split`` decides train/test).
        config: the evaluation configuration.
        selection_models: features the selectors use (default: all but the eval model
            when there are several, else the only one).
        device: torch device for the selectors.
    """

    def __init__(self, fs: FeatureSet, config: EvalConfig, selection_models: Sequence[str] | None = None,
                 device: str = "auto") -> None:
        self.fs = fs
        self.config = config
        self.device = device
        available = fs.models
        if selection_models is None or len(selection_models) == 0:
            selection_models = default_selection_models(available, config)
        selection_models = [str(m) for m in selection_models]
        for m in selection_models:
            if m not in fs.features:
                raise CoresetError(f"Selection model {m!r} is not in the features; available: {', '.join(available)}.")
        self.selection_models = selection_models
        self.trainer = config.make_trainer()
        if trainer_uses_images(config.trainer):
            if fs.paths is None:
                raise CoresetError("The finetune evaluation needs image paths; this feature set has none.")
            self.eval_model = None
            self.inputs = fs.paths
        else:
            self.eval_model = config.eval_model or default_eval_model(available, selection_models)
            if self.eval_model not in fs.features:
                raise CoresetError(f"Evaluation model {self.eval_model!r} is not in the features; "
                                   f"available: {', '.join(available)}.")
            self.inputs = fs.features[self.eval_model]
        self.split = make_split(fs, config.holdout, config.holdout_seed)
        self.classes = np.unique(fs.labels)
        self.noisy_labels, self.flipped = symmetric_label_noise(
            fs.labels, self.split.pool, float(config.label_noise), int(config.noise_seed), self.classes)
        lookup = {v: i for i, v in enumerate(self.classes.tolist())}
        self.codes_noisy = np.array([lookup[v] for v in self.noisy_labels.tolist()], dtype=np.int64)
        self.codes_clean = np.array([lookup[v] for v in fs.labels.tolist()], dtype=np.int64)
        self.test_codes = self.codes_clean[self.split.test]
        self._memo: dict[tuple, tuple[float, np.ndarray]] = {}
        self.fits = 0
        self.train_seconds = 0.0

    @property
    def eval_also_selects(self) -> bool:
        return self.eval_model is not None and self.eval_model in self.selection_models

    def describe(self) -> dict:
        """The split, noise and models, for the report."""
        return {
            "split": self.split.to_dict(),
            "classes": [str(c) for c in self.classes.tolist()],
            "test_per_class": np.bincount(self.test_codes, minlength=len(self.classes)).tolist(),
            "noise": {"rate": float(self.config.label_noise), "seed": int(self.config.noise_seed),
                      "n_flipped": int(self.flipped.sum()), "flipped_rows": np.flatnonzero(self.flipped).tolist()},
            "selection_models": list(self.selection_models),
            "eval_model": self.eval_model,
            "eval_also_selects": self.eval_also_selects,
        }

    # ----------------------------------------------------------------- training
    def score_subset(self, rows: np.ndarray, seed: int) -> tuple[float, np.ndarray]:
        """Train on ``rows`` (noisy labels) with ``seed``; ``(accuracy, per-class accuracy)`` on the test set."""
        rows = np.sort(np.asarray(rows, dtype=np.int64))
        key = (hashlib.sha1(rows.tobytes()).hexdigest(), int(seed) if self.trainer.stochastic else None)
        if key in self._memo:
            return self._memo[key]
        t0 = time.perf_counter()
        pred = self.trainer.fit_predict(self.inputs[rows], self.codes_noisy[rows], self.inputs[self.split.test],
                                        len(self.classes), int(seed))
        self.train_seconds += time.perf_counter() - t0
        self.fits += 1
        correct = pred == self.test_codes
        n_c = np.bincount(self.test_codes, minlength=len(self.classes))
        hit_c = np.bincount(self.test_codes, weights=correct.astype(np.float64), minlength=len(self.classes))
        with np.errstate(invalid="ignore", divide="ignore"):
            per_class = np.where(n_c > 0, hit_c / np.maximum(n_c, 1), np.nan)
        out = (float(correct.mean()) if len(correct) else math.nan, per_class)
        self._memo[key] = out
        return out

    def _group(self, subsets: list[np.ndarray], tick: Callable[[str], None] | None = None,
               name: str = "") -> GroupResult:
        accs, per_class = [], []
        for seed, rows in zip(self.config.seeds, subsets):
            acc, pc = self.score_subset(rows, seed)
            accs.append(acc)
            per_class.append(pc)
            if tick is not None:
                tick(f"{name}, seed {seed}")
        with np.errstate(invalid="ignore"):
            pc_mean = np.nanmean(np.vstack(per_class), axis=0) if per_class else np.zeros(0)
        return GroupResult(accs, pc_mean.tolist(), [int(len(r)) for r in subsets],
                           [int(self.flipped[r].sum()) for r in subsets])

    # ----------------------------------------------------------------- one cell
    def select(self, method: str, fraction: float, budget: str = "paper", seed: int = 0,
               params: Mapping[str, Any] | None = None, budget_counts: Mapping | None = None):
        from ..selection import run_selection

        return run_selection(method, self.fs.features, self.noisy_labels, fraction, budget=budget, seed=int(seed),
                             models=self.selection_models, budget_counts=budget_counts, pool=self.split.pool,
                             device=self.device, **dict(params or {}))

    def _refuse_empty(self, method: str, fraction: float, budget: str, given: bool) -> None:
        """:class:`EmptySubsetError` for a subset of 0 images (its accuracy would be that of no training)."""
        pool_labels = self.noisy_labels[self.split.pool]
        largest = int(np.unique(pool_labels, return_counts=True)[1].max()) if pool_labels.size else 0
        hint = f" (to at least {1.0 / largest:.3g} here)" if largest else ""
        if given:
            raise EmptySubsetError(f"The selection ({method}, fraction {fraction:g}) keeps 0 images: there is nothing to "
                                   "train on; select again with a larger --fraction.")
        raise EmptySubsetError(
            f"{method} keeps 0 images at fraction {fraction:g} with the {budget} budget (training pool: "
            f"{len(pool_labels)} images, largest class {largest}): there is nothing to train on; raise --fraction{hint}.")

    def evaluate(self, method: str, fraction: float, budget: str = "paper", params: Mapping[str, Any] | None = None,
                 budget_counts: Mapping | None = None, given=None, keep_table: bool = True,
                 progress: Callable[[int, int, str], None] | None = None, allow_empty: bool = False) -> CellResult:
        """Evaluate one selection against random subsets and the full pool (protocol steps 3-7).

        ``given``: an existing :class:`~core.selection.SelectionResult` to evaluate as the
        method's (fixed) subset instead of running the selector; its rows must lie in the pool.
        ``progress(done, total, description)``: called once the subsets are chosen (done = 0)
        and after each of the ``total = 3 * len(seeds)`` trainings (subset, random and full
        pool, one per seed; a repeated subset is answered from memory and still counts).

        A subset of 0 images (a fraction too small for every class) raises
        :class:`EmptySubsetError` unless ``allow_empty`` (a plan's table keeps such a cell).
        """
        t0 = time.perf_counter()
        seeds = list(self.config.seeds)
        if given is not None:
            first = given
            sel = np.asarray(given.selected, dtype=np.int64)
            outside = np.setdiff1d(sel, self.split.pool)
            if outside.size:
                raise CoresetError(
                    f"{outside.size} selected rows are not in the training pool (e.g. they are test or hold-out "
                    "rows); evaluate a selection made on the training rows, or let evaluate select (--method).")
            subsets = [sel] * len(seeds)
            deterministic = True
            method, budget, fraction, params = given.method, given.budget, given.fraction, given.params
        else:
            from ..selection import get_selector

            first = self.select(method, fraction, budget, seeds[0], params, budget_counts)
            subsets = [first.selected]
            deterministic = True
            if not get_selector(method).stochastic:  # the registry says the seed changes nothing
                subsets = [first.selected] * len(seeds)
            for s in seeds[1:] if len(subsets) == 1 else []:
                if deterministic and len(subsets) == 1:
                    res = self.select(method, fraction, budget, s, params, budget_counts)
                    if np.array_equal(res.selected, first.selected):
                        subsets = [first.selected] * len(seeds)
                        break
                    deterministic = False
                    subsets.append(res.selected)
                else:
                    subsets.append(self.select(method, fraction, budget, s, params, budget_counts).selected)
        if first.n_selected == 0 and not allow_empty:
            self._refuse_empty(method, float(first.fraction), budget, given is not None)
        counts = first.class_counts("kept")
        random_subsets = [
            self.select("random", first.fraction, "manual", s, budget_counts=counts).selected for s in seeds
        ]
        full = [self.split.pool] * len(seeds)
        t1 = time.perf_counter()
        total, done = 3 * len(seeds), 0
        if progress is not None:
            progress(0, total, "subsets chosen")

        def tick(description: str) -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, total, f"trained on {description}")

        g_method = self._group(subsets, tick, "the subset")
        g_random = self._group(random_subsets, tick, "a random subset")
        g_full = self._group(full, tick, "the full pool")
        t2 = time.perf_counter()
        diff = difference_interval(g_method.accuracy, g_random.accuracy, self.config.confidence)
        return CellResult(
            method=method, budget=budget, params=dict(first.params), fraction=float(first.fraction),
            label_noise=float(self.config.label_noise), seeds=seeds,
            selection=first.to_dict(include_table=keep_table), deterministic=deterministic, budget_counts=counts,
            method_result=g_method, random=g_random, full=g_full, difference=diff,
            timing_s={"select": t1 - t0, "train": t2 - t1, "total": time.perf_counter() - t0},
        )


    def evaluate_selection(self, result, *, keep_table: bool = True,
                           progress: Callable[[int, int, str], None] | None = None) -> tuple[CellResult, str]:
        """Evaluate an existing selection (e.g. from ``selection.json`` or the app); ``(cell, note)``.

        When all its rows lie in the training pool it is evaluated as it is (``given``). When
        some are evaluation rows (a dataset without a test split, whose 20 % hold-out the
        selection could not know about), the same method is run again on the pool only, with
        the same fraction, budget strategy (``manual``: the same per-class counts) and
        parameters, and ``note`` says so.
        """
        inside = np.isin(np.asarray(result.selected, dtype=np.int64), self.split.pool)
        if inside.all():
            return self.evaluate(result.method, result.fraction, result.budget, result.params, given=result,
                                 keep_table=keep_table, progress=progress), ""
        n_out = int((~inside).sum())
        note = (f"{n_out} of the {inside.size} selected rows are in the evaluation hold-out (this dataset has "
                f"no test split), so {result.method} was run again on the training rows only (same fraction, "
                "budget and parameters).")
        cell = self.evaluate(result.method, result.fraction, result.budget, result.params,
                             budget_counts=result.manual_budget_counts(), keep_table=keep_table, progress=progress)
        return cell, note

__all__ = [
    "CellResult", "EVAL_MODEL_PREFERENCE", "EmptySubsetError", "EvalConfig", "EvalSplit", "Evaluator", "GroupResult",
    "default_eval_model", "features_digest", "make_split", "method_label", "stratified_holdout",
    "symmetric_label_noise",
]
