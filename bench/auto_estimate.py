"""Does a cheaper ``auto`` estimate choose as the full one does? (bench/quality.py's cells)

``auto`` picks a method by k-fold inside the pool (:mod:`core.selection.auto`). On large pools
it must be cheaper: it estimates on a stratified sample of the pool (``sample`` rows of at
most ``sample_classes`` classes).
This benchmark runs, on every cell of ``bench/quality.py`` (Flowers-17 and Fashion-MNIST,
clean and 20 % label noise, fractions 1-70 %, ``paper`` budget, same split, noise and
features), ``auto``'s estimate with each *variant* of its parameters, and

* the **test accuracy of every candidate** (the linear probe on ``effnet-lite2`` features,
  mean over 5 seeds, as ``bench/quality.py`` measures it) to score each choice: the *regret*
  of a choice is the best candidate's test accuracy minus the chosen one's (pp);
* per variant: the method chosen in each cell, whether it is the reference's choice, the
  regret, and the estimate's wall time.

The reference is the full estimate (the whole pool, logistic probe on every feature). The
test accuracies are read only here, to report; no variant or default is picked by them
(``bench/README.md`` says how the defaults were chosen).

Usage::

    python bench/auto_estimate.py                                  # every cell, default variants
    python bench/auto_estimate.py --datasets flowers --fractions 0.1 --variants reference,pca256

Finished cells are cached in the workspace (``bench-auto/``), so a rerun computes what is new.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.quality import DATASETS, EVAL_MODEL, FRACTIONS, SELECTION_MODELS, load  # noqa: E402

#: Parameter sets of auto compared with the reference (a fraction ``sample`` is a share of the pool).
VARIANTS: dict[str, dict] = {
    "reference": {"sample": 0, "sample_classes": 0},
    "sampled50": {"sample": 0.5, "sample_classes": 0},
    "sampled30": {"sample": 0.3, "sample_classes": 0},
}
DEFAULT_VARIANTS = "reference,sampled50,sampled30"
CACHE_VERSION = 1


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps([CACHE_VERSION, *parts], sort_keys=True, default=str).encode()).hexdigest()[:32]


class Cache:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def get(self, key: str):
        path = self.folder / f"{key}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def put(self, key: str, value) -> None:
        from core.workspace import atomic_write_text

        atomic_write_text(self.folder / f"{key}.json", json.dumps(value, default=float))


def candidate_accuracies(fs, candidates, fractions, levels, seeds: int, cache_dir: Path) -> dict:
    """``{(noise, fraction, candidate label): test accuracy %}``, mean over the seeds, from
    :func:`core.evaluation.run_plan` with bench/quality.py's own cell cache (``cache_dir``), so
    the cells either benchmark computes are the other's too."""
    from core.evaluation import EvalConfig, run_plan
    from core.evaluation.plan import MethodSpec

    specs = [MethodSpec(spec.name, "paper", params.to_dict()) for _, spec, params in candidates]
    config = EvalConfig(trainer="linear", eval_model=EVAL_MODEL, seeds=tuple(range(seeds)))
    report = run_plan(
        fs,
        specs,
        fractions,
        config,
        noise_levels=levels,
        selection_models=list(SELECTION_MODELS),
        cache_dir=cache_dir,
        device="cpu",
        progress=lambda d, t, w: print(f"\rcandidates: {d}/{t} cells ({w})", end="", file=sys.stderr),
    )
    print("", file=sys.stderr)
    out = {}
    for label, spec, params in candidates:
        want = json.dumps(params.to_dict(), sort_keys=True)
        for cell in report.cells:
            if cell.method == spec.name and cell.budget == "paper" and json.dumps(cell.params, sort_keys=True) == want:
                out[(cell.label_noise, cell.fraction, label)] = 100.0 * float(np.mean(cell.method_result.accuracy))
    return out


def variant_params(variant: dict, pool: int) -> dict:
    out = dict(variant)
    if isinstance(out.get("sample"), float):
        out["sample"] = max(1, int(round(out["sample"] * pool)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--fractions", default=FRACTIONS)
    ap.add_argument("--noise", default="0,0.2")
    ap.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"of {', '.join(VARIANTS)}")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--workspace", default=None)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "auto_estimate.md"))
    args = ap.parse_args(argv)

    from core.embedding import embed_dataset
    from core.evaluation import EvalConfig
    from core.evaluation.protocol import Evaluator
    from core.provenance import machine_description
    from core.selection.auto import parse_candidates
    from core.selection.params import DEFAULT_AUTO_CANDIDATES
    from core.workspace import resolve_workspace

    ws = resolve_workspace(args.workspace)
    cache = Cache(ws / "bench-auto")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
    fractions = [float(f) for f in args.fractions.split(",")]
    levels = [float(x) for x in args.noise.split(",")]
    candidates = parse_candidates(DEFAULT_AUTO_CANDIDATES)
    rows = []
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        ds = load(name, ws)
        fs = embed_dataset(ds, list(SELECTION_MODELS) + [EVAL_MODEL], workspace=ws).features
        digest = hashlib.sha256(str(ds.fingerprint).encode()).hexdigest()[:16]
        accs = candidate_accuracies(
            fs, candidates, fractions, levels, args.seeds, ws / "bench-quality" / "cells" / name
        )
        for noise in levels:
            config = EvalConfig(
                trainer="linear", eval_model=EVAL_MODEL, seeds=tuple(range(args.seeds)), label_noise=noise
            )
            ev = Evaluator(fs, config, list(SELECTION_MODELS), device="cpu")
            pool = len(ev.split.pool)
            for p in fractions:
                acc = {label: accs[(noise, p, label)] for label, _, _ in candidates}
                best = max(acc.values())
                for v in variants:
                    params = variant_params(VARIANTS[v], pool)
                    key = _key("variant", digest, noise, p, params)
                    hit = cache.get(key)
                    if hit is None:
                        t0 = time.perf_counter()
                        r = ev.select("auto", p, params=params)
                        hit = {
                            "chosen": r.details["chosen"],
                            "seconds": time.perf_counter() - t0,
                            "estimate_seconds": r.details.get("seconds"),
                            "sample": r.details.get("sample"),
                            "estimates": {e["candidate"]: e["gain"] for e in r.details.get("estimates", [])},
                        }
                        cache.put(key, hit)
                    rows.append(
                        {
                            "dataset": name,
                            "noise": noise,
                            "fraction": p,
                            "variant": v,
                            "chosen": hit["chosen"],
                            "regret": best - acc[hit["chosen"]],
                            "seconds": hit["seconds"],
                            "acc": acc,
                        }
                    )
                    print(
                        f"[{name} noise {noise:g} p {p:g}] {v:16s} chose {hit['chosen']:22s} regret "
                        f"{best - acc[hit['chosen']]:5.2f} pp  {hit['seconds']:6.1f} s",
                        file=sys.stderr,
                    )
    lines = report(rows, variants, machine_description())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def report(rows: list[dict], variants: list[str], machine: dict) -> list[str]:
    ref = {(r["dataset"], r["noise"], r["fraction"]): r for r in rows if r["variant"] == "reference"}
    lines = [
        "# auto's estimate: cheaper variants against the full one",
        "",
        f"Generated by `bench/auto_estimate.py` on {machine.get('platform')} ({machine.get('cpus')} CPUs). "
        "Per cell of bench/quality.py: the method each variant of auto's estimate chose, and its regret (pp) = "
        "best candidate's test accuracy - the chosen candidate's (linear probe on effnet-lite2, 5 seeds).",
        "",
        "| variant | params | same choice as reference | mean regret (pp) | worst regret (pp) | mean estimate time (s) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for v in variants:
        mine = [r for r in rows if r["variant"] == v]
        if not mine:
            continue
        same = [r["chosen"] == ref[(r["dataset"], r["noise"], r["fraction"])]["chosen"] for r in mine if ref]
        lines.append(
            f"| {v} | `{json.dumps(VARIANTS[v])}` | {sum(same)} / {len(same)} | "
            f"{np.mean([r['regret'] for r in mine]):.2f} | {max(r['regret'] for r in mine):.2f} | "
            f"{np.mean([r['seconds'] for r in mine]):.1f} |"
        )
    lines += [
        "",
        "| dataset | noise | fraction | " + " | ".join(variants) + " |",
        "|---|---:|---:|" + "---|" * len(variants),
    ]
    cells = sorted({(r["dataset"], r["noise"], r["fraction"]) for r in rows})
    for cell in cells:
        by = {r["variant"]: r for r in rows if (r["dataset"], r["noise"], r["fraction"]) == cell}
        lines.append(
            f"| {cell[0]} | {cell[1]:g} | {cell[2]:g} | "
            + " | ".join(
                f"{by[v]['chosen']} ({by[v]['regret']:.2f}, {by[v]['seconds']:.0f} s)" if v in by else "–"
                for v in variants
            )
            + " |"
        )
    lines += ["", "Candidate test accuracies (%):", ""]
    cands = list(rows[0]["acc"]) if rows else []
    lines += ["| dataset | noise | fraction | " + " | ".join(cands) + " |", "|---|---:|---:|" + "---:|" * len(cands)]
    for cell in cells:
        r = next(r for r in rows if (r["dataset"], r["noise"], r["fraction"]) == cell)
        lines.append(
            f"| {cell[0]} | {cell[1]:g} | {cell[2]:g} | "
            + " | ".join("–" if not math.isfinite(r["acc"][c]) else f"{r['acc'][c]:.2f}" for c in cands)
            + " |"
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())
