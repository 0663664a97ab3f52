"""``auto``: choose the selector for this pool and fraction from the pool alone.

For the fraction ``p`` and budget strategy asked for, every candidate (parameter
``candidates``; ``random`` always among them) is estimated by stratified k-fold inside
the selection pool:

0. **Sample** (:func:`sample_rows`). A pool of at most ``sample`` rows (10,000) and
   ``sample_classes`` classes (100) is estimated whole. A larger one is estimated on a
   seeded stratified sample: ``sample_classes`` of its classes drawn at random when it has
   more (the probe's cost grows with the number of classes), and about ``sample`` rows of
   them, every class at least ``k`` rows. The sample is the pool of steps 1-3, except that
   the label consensus of ``cleaned`` inside a fold still lets every pool row vote but the
   fold's held-out rows (:class:`.neighborhood.Neighborhood`), as it will on the whole pool;
   class means (RAM-APL's APL, the difficulty) are taken over the classes the sample has.
   ``selection.json`` records the sample and why (``details.sample``).
1. **Folds.** Per class, the rows are permuted with ``default_rng([cv_seed, AUTO_STREAM, c])``
   and dealt in turn to ``k`` folds, the deal going on from class to class (fold sizes differ
   by at most one per class and overall). A pool with fewer than ``k`` rows, or a budget
   that keeps nothing or everything (every method then keeps the same rows), is not
   estimated: ``random`` is used and the details say why.
2. **Per fold f.** The pool without fold ``f`` is a smaller pool: its budgets are planned
   with the same strategy at the same fraction (``manual``: each count scaled by the share
   of the class outside the fold, rounded half to even), and every class the final subset
   keeps at least one row of keeps at least one here too (at the same fraction of the
   smaller pool, 1 image per class at 1 % of Flowers-17 would round to 0 and tie every
   candidate; keeping the final counts instead would keep the whole fold pool at 70 %);
   every candidate selects from it
   (seed ``cv_seed``); the probe is trained on the subset and scored on fold ``f``:
   ``acc[cand, f]``. ``repeats`` random subsets of the same per-class sizes as each
   candidate's (streams ``[cv_seed, AUTO_STREAM, f, r]``) give ``acc[random, f]``.
   The probe (``probe``) sees every selection model's L2-normalised rows, concatenated.
   ``logistic`` (default) is the evaluation's own linear probe
   (:class:`core.evaluation.probes.LinearProbe`: standardised features, multinomial logistic
   regression, C = 1), so the estimate reflects how a trained model reacts to the subset,
   mislabelled images included. ``ridge`` (:mod:`._probe`, ``lam = ridge``) is a closed-form
   least-squares classifier, ~10x cheaper, but it shrugs off symmetric label noise (in the
   quality benchmark its pool accuracies under 20 % noise were the same, within 1 pp, for a
   random subset and for one with the mislabelled images set aside, while the logistic probe
   lost 25 pp to the noise), so it cannot tell that cleaning pays.
3. **Estimate.** ``gain[cand, f] = acc[cand, f] - mean_r acc[random_r, f]`` (paired per
   fold); the estimate is the mean over the folds with a 95 % t interval (``k - 1`` degrees
   of freedom). The chosen method is the candidate with the highest mean gain if it
   exceeds ``margin`` (percentage points), else ``random``.
4. The chosen method then runs on the whole pool with the run's seed and budgets.

Only the pool's own labels are read (the held-out folds' labels, noisy or not: symmetric
label noise lowers every candidate's accuracy alike in expectation, so it keeps their
ranking; class-dependent or adversarial noise does not, and neither does a test set from
another distribution). The choice depends on the data and ``cv_seed`` only, not on the
run's seed. Cost: ``k x (candidates)`` selections on ``(k-1)/k`` of the sample and
``k x (candidates + repeats)`` probe fits (the random subsets of a fold are the same for
every candidate, since every candidate keeps the fold's budgets, and are fitted once);
``time_budget_s`` stops trying further
candidates once spent (the choice is then made among those tried, and the details say so).
Estimates are memoised in the process on the content they depend on, so running ``auto``
again with another seed (the evaluator does) costs one selection, not another estimate.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from typing import Any

import numpy as np

from ..errors import SelectionInputError
from ._ordering import concat_class_picks
from ._probe import ridge_fit_predict
from .baselines import class_features
from .params import AutoParams, SelectorParams
from .registry import SelectionData, SelectorOutput, SelectorSpec, get_selector, list_selectors, register_selector

#: Stream tag of the folds and of the random references (no other selector draws from it).
AUTO_STREAM = 0x6175746F  # "auto"
#: Sub-stream of the estimate's sample (:func:`sample_rows`).
SAMPLE_TAG = 0x73616D70  # "samp"


def parse_candidates(text: str) -> list[tuple[str, SelectorSpec, SelectorParams]]:
    """``"random,herding,cleaned:inner=random"`` -> ``[(label, spec, params), ...]``, random first."""
    out: list[tuple[str, SelectorSpec, SelectorParams]] = []
    seen = set()
    for item in [t.strip() for t in str(text).split(",") if t.strip()]:
        name, *pairs = item.split(":")
        name = name.strip()
        if name == "auto":
            raise SelectionInputError("auto cannot be one of its own candidates.")
        if name not in list_selectors():
            raise SelectionInputError(f"auto: unknown candidate {name!r}; available: {', '.join(list_selectors())}.")
        values = {}
        for pair in pairs:
            if "=" not in pair:
                raise SelectionInputError(f"auto: candidate {item!r}: {pair!r} must look like PARAM=VALUE.")
            key, value = pair.split("=", 1)
            values[key.strip()] = value.strip()
        spec = get_selector(name)
        params = spec.make_params(values)
        label = item.replace(" ", "")
        if label in seen:
            raise SelectionInputError(f"auto: candidate {label!r} is listed twice.")
        seen.add(label)
        out.append((label, spec, params))
    if not any(label == "random" for label, _, _ in out):
        spec = get_selector("random")
        out.insert(0, ("random", spec, spec.make_params({})))
    out.sort(key=lambda t: t[0] != "random")  # random first (stable for the rest)
    return out


def make_probe(params: AutoParams, x):
    """``fit_predict(train_rows, train_codes, test_rows, n_classes) -> predicted codes`` on the
    rows of ``x`` (a float32 tensor of the estimate's rows), for ``params.probe``."""
    if params.probe == "ridge":
        return lambda rows, y, test, c: ridge_fit_predict(x[rows], y, x[test], c, params.ridge)
    from ..evaluation.probes import LinearProbe

    probe = LinearProbe()
    xn = x.cpu().numpy()
    return lambda rows, y, test, c: probe.fit_predict(xn[rows], y, xn[test], c, 0)


def stratified_folds(data: SelectionData, k: int, seed: int) -> np.ndarray:
    """int64 ``[N]``: fold of every row (see step 1 of the module docstring)."""
    fold = np.empty(data.n, dtype=np.int64)
    start = 0
    for c in range(data.n_classes):
        rows = data.class_rows(c)
        perm = np.random.default_rng([int(seed), AUTO_STREAM, c]).permutation(len(rows))
        fold[rows[perm]] = (start + np.arange(len(rows))) % k
        start += len(rows)
    return fold


def fold_budgets(data: SelectionData, sub: SelectionData, budgets: np.ndarray) -> np.ndarray:
    """Budgets of the fold pool ``sub`` (step 2 of the module docstring): the same strategy at
    the same fraction (``manual``: each count scaled by the class's share in the fold pool),
    and at least one row of every class the final subset keeps any of."""
    from .budgets import plan_budgets

    budgets = np.asarray(budgets, dtype=np.int64)
    if data.budget == "manual":
        share = np.divide(sub.sizes, np.maximum(data.sizes, 1))
        inner = np.round(budgets * share).astype(np.int64)
    else:
        inner = plan_budgets(data.budget, sub).budgets
    inner = np.maximum(inner, np.minimum(budgets, 1))
    return np.minimum(inner, sub.sizes)


def random_rows(sub: SelectionData, budgets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uniform per-class sample of ``sub`` at ``budgets`` (row indices of ``sub``)."""
    picks = []
    for c in range(sub.n_classes):
        rows = sub.class_rows(c)
        picks.append(rng.choice(rows, size=int(budgets[c]), replace=False) if budgets[c] else rows[:0])
    return concat_class_picks(picks)


def t_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)`` of the one-sample t interval (NaN bounds for one value)."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    mean = float(v.mean())
    if len(v) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return mean, mean - half, mean + half


def sample_rows(data: SelectionData, params: AutoParams) -> np.ndarray:
    """Sorted rows of the pool the estimate runs on (step 0 of the module docstring): every row
    of a pool with at most ``sample`` rows and ``sample_classes`` classes; else a stratified
    sample. Classes: all, or ``sample_classes`` of them drawn uniformly
    (``default_rng([cv_seed, AUTO_STREAM, SAMPLE_TAG])``); rows: class ``c`` keeps
    ``max(min(N_c, folds), round(N_c S / N'))`` of its rows (``N'`` the rows of the chosen
    classes, ``S = min(sample, N')``), drawn with ``default_rng([cv_seed, AUTO_STREAM, SAMPLE_TAG, c])``,
    so every class is in every fold."""
    classes = np.arange(data.n_classes)
    present = classes[data.sizes > 0]
    if params.sample_classes and len(present) > params.sample_classes:
        rng = np.random.default_rng([int(params.cv_seed), AUTO_STREAM, SAMPLE_TAG])
        present = np.sort(rng.choice(present, size=int(params.sample_classes), replace=False))
    chosen_rows = int(data.sizes[present].sum())
    target = chosen_rows if not params.sample else min(int(params.sample), chosen_rows)
    if target >= data.n:
        return np.arange(data.n, dtype=np.int64)
    picks = []
    for c in present:
        rows = data.class_rows(int(c))
        want = max(min(len(rows), params.folds), int(round(len(rows) * target / chosen_rows)))
        rng = np.random.default_rng([int(params.cv_seed), AUTO_STREAM, SAMPLE_TAG, int(c)])
        picks.append(rows if want >= len(rows) else rng.choice(rows, size=want, replace=False))
    return np.sort(np.concatenate(picks)).astype(np.int64)


def fold_pools(data: SelectionData, budgets: np.ndarray, params: AutoParams, rows: np.ndarray):
    """Per fold: ``(train, test, sub, fold_budgets)``, ``train``/``test`` rows of ``data`` drawn
    from ``rows`` (the estimate's sample), ``sub`` the pool ``train`` (its label consensus
    votes with every pool row but the fold's held-out ones)."""
    from .neighborhood import Neighborhood

    if data.neighborhood is None:  # made once here, reused by every fold and by the final run
        data.neighborhood = Neighborhood.of(data.features, data.codes, data.n_classes, device=data.device)
    est = data if len(rows) == data.n else data.subset(rows)
    folds = stratified_folds(est, params.folds, params.cv_seed)
    out = []
    for f in range(params.folds):
        train, test = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
        sub = est.subset(train)
        sub.seed = int(params.cv_seed)
        assert sub.neighborhood is not None and est.neighborhood is not None
        sub.neighborhood = sub.neighborhood.without(est.neighborhood.rows[test])
        out.append((rows[train], rows[test], sub, fold_budgets(data, sub, budgets)))
    return out


def estimate(data: SelectionData, budgets: np.ndarray, params: AutoParams) -> dict:
    """Steps 1-3 of the module docstring: the per-candidate estimates and the choice."""
    t0 = time.perf_counter()
    candidates = parse_candidates(params.candidates)
    rows = sample_rows(data, params)
    x = class_features(data, rows, "", "l2")  # probe features of the sampled rows only
    local = np.full(data.n, -1, dtype=np.int64)
    local[rows] = np.arange(len(rows))
    probe = make_probe(params, x)
    fitted: dict[bytes, np.ndarray] = {}  # by training rows: every candidate meets the same random subsets

    def fit_predict(train_rows, y, test_rows, n_classes):
        key = hashlib.sha1(np.sort(train_rows).tobytes() + b"|" + np.asarray(test_rows).tobytes()).digest()
        if key not in fitted:
            fitted[key] = probe(local[train_rows], y, local[test_rows], n_classes)
        return fitted[key]

    subs = fold_pools(data, budgets, params, rows)
    total = len(candidates) * params.folds
    done, stopped = 0, False
    acc: dict[str, list[float]] = {}
    rand_acc: dict[str, list[float]] = {}
    for label, spec, cand_params in candidates:
        if params.time_budget_s and time.perf_counter() - t0 > params.time_budget_s and len(acc) >= 2:
            stopped = True
            break
        acc[label], rand_acc[label] = [], []
        for f, (train, test, sub, b) in enumerate(subs):
            out = spec.fn(sub, b, cand_params)
            picked = train[np.asarray(out.order, dtype=np.int64)]
            pred = fit_predict(picked, data.codes[picked], test, data.n_classes)
            acc[label].append(float(np.mean(pred == data.codes[test])))
            kept = np.bincount(sub.codes[np.asarray(out.order, dtype=np.int64)], minlength=sub.n_classes)
            r_accs = []
            for r in range(params.repeats):
                rng = np.random.default_rng([int(params.cv_seed), AUTO_STREAM, f, r])
                r_rows = train[random_rows(sub, kept, rng)]
                r_pred = fit_predict(r_rows, data.codes[r_rows], test, data.n_classes)
                r_accs.append(float(np.mean(r_pred == data.codes[test])))
            rand_acc[label].append(float(np.mean(r_accs)))
            done += 1
            if data.progress is not None:
                data.progress(done, total, f"auto: {label}, fold {f + 1} of {params.folds}")
    rows_out = []
    for label in acc:
        gains = 100.0 * (np.asarray(acc[label]) - np.asarray(rand_acc[label]))
        g, lo, hi = t_interval(gains)
        rows_out.append(
            {
                "candidate": label,
                "accuracy": 100.0 * float(np.mean(acc[label])),
                "random_accuracy": 100.0 * float(np.mean(rand_acc[label])),
                "gain": g,
                "gain_low": lo,
                "gain_high": hi,
                "fold_gains": gains.tolist(),
            }
        )
    contenders = [r for r in rows_out if r["candidate"] != "random"]
    best = max(contenders, key=lambda r: r["gain"], default=None)
    chosen = best["candidate"] if best is not None and best["gain"] > params.margin else "random"
    return {
        "chosen": chosen,
        "estimates": rows_out,
        "sample": sample_note(data, rows, params),
        "folds": params.folds,
        "repeats": params.repeats,
        "cv_seed": params.cv_seed,
        "fraction": data.fraction,
        "budget": data.budget,
        "stopped_by_time_budget": stopped,
        "seconds": time.perf_counter() - t0,
        "probe": (f"ridge (lambda {params.ridge:g})" if params.probe == "ridge" else "logistic (C = 1)")
        + f" on {'+'.join(data.models)}",
    }


#: Recent estimates by content (features, labels, budgets, parameters, fraction, strategy):
#: the estimate does not depend on the run's seed, so the evaluator's runs of ``auto`` with
#: several seeds compute it once.
_ESTIMATES: OrderedDict[str, dict] = OrderedDict()
_ESTIMATES_MAX = 16


def _estimate_key(data: SelectionData, budgets: np.ndarray, params: AutoParams) -> str:
    h = hashlib.sha256()
    for name, x in data.features.items():
        h.update(f"{name}:{x.shape}:{x.dtype}".encode())
        h.update(np.ascontiguousarray(x).view(np.uint8).data)
    for arr in (data.codes, np.asarray(budgets, dtype=np.int64)):
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update(
        repr(
            (
                sorted(params.to_dict().items()),
                data.fraction,
                data.budget,
                data.device.type,
                [str(c) for c in data.classes.tolist()],
            )
        ).encode()
    )
    return h.hexdigest()


def cached_estimate(data: SelectionData, budgets: np.ndarray, params: AutoParams) -> dict[str, Any]:
    """:func:`estimate`, memoised on the content it depends on (a copy is returned)."""
    import copy

    key = _estimate_key(data, budgets, params)
    if key in _ESTIMATES:
        _ESTIMATES.move_to_end(key)
        out = copy.deepcopy(_ESTIMATES[key])
        out["from_cache"] = True
        return out
    out = estimate(data, budgets, params)
    _ESTIMATES[key] = copy.deepcopy(out)
    while len(_ESTIMATES) > _ESTIMATES_MAX:
        _ESTIMATES.popitem(last=False)
    return out


def sample_note(data: SelectionData, rows: np.ndarray, params: AutoParams) -> dict[str, Any]:
    """What ``selection.json`` records of the estimate's sample (:func:`sample_rows`)."""
    n_classes = int(np.count_nonzero(data.sizes > 0))
    classes = int(np.unique(data.codes[rows]).size)
    why = []
    if classes < n_classes:
        why.append(
            f"the pool has {n_classes:,} classes, more than sample_classes = {params.sample_classes:,}: "
            f"{classes:,} classes drawn at random (the probe's cost grows with the classes)"
        )
    if len(rows) < data.n:
        why.append(
            f"{len(rows):,} of the pool's {data.n:,} rows (sample = {params.sample:,}), stratified by class, "
            f"every class at least {params.folds} rows or all of it; inside the folds the label consensus "
            "still votes with every pool row but the held-out ones"
        )
    return {
        "rows": int(len(rows)),
        "pool": int(data.n),
        "classes": classes,
        "pool_classes": n_classes,
        "sampled": bool(len(rows) < data.n),
        "why": "; ".join(why) if why else f"the whole pool ({data.n:,} rows, {n_classes:,} classes)",
    }


def _clean(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


@register_selector(
    "auto",
    AutoParams,
    "Recommended: tries the candidates by k-fold inside the pool against random subsets of the same "
    "size and uses the best (random when none beats it).",
    multi_model=True,
    stochastic=True,
    uses_fraction=True,
)
def auto(data: SelectionData, budgets: np.ndarray, params: AutoParams) -> SelectorOutput:
    budgets = np.asarray(budgets, dtype=np.int64)
    details: dict[str, Any]
    if budgets.sum() == 0 or np.array_equal(budgets, data.sizes):
        details = {
            "chosen": "random",
            "estimates": [],
            "note": "the budget keeps nothing or everything, so every method keeps the same rows; nothing to estimate",
        }
    elif data.n < params.folds:
        details = {
            "chosen": "random",
            "estimates": [],
            "note": f"the pool has fewer than {params.folds} rows, too few for k-fold; random is used",
        }
    else:
        details = cached_estimate(data, budgets, params)
    label = details["chosen"]
    spec, cand_params = next((s, p) for lab, s, p in parse_candidates(params.candidates) if lab == label)
    out = spec.fn(data, budgets, cand_params)
    details["chosen_method"] = spec.name
    details["chosen_params"] = cand_params.to_dict()
    details["estimates"] = [{k: _clean(v) for k, v in r.items()} for r in details["estimates"]]
    details.update({f"chosen_{k}": v for k, v in out.details.items()})
    columns = dict(out.columns)
    return SelectorOutput(out.order, columns, details)


def estimate_for(details: dict, candidate: str) -> dict | None:
    """The estimate row of ``candidate`` in ``auto``'s details, or None."""
    return next((e for e in details.get("estimates", []) if e.get("candidate") == candidate), None)


def describe_choice(details: dict, fraction: float) -> str:
    """One line for people: ``picked herding for 30 %: pool estimate +4.0 pp [3.1, 8.9] over random (41.9 %)``."""
    chosen = details.get("chosen", "?")
    if not details.get("estimates"):
        return f"picked {chosen} for {100 * fraction:g} %: {details.get('note', 'no estimate')}"
    e = estimate_for(details, chosen) or {}
    gain, lo, hi = e.get("gain"), e.get("gain_low"), e.get("gain_high")
    interval = f" [{lo:+.1f}, {hi:+.1f}]" if lo is not None and hi is not None else ""
    text = (
        f"picked {chosen} for {100 * fraction:g} %: pool estimate {gain:+.1f} pp{interval} against random "
        f"subsets of the same size (random {e.get('random_accuracy', float('nan')):.1f} % on the held-out folds)"
    )
    if chosen == "random":
        best = max(
            (r for r in details["estimates"] if r["candidate"] != "random"), key=lambda r: r["gain"], default=None
        )
        if best is not None:
            text = (
                f"picked random for {100 * fraction:g} %: no candidate beat random subsets in the pool estimate "
                f"(best: {best['candidate']} {best['gain']:+.1f} pp)"
            )
    if details.get("stopped_by_time_budget"):
        text += "; the time budget stopped it before every candidate was tried"
    return text


def below_random(details: dict, candidate: str) -> bool:
    """True when the pool estimate puts ``candidate`` below random: its whole interval under 0,
    or (one fold, no interval) its gain under -0.5 pp."""
    e = estimate_for(details, candidate)
    if candidate == "random" or e is None or e.get("gain") is None:  # random against random is noise
        return False
    if e.get("gain_high") is not None:
        return e["gain_high"] < 0
    return e["gain"] < -0.5


def candidate_spec(method: str, params: dict, defaults: dict) -> str:
    """``method`` with its non-default parameters as an auto candidate (``ccs:cutoff=0.2``)."""
    changed = [f"{k}={v}" for k, v in params.items() if defaults.get(k) != v]
    bad = [c for c in changed if ":" in c or "," in c]
    if bad:
        raise SelectionInputError(f"Cannot check {method} against random with parameter {bad[0]!r} (':' or ',').")
    return ":".join([method] + changed)
