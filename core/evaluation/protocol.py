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

The protocol lives in one module per step: :mod:`.config` (:class:`EvalConfig`, the
evaluation features), :mod:`.split` (step 1), :mod:`.noise` (step 2), :mod:`.evaluator`
(steps 3-7), :mod:`.results` (what it returns), :mod:`.digests` (cache keys). This module
gathers their names under their old import path.
"""

from __future__ import annotations

from .config import EVAL_MODEL_PREFERENCE, EvalConfig, default_eval_model, default_selection_models
from .digests import features_digest
from .evaluator import EmptySubsetError, Evaluator
from .noise import NOISE_STREAM, symmetric_label_noise
from .results import CellResult, GroupResult, method_label
from .split import HOLDOUT_STREAM, EvalSplit, make_split, stratified_holdout

__all__ = [
    "CellResult",
    "EVAL_MODEL_PREFERENCE",
    "EmptySubsetError",
    "EvalConfig",
    "EvalSplit",
    "Evaluator",
    "GroupResult",
    "HOLDOUT_STREAM",
    "NOISE_STREAM",
    "default_eval_model",
    "default_selection_models",
    "features_digest",
    "make_split",
    "method_label",
    "stratified_holdout",
    "symmetric_label_noise",
]
