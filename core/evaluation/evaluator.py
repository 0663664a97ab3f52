"""The :class:`Evaluator`: protocol steps 3-7 (see :mod:`core.evaluation.protocol`)."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import CoresetError
from ..features import FeatureSet
from .config import EvalConfig, default_eval_model, default_selection_models
from .noise import symmetric_label_noise
from .probes import trainer_uses_images
from .results import CellResult, GroupResult
from .split import make_split
from .statistics import difference_interval


class EmptySubsetError(CoresetError):
    """The subset to evaluate keeps no image (a fraction too small for every class)."""


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

    def __init__(
        self, fs: FeatureSet, config: EvalConfig, selection_models: Sequence[str] | None = None, device: str = "auto"
    ) -> None:
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
                raise CoresetError(
                    f"Evaluation model {self.eval_model!r} is not in the features; available: {', '.join(available)}."
                )
            self.inputs = fs.features[self.eval_model]
        self.split = make_split(fs, config.holdout, config.holdout_seed)
        self.classes = np.unique(fs.labels)
        self.noisy_labels, self.flipped = symmetric_label_noise(
            fs.labels, self.split.pool, float(config.label_noise), int(config.noise_seed), self.classes
        )
        lookup = {v: i for i, v in enumerate(self.classes.tolist())}
        self.codes_noisy = np.array([lookup[v] for v in self.noisy_labels.tolist()], dtype=np.int64)
        self.codes_clean = np.array([lookup[v] for v in fs.labels.tolist()], dtype=np.int64)
        self.test_codes = self.codes_clean[self.split.test]
        self._memo: dict[tuple, tuple[float, np.ndarray]] = {}
        self._duplicates: dict | None = None
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
            "noise": {
                "rate": float(self.config.label_noise),
                "seed": int(self.config.noise_seed),
                "n_flipped": int(self.flipped.sum()),
                "flipped_rows": np.flatnonzero(self.flipped).tolist(),
            },
            "selection_models": list(self.selection_models),
            "eval_model": self.eval_model,
            "eval_also_selects": self.eval_also_selects,
            "duplicates": self.duplicates(),
        }

    def duplicates(self) -> dict:
        """Near-duplicate groups among every row of the features in the selection models
        (:func:`core.duplicates.near_duplicates`, default threshold): the counts, and
        ``groups_across_pool_and_test``, the groups with images both in the training pool and in
        the test set (a test image whose copy can be trained on makes every accuracy look better
        than it is). Computed once."""
        if self._duplicates is None:
            from ..devices import resolve_device
            from ..duplicates import near_duplicates
            from ..neighbors import neighbor_graphs

            feats = {m: self.fs.features[m] for m in self.selection_models}
            groups = near_duplicates(feats, neighbor_graphs(feats, device=resolve_device(self.device)))
            in_pool = np.zeros(len(self.fs), dtype=bool)
            in_pool[self.split.pool] = True
            in_test = np.zeros(len(self.fs), dtype=bool)
            in_test[self.split.test] = True
            g = groups.group
            across = np.intersect1d(np.unique(g[in_pool & (g >= 0)]), np.unique(g[in_test & (g >= 0)]))
            self._duplicates = {**groups.summary(), "groups_across_pool_and_test": int(across.size)}
        return self._duplicates

    # ----------------------------------------------------------------- training
    def score_subset(self, rows: np.ndarray, seed: int) -> tuple[float, np.ndarray]:
        """Train on ``rows`` (noisy labels) with ``seed``; ``(accuracy, per-class accuracy)`` on the test set."""
        rows = np.sort(np.asarray(rows, dtype=np.int64))
        key = (hashlib.sha1(rows.tobytes()).hexdigest(), int(seed) if self.trainer.stochastic else None)
        if key in self._memo:
            return self._memo[key]
        t0 = time.perf_counter()
        pred = self.trainer.fit_predict(
            self.inputs[rows], self.codes_noisy[rows], self.inputs[self.split.test], len(self.classes), int(seed)
        )
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

    def _group(
        self, subsets: list[np.ndarray], tick: Callable[[str], None] | None = None, name: str = ""
    ) -> GroupResult:
        accs, per_class = [], []
        for seed, rows in zip(self.config.seeds, subsets):
            acc, pc = self.score_subset(rows, seed)
            accs.append(acc)
            per_class.append(pc)
            if tick is not None:
                tick(f"{name}, seed {seed}")
        with np.errstate(invalid="ignore"):
            pc_mean = np.nanmean(np.vstack(per_class), axis=0) if per_class else np.zeros(0)
        return GroupResult(
            accs, pc_mean.tolist(), [int(len(r)) for r in subsets], [int(self.flipped[r].sum()) for r in subsets]
        )

    # ----------------------------------------------------------------- one cell
    def select(
        self,
        method: str,
        fraction: float,
        budget: str = "paper",
        seed: int = 0,
        params: Mapping[str, Any] | None = None,
        budget_counts: Mapping | None = None,
    ):
        from ..selection import run_selection

        return run_selection(
            method,
            self.fs.features,
            self.noisy_labels,
            fraction,
            budget=budget,
            seed=int(seed),
            models=self.selection_models,
            budget_counts=budget_counts,
            pool=self.split.pool,
            device=self.device,
            **dict(params or {}),
        )

    def _refuse_empty(self, method: str, fraction: float, budget: str, given: bool) -> None:
        """:class:`EmptySubsetError` for a subset of 0 images (its accuracy would be that of no training)."""
        pool_labels = self.noisy_labels[self.split.pool]
        largest = int(np.unique(pool_labels, return_counts=True)[1].max()) if pool_labels.size else 0
        hint = f" (to at least {1.0 / largest:.3g} here)" if largest else ""
        if given:
            raise EmptySubsetError(
                f"The selection ({method}, fraction {fraction:g}) keeps 0 images: there is nothing to "
                "train on; select again with a larger --fraction."
            )
        raise EmptySubsetError(
            f"{method} keeps 0 images at fraction {fraction:g} with the {budget} budget (training pool: "
            f"{len(pool_labels)} images, largest class {largest}): there is nothing to train on; raise --fraction{hint}."
        )

    def evaluate(
        self,
        method: str,
        fraction: float,
        budget: str = "paper",
        params: Mapping[str, Any] | None = None,
        budget_counts: Mapping | None = None,
        given=None,
        keep_table: bool = True,
        progress: Callable[[int, int, str], None] | None = None,
        allow_empty: bool = False,
    ) -> CellResult:
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
                    "rows); evaluate a selection made on the training rows, or let evaluate select (--method)."
                )
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
            method=method,
            budget=budget,
            params=dict(first.params),
            fraction=float(first.fraction),
            label_noise=float(self.config.label_noise),
            seeds=seeds,
            selection=first.to_dict(include_table=keep_table),
            deterministic=deterministic,
            budget_counts=counts,
            method_result=g_method,
            random=g_random,
            full=g_full,
            difference=diff,
            timing_s={"select": t1 - t0, "train": t2 - t1, "total": time.perf_counter() - t0},
        )

    def evaluate_selection(
        self, result, *, keep_table: bool = True, progress: Callable[[int, int, str], None] | None = None
    ) -> tuple[CellResult, str]:
        """Evaluate an existing selection (e.g. from ``selection.json`` or the app); ``(cell, note)``.

        When all its rows lie in the training pool it is evaluated as it is (``given``). When
        some are evaluation rows (a dataset without a test split, whose 20 % hold-out the
        selection could not know about), the same method is run again on the pool only, with
        the same fraction, budget strategy (``manual``: the same per-class counts) and
        parameters, and ``note`` says so.
        """
        inside = np.isin(np.asarray(result.selected, dtype=np.int64), self.split.pool)
        if inside.all():
            return self.evaluate(
                result.method,
                result.fraction,
                result.budget,
                result.params,
                given=result,
                keep_table=keep_table,
                progress=progress,
            ), ""
        n_out = int((~inside).sum())
        note = (
            f"{n_out} of the {inside.size} selected rows are in the evaluation hold-out (this dataset has "
            f"no test split), so {result.method} was run again on the training rows only (same fraction, "
            "budget and parameters)."
        )
        cell = self.evaluate(
            result.method,
            result.fraction,
            result.budget,
            result.params,
            budget_counts=result.manual_budget_counts(),
            keep_table=keep_table,
            progress=progress,
        )
        return cell, note


__all__ = ["EmptySubsetError", "Evaluator"]
