"""Quality benchmark: is the selected subset better than a random one of the same size?

Datasets (the paper's fine- vs coarse-grained contrast):

* ``flowers``: Oxford Flowers-17 from ``../shared/data/finegrained`` (17 species, 952 train
  / 408 test, its ``manifest.csv`` split);
* ``fashion-mnist``: Fashion-MNIST from the Debian package ``dataset-fashion-mnist``,
  written as PNG files by :func:`core.fashion_mnist.export_image_folder` into the
  workspace (never the repository): a stratified, seeded (seed 0) 10,000-image training
  pool (1,000 per class) and the official 10,000 test images.

Protocol (:mod:`core.evaluation`): selection features ``effnet-lite0`` + ``effnet-lite1``;
evaluation: linear probe (standardised features, multinomial logistic regression,
C = 1.0 fixed, never tuned) on ``effnet-lite2`` features, a model that did not select.
Methods ``random, ram_apl, min, moderate_ds, kcenter, herding, facility_location`` with
the ``paper`` budget plus ``ram_apl@difficulty``; fractions 1/10/30/50/70 %; 5 seeds;
clean labels and 20 % symmetric label noise on the training pool (test labels clean).
Every method is compared with random subsets at exactly its per-class budgets (one per
seed) and with the full training pool. No parameter is chosen by looking at test accuracy:
all are the defaults.

Writes ``bench/results/quality.md`` (accuracy mean ± sample std per method and fraction,
difference to random with its 95 % interval, full-data accuracy, mean rank, wall time),
``bench/results/quality_<dataset>.json`` (the reports) and, in the workspace,
``bench-quality/<dataset>/report.html``. Finished cells are cached in the workspace, so an
interrupted run resumes where it stopped.

Usage::

    python bench/quality.py                                    # the full benchmark
    python bench/quality.py --datasets flowers --fractions 0.1 --seeds 2 --methods ram_apl,random
    python bench/quality.py --limit 20                         # at most 20 images per class and split
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core.datasets import load_dataset  # noqa: E402
from core.embedding import embed_dataset  # noqa: E402
from core.evaluation import EvalConfig, EvaluationReport, parse_fractions, parse_methods, run_plan  # noqa: E402
from core.export import export_report  # noqa: E402
from core.workspace import resolve_workspace  # noqa: E402

DATASETS = ("flowers", "fashion-mnist")
METHODS = "random,ram_apl,min,moderate_ds,kcenter,herding,facility_location,ram_apl@difficulty"
FRACTIONS = "0.01,0.1,0.3,0.5,0.7"
SELECTION_MODELS = ("effnet-lite0", "effnet-lite1")
EVAL_MODEL = "effnet-lite2"
FLOWERS = REPO.parent / "shared" / "data" / "finegrained" / "manifest.csv"


def load(name: str, workspace: Path):
    if name == "flowers":
        return load_dataset(str(FLOWERS), workspace=workspace)
    if name == "fashion-mnist":
        from core.fashion_mnist import export_image_folder

        dest = workspace / "bench-quality" / "fashion-mnist-images"
        marker = dest / ".complete"
        if not marker.is_file():
            print(f"writing Fashion-MNIST images to {dest} ...", file=sys.stderr)
            export_image_folder(dest, train_per_class=1000, test_per_class=None, seed=0)
            marker.write_text("train_per_class=1000 test_per_class=None seed=0\n")
        return load_dataset(str(dest), workspace=workspace)
    raise SystemExit(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")


def limit_dataset(ds, per_class: int, seed: int = 0):
    """At most ``per_class`` images of each class in each split (seeded), for smoke runs."""
    rng = np.random.default_rng(seed)
    labels, splits = np.asarray(ds.labels), np.asarray(ds.splits)
    keep = []
    for s in np.unique(splits):
        for c in np.unique(labels):
            idx = np.flatnonzero((splits == s) & (labels == c))
            keep.append(idx if len(idx) <= per_class else rng.choice(idx, per_class, replace=False))
    keep = np.sort(np.concatenate(keep))
    pick = lambda xs: [xs[i] for i in keep]  # noqa: E731
    return dataclasses.replace(ds, name=f"{ds.name} (limit {per_class})", paths=pick(ds.paths),
                               labels=pick(ds.labels), splits=pick(ds.splits), file_ids=pick(ds.file_ids),
                               image_sizes=pick(ds.image_sizes), fingerprint="")


# --------------------------------------------------------------------------- markdown
def _f(v: float, d: int = 2) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.{d}f}"


def dataset_markdown(name: str, report: EvaluationReport, embed_s: float, wall_s: float) -> list[str]:
    frame = report.results_frame()
    split = report.protocol["split"]
    cfg = report.config
    fractions = report.plan["fractions"]
    lines = [f"## {name}", ""]
    lines.append(f"- data: {report.dataset.get('name')} — {split['n_pool']} training images (selection pool), "
                 f"{split['n_test']} test images ({split['source']}), {len(report.protocol['classes'])} classes; "
                 f"fingerprint `{str(report.dataset.get('fingerprint', ''))[:16]}`")
    lines.append(f"- selection features: {', '.join(report.features['selection_models'])}; evaluation: "
                 f"{cfg['trainer']} probe (C = {cfg['trainer_params'].get('C')}) on {report.features['eval_model']}")
    lines.append(f"- seeds: {', '.join(map(str, cfg['seeds']))}; label noise: "
                 + ", ".join(f"{n['rate']:g} ({n['n_flipped']} training labels flipped, seed {n['seed']})"
                             for n in report.protocol["noise"]))
    lines.append(f"- wall time: {wall_s / 60:.1f} min (embedding {embed_s / 60:.1f} min; selection "
                 f"{report.timing_s.get('select', 0) / 60:.1f} min, training {report.timing_s.get('train', 0) / 60:.1f} "
                 f"min; {report.stats['cells_computed']} cells computed, {report.stats['cells_cached']} from cache, "
                 f"{report.stats['fits']} probe fits)")
    lines.append("")
    ranks = report.mean_ranks()
    for noise in report.plan["noise_levels"]:
        sub = frame[frame["noise"] == noise]
        title = "clean labels" if noise == 0 else f"{noise:.0%} symmetric label noise"
        full = sub["full"].mean()
        lines += [f"### {name}, {title}", "",
                  f"Full training set: **{_f(full)} %** top-1. Accuracy in %, mean ± sample std over the seeds "
                  "(deterministic selectors give one subset: their std is 0 with a linear probe).", ""]
        head = "| method | " + " | ".join(f"{p:g}" for p in fractions) + " | mean rank |"
        lines += [head, "|---|" + "---:|" * (len(fractions) + 1)]
        for method in dict.fromkeys(sub["method"]):
            m = sub[sub["method"] == method].set_index("fraction")
            cells = [f"{_f(m.loc[p, 'acc'])} ± {_f(m.loc[p, 'acc_std'])}" if p in m.index else "–" for p in fractions]
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {_f(ranks.get(noise, {}).get(method, math.nan))} |")
        lines += ["", "Difference to random at the same per-class budgets (percentage points, 95 % interval; "
                      "**bold**: the interval excludes 0):", ""]
        lines += ["| method | " + " | ".join(f"{p:g}" for p in fractions) + " |", "|---|" + "---:|" * len(fractions)]
        for method in dict.fromkeys(sub["method"]):
            if method == "random":
                continue
            m = sub[sub["method"] == method].set_index("fraction")
            cells = []
            for p in fractions:
                if p not in m.index:
                    cells.append("–")
                    continue
                r = m.loc[p]
                txt = f"{r['diff']:+.2f} [{_f(r['ci_low'])}, {_f(r['ci_high'])}]"
                sig = math.isfinite(r["ci_low"]) and (r["ci_low"] > 0 or r["ci_high"] < 0)
                cells.append(f"**{txt}**" if sig else txt)
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        if noise > 0:
            lines += ["", "Label-flipped samples kept (mean over seeds; random: its own subsets at the paper budget):",
                      "", "| method | " + " | ".join(f"{p:g}" for p in fractions) + " |",
                      "|---|" + "---:|" * len(fractions)]
            for method in dict.fromkeys(sub["method"]):
                m = sub[sub["method"] == method].set_index("fraction")
                cells = [f"{m.loc[p, 'flipped_kept']:.0f} / {m.loc[p, 'kept']}" if p in m.index else "–"
                         for p in fractions]
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ram_apl_notes(name, frame)
    return lines


def ram_apl_notes(name: str, frame) -> list[str]:
    """Where RAM-APL (paper budget) does not beat random (the reading is in bench/README.md)."""
    sub = frame[frame["method"] == "ram_apl"]
    if sub.empty:
        return []
    worse = sub[sub["ci_high"] < 0]
    not_better = sub[~(sub["ci_low"] > 0)]
    out = [f"**RAM-APL vs random on {name}.** "]
    if not_better.empty:
        out[0] += "RAM-APL beats random (interval above 0) at every fraction and noise level."
        return out + [""]
    where = ", ".join(f"p = {r.fraction:g} (noise {r.noise:g}: {r.diff:+.2f} pp)" for r in not_better.itertuples())
    out[0] += f"Not significantly better than random at {where}"
    if not worse.empty:
        out[0] += "; significantly worse at " + ", ".join(f"p = {r.fraction:g} (noise {r.noise:g})"
                                                          for r in worse.itertuples())
    out[0] += "."
    out.append("")
    out.append("What these figures suggest, and why, is discussed by hand in `bench/README.md` (section "
               "\"Selection quality\"; written by hand, so re-read it when these figures change).")
    out.append("")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default=",".join(DATASETS), help=f"comma-separated, of {', '.join(DATASETS)}")
    ap.add_argument("--methods", default=METHODS, help=f"default {METHODS}")
    ap.add_argument("--fractions", default=FRACTIONS, help=f"default {FRACTIONS}")
    ap.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    ap.add_argument("--noise", default="0,0.2", help="label-noise levels (default 0,0.2)")
    ap.add_argument("--limit", type=int, default=None, help="at most N images per class and split (smoke runs)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="images per forward pass (default: the engine's, 8 on the CPU, 64 on a GPU)")
    ap.add_argument("--workspace", default=None, help="cache/scratch folder (default: the coreset-studio workspace)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "quality.md"))
    args = ap.parse_args(argv)

    workspace = resolve_workspace(args.workspace)
    specs = parse_methods(args.methods)
    fractions = parse_fractions(args.fractions)
    levels = [float(x) for x in args.noise.split(",") if x.strip()]
    config = EvalConfig(trainer="linear", eval_model=EVAL_MODEL, seeds=tuple(range(args.seeds)))
    out_md = Path(args.out)
    started = time.perf_counter()
    sections: list[str] = []
    summary: list[str] = []
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        t0 = time.perf_counter()
        ds = load(name, workspace)
        if args.limit:
            ds = limit_dataset(ds, args.limit)
        print(ds.summary(), file=sys.stderr)
        t_embed = time.perf_counter()
        run_ = embed_dataset(ds, list(SELECTION_MODELS) + [EVAL_MODEL], device=args.device, batch_size=args.batch_size,
                             workspace=workspace,
                             progress=lambda m, d, t: print(f"\rembedding {m}: {d}/{t}", end="", file=sys.stderr))
        print("", file=sys.stderr)
        embed_s = time.perf_counter() - t_embed
        tag = name + (f"-limit{args.limit}" if args.limit else "")
        last = [0.0]

        def progress(done: int, total: int, what: str) -> None:
            now = time.perf_counter()
            if now - last[0] > 5 or done == total:
                last[0] = now
                print(f"[{name}] {done}/{total} cells ({what}) {now - t0:.0f} s", file=sys.stderr)

        report = run_plan(run_.features, specs, fractions, config, noise_levels=levels,
                          selection_models=list(SELECTION_MODELS), cache_dir=workspace / "bench-quality" / "cells" / tag,
                          device=args.device, progress=progress, extra_timing={"embedding": embed_s})
        wall = time.perf_counter() - t0
        report.timing_s["wall"] = wall
        export_report(workspace / "bench-quality" / tag, report, run_.features, selections=False)
        report.save(out_md.parent / f"quality_{tag}.json")
        sections += dataset_markdown(name, report, embed_s, wall)
        full = report.results_frame().groupby("noise")["full"].mean()
        summary.append(f"| {name} | " + " | ".join(f"{_f(full.get(n, math.nan))}" for n in levels) + f" | {wall / 60:.1f} |")
        print(report.format_table(), file=sys.stderr)
        print(f"[{name}] report.html: {workspace / 'bench-quality' / tag / 'report.html'}", file=sys.stderr)
        write_markdown(out_md, args, levels, summary, sections, time.perf_counter() - started)
    return 0


def write_markdown(out_md: Path, args: argparse.Namespace, levels: list[float], summary: list[str],
                   sections: list[str], total: float) -> None:
    """Write quality.md with the datasets finished so far (called after each dataset)."""
    from core.provenance import machine_description, package_versions

    header = [
        "# Quality benchmark: selected subset vs random subset vs full training set", "",
        "Generated by `bench/quality.py`" + (f" with `{' '.join(sys.argv[1:])}`" if sys.argv[1:] else "")
        + f". Total wall time {total / 60:.1f} min on {machine_description()['platform']} "
        f"({machine_description()['cpus']} CPUs, device {args.device}).", "",
        "Protocol: selection on `effnet-lite0` + `effnet-lite1` features; evaluation by a linear probe (standardised "
        "features, multinomial logistic regression, C = 1.0 fixed, never tuned on test data) on `effnet-lite2` "
        "features. Each method is compared with random subsets at exactly its per-class budgets (one per seed) and "
        "with the full training pool. Difference to random: mean(method) − mean(random) with a 95 % Welch t "
        "interval; when the method's accuracy does not vary over the seeds (deterministic selector, deterministic "
        "probe) this is the one-sample t interval over the random seeds. Label noise: each training label flipped "
        "with probability η to a uniformly drawn other class (seed 0); selection and training see the noisy "
        "labels, test labels are clean. Mean rank: rank of the mean accuracy among the methods at each fraction "
        "(1 = best), averaged over the fractions.", "",
        "| dataset | " + " | ".join(f"full-data acc. %, noise {n:g}" for n in levels) + " | wall time (min) |",
        "|---|" + "---:|" * (len(levels) + 1), *summary, "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in package_versions().items()), "",
    ]
    out_md.parent.mkdir(parents=True, exist_ok=True)
    from core.workspace import atomic_write_text

    atomic_write_text(out_md, "\n".join(header + sections) + "\n")
    print(f"wrote {out_md} after {total / 60:.1f} min", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
