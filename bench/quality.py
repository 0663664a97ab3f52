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
Methods ``random, ram_apl, min, moderate_ds, kcenter, herding, facility_location, cleaned,
ccs, bws, auto`` with the ``paper`` budget plus ``ram_apl@difficulty``; fractions
1/10/30/50/70 %; 5 seeds;
clean labels and 20 % symmetric label noise on the training pool (test labels clean).
Every method is compared with random subsets at exactly its per-class budgets (one per
seed) and with the full training pool. No parameter is chosen by looking at test accuracy:
all are the defaults.

Writes ``bench/results/quality.md`` (accuracy mean ± sample std per method and fraction,
difference to random with its 95 % interval, full-data accuracy, mean rank, wall time;
``auto``'s choices and regret against the best fixed method; the label-issue table of our
label consensus against cleanlab's ``find_label_issues`` on out-of-fold probabilities of a
logistic probe on the same selection features, at 20 % flips and on the clean labels),
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
METHODS = "random,ram_apl,min,moderate_ds,kcenter,herding,facility_location,ram_apl@difficulty,cleaned,ccs,bws,auto"
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
    return dataclasses.replace(
        ds,
        name=f"{ds.name} (limit {per_class})",
        paths=pick(ds.paths),
        labels=pick(ds.labels),
        splits=pick(ds.splits),
        file_ids=pick(ds.file_ids),
        image_sizes=pick(ds.image_sizes),
        fingerprint="",
    )


# --------------------------------------------------------------------------- markdown
def _f(v: float, d: int = 2) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.{d}f}"


def dataset_markdown(name: str, report: EvaluationReport, embed_s: float, wall_s: float) -> list[str]:
    frame = report.results_frame()
    split = report.protocol["split"]
    cfg = report.config
    fractions = report.plan["fractions"]
    lines = [f"## {name}", ""]
    lines.append(
        f"- data: {report.dataset.get('name')} — {split['n_pool']} training images (selection pool), "
        f"{split['n_test']} test images ({split['source']}), {len(report.protocol['classes'])} classes; "
        f"fingerprint `{str(report.dataset.get('fingerprint', ''))[:16]}`"
    )
    lines.append(
        f"- selection features: {', '.join(report.features['selection_models'])}; evaluation: "
        f"{cfg['trainer']} probe (C = {cfg['trainer_params'].get('C')}) on {report.features['eval_model']}"
    )
    lines.append(
        f"- seeds: {', '.join(map(str, cfg['seeds']))}; label noise: "
        + ", ".join(
            f"{n['rate']:g} ({n['n_flipped']} training labels flipped, seed {n['seed']})"
            for n in report.protocol["noise"]
        )
    )
    lines.append(
        f"- wall time: {wall_s / 60:.1f} min (embedding {embed_s / 60:.1f} min; selection "
        f"{report.timing_s.get('select', 0) / 60:.1f} min, training {report.timing_s.get('train', 0) / 60:.1f} "
        f"min; {report.stats['cells_computed']} cells computed, {report.stats['cells_cached']} from cache, "
        f"{report.stats['fits']} probe fits)"
    )
    lines.append("")
    ranks = report.mean_ranks()
    for noise in report.plan["noise_levels"]:
        sub = frame[frame["noise"] == noise]
        title = "clean labels" if noise == 0 else f"{noise:.0%} symmetric label noise"
        full = sub["full"].mean()
        lines += [
            f"### {name}, {title}",
            "",
            f"Full training set: **{_f(full)} %** top-1. Accuracy in %, mean ± sample std over the seeds "
            "(deterministic selectors give one subset: their std is 0 with a linear probe).",
            "",
        ]
        head = "| method | " + " | ".join(f"{p:g}" for p in fractions) + " | mean rank |"
        lines += [head, "|---|" + "---:|" * (len(fractions) + 1)]
        for method in dict.fromkeys(sub["method"]):
            m = sub[sub["method"] == method].set_index("fraction")
            cells = [f"{_f(m.loc[p, 'acc'])} ± {_f(m.loc[p, 'acc_std'])}" if p in m.index else "–" for p in fractions]
            lines.append(
                f"| {method} | " + " | ".join(cells) + f" | {_f(ranks.get(noise, {}).get(method, math.nan))} |"
            )
        lines += [
            "",
            "Difference to random at the same per-class budgets (percentage points, 95 % interval; "
            "**bold**: the interval excludes 0):",
            "",
        ]
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
            lines += [
                "",
                "Label-flipped samples kept (mean over seeds; random: its own subsets at the paper budget):",
                "",
                "| method | " + " | ".join(f"{p:g}" for p in fractions) + " |",
                "|---|" + "---:|" * len(fractions),
            ]
            for method in dict.fromkeys(sub["method"]):
                m = sub[sub["method"] == method].set_index("fraction")
                cells = [
                    f"{m.loc[p, 'flipped_kept']:.0f} / {m.loc[p, 'kept']}" if p in m.index else "–" for p in fractions
                ]
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += auto_section(name, report)
    lines += ram_apl_notes(name, frame)
    return lines


def regret_table(frame) -> dict:
    """Per cell (noise, fraction): regret of every method = best mean accuracy of the cell minus its own (pp)."""
    out = {}
    for (noise, p), sub in frame.groupby(["noise", "fraction"]):
        best = sub["acc"].max()
        out[(noise, p)] = {m: float(best - a) for m, a in zip(sub["method"], sub["acc"])}
    return out


def auto_section(name: str, report: EvaluationReport) -> list[str]:
    """``auto``'s choices per cell, its pool estimate, the test result, and its regret."""
    frame = report.results_frame()
    cells = [c for c in report.cells if c.method == "auto" and c.budget == "paper"]
    if not cells:
        return []
    lines = [
        f"### {name}: what `auto` chose, and its regret",
        "",
        "Per cell: the method `auto` picked from the pool alone (k-fold inside the training pool, ridge probe on "
        "the selection features; no test label read), its pool estimate of the gain over random (pp, 95 % "
        "interval over the folds), and on the test set its difference to random and its regret (pp below the "
        "best method of the cell).",
        "",
        "| noise | fraction | chosen | pool estimate (pp) | test: diff to random (pp) | regret (pp) |",
        "|---:|---:|---|---:|---:|---:|",
    ]
    regrets = regret_table(frame)
    for c in cells:
        d = c.selection.get("details", {})
        est = {e["candidate"]: e for e in d.get("estimates", [])}.get(d.get("chosen"), {})
        e_txt = (
            f"{est['gain']:+.2f} [{_f(est.get('gain_low'))}, {_f(est.get('gain_high'))}]"
            if est.get("gain") is not None
            else "–"
        )
        row = frame[(frame["method"] == "auto") & (frame["noise"] == c.label_noise) & (frame["fraction"] == c.fraction)]
        r = row.iloc[0]
        sig = math.isfinite(r["ci_low"]) and (r["ci_low"] > 0 or r["ci_high"] < 0)
        diff = f"{r['diff']:+.2f} [{_f(r['ci_low'])}, {_f(r['ci_high'])}]"
        lines.append(
            f"| {c.label_noise:g} | {c.fraction:g} | {d.get('chosen', '?')} | {e_txt} | "
            f"{'**' + diff + '**' if sig else diff} | {regrets[(c.label_noise, c.fraction)]['auto']:.2f} |"
        )
    methods = [m for m in dict.fromkeys(frame["method"]) if m != "auto"]
    mean_regret = {m: float(np.mean([r[m] for r in regrets.values() if m in r])) for m in methods + ["auto"]}
    best_fixed = min(methods, key=lambda m: mean_regret[m])
    auto_rows = frame[frame["method"] == "auto"]
    n_cells = len(auto_rows)
    not_below = int((auto_rows["diff"] >= -0.5).sum())
    above = int((auto_rows["ci_low"] > 0).sum())
    lines += [
        "",
        f"Mean regret over the {len(regrets)} cells: **auto {mean_regret['auto']:.2f} pp**; best fixed method "
        f"**{best_fixed} {mean_regret[best_fixed]:.2f} pp**; others: "
        + ", ".join(
            f"{m} {mean_regret[m]:.2f}" for m in sorted(methods, key=lambda m: mean_regret[m]) if m != best_fixed
        )
        + ".",
        f"`auto` is at or above random (point estimate within −0.5 pp) in {not_below} of {n_cells} cells and "
        f"significantly above random in {above} of {n_cells}.",
        "",
    ]
    return lines


# --------------------------------------------------------------------------- label issues
def label_issue_rows(name: str, fs, pool: np.ndarray, test_rows: np.ndarray, rate: float, seed: int = 0) -> list[dict]:
    """Our label consensus and cleanlab on the same pool and features, with flips of ``rate``."""
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from core.evaluation.protocol import symmetric_label_noise
    from core.selection import label_consensus
    from core.selection.registry import SelectionData

    classes = np.unique(fs.labels)
    noisy, flipped = symmetric_label_noise(fs.labels, pool, rate, seed, classes)
    feats = {m: np.ascontiguousarray(fs.features[m][pool]) for m in SELECTION_MODELS}
    y = np.searchsorted(classes, noisy[pool])
    true = np.searchsorted(classes, fs.labels[pool])
    flips = flipped[pool]
    t0 = time.perf_counter()
    cons = label_consensus(SelectionData.build(feats, noisy[pool], 0.5, 0))
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    x = np.hstack([v / np.linalg.norm(v, axis=1, keepdims=True) for v in feats.values()])
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    probs = cross_val_predict(probe, x, y, cv=StratifiedKFold(5, shuffle=True, random_state=0), method="predict_proba")
    cl_flag = find_label_issues(y, probs)
    t_cl = time.perf_counter() - t0
    rows = []
    # suggested class of the flagged flips: ours = label consensus, cleanlab = argmax of its probabilities
    cons_sugg = cons.suggested  # codes are indices into the pool's sorted classes
    pool_classes = np.unique(noisy[pool])
    cons_sugg = np.searchsorted(classes, pool_classes[cons_sugg])
    for who, flag, sugg, secs in (
        ("ours", cons.suspect, cons_sugg, t_ours),
        ("cleanlab", cl_flag, np.argmax(probs, axis=1), t_cl),
    ):
        tp = int((flag & flips).sum())
        prec = tp / max(int(flag.sum()), 1)
        rec = tp / max(int(flips.sum()), 1) if flips.any() else math.nan
        f1 = 2 * prec * rec / (prec + rec) if flips.any() and prec + rec > 0 else math.nan
        hit = flag & flips
        rows.append(
            {
                "dataset": name,
                "noise": rate,
                "who": who,
                "flagged": int(flag.sum()),
                "share": flag.mean(),
                "precision": prec if flips.any() else math.nan,
                "recall": rec,
                "f1": f1,
                "suggested_ok": float((sugg[hit] == true[hit]).mean()) if hit.any() else math.nan,
                "seconds": secs,
            }
        )
    return rows


def label_issue_markdown(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    lines = [
        "## Label issues: our label consensus vs cleanlab",
        "",
        "Same pool, same selection features (effnet-lite0 + effnet-lite1). Ours: `core.selection.label_consensus` "
        "(k-NN and nearest-class-mean votes across the models, defaults). cleanlab: `cleanlab.filter."
        "find_label_issues` on 5-fold out-of-fold probabilities of a logistic probe (standardised, C = 1) on the "
        "L2-normalised concatenated features. At 20 % symmetric flips (seed 0) the flipped rows are known; on the "
        "clean labels every flag is a false alarm (or a real error of the dataset). `suggested ok`: share of the "
        "flagged flipped rows whose suggested class (ours: the consensus; cleanlab: the probe's argmax) is the "
        "true class.",
        "",
        "| dataset | labels | method | flagged | share | precision | recall | F1 | suggested ok | seconds |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lab = "clean" if r["noise"] == 0 else f"{r['noise']:.0%} flips"
        lines.append(
            f"| {r['dataset']} | {lab} | {r['who']} | {r['flagged']} | {100 * r['share']:.1f} % | "
            f"{_f(r['precision'])} | {_f(r['recall'])} | {_f(r['f1'])} | {_f(r['suggested_ok'])} | "
            f"{r['seconds']:.1f} |"
        )
    return lines + [""]


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
        out[0] += "; significantly worse at " + ", ".join(
            f"p = {r.fraction:g} (noise {r.noise:g})" for r in worse.itertuples()
        )
    out[0] += "."
    out.append("")
    out.append(
        "What these figures suggest, and why, is discussed by hand in `bench/README.md` (section "
        '"Selection quality"; written by hand, so re-read it when these figures change).'
    )
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
    ap.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="images per forward pass (default: the engine's, 8 on the CPU, 64 on a GPU)",
    )
    ap.add_argument("--workspace", default=None, help="cache/scratch folder (default: the coreset-studio workspace)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "quality.md"))
    ap.add_argument("--no-label-issues", action="store_true", help="skip the label-issue comparison with cleanlab")
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
    issue_rows: list[dict] = []
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        t0 = time.perf_counter()
        ds = load(name, workspace)
        if args.limit:
            ds = limit_dataset(ds, args.limit)
        print(ds.summary(), file=sys.stderr)
        t_embed = time.perf_counter()
        run_ = embed_dataset(
            ds,
            list(SELECTION_MODELS) + [EVAL_MODEL],
            device=args.device,
            batch_size=args.batch_size,
            workspace=workspace,
            progress=lambda m, d, t: print(f"\rembedding {m}: {d}/{t}", end="", file=sys.stderr),
        )
        print("", file=sys.stderr)
        embed_s = time.perf_counter() - t_embed
        tag = name + (f"-limit{args.limit}" if args.limit else "")
        last = [0.0]

        def progress(done: int, total: int, what: str, last=last, name=name, t0=t0) -> None:
            now = time.perf_counter()
            if now - last[0] > 5 or done == total:
                last[0] = now
                print(f"[{name}] {done}/{total} cells ({what}) {now - t0:.0f} s", file=sys.stderr)

        report = run_plan(
            run_.features,
            specs,
            fractions,
            config,
            noise_levels=levels,
            selection_models=list(SELECTION_MODELS),
            cache_dir=workspace / "bench-quality" / "cells" / tag,
            device=args.device,
            progress=progress,
            extra_timing={"embedding": embed_s},
        )
        wall = time.perf_counter() - t0
        report.timing_s["wall"] = wall
        export_report(workspace / "bench-quality" / tag, report, run_.features, selections=False)
        report.save(out_md.parent / f"quality_{tag}.json")
        sections += dataset_markdown(name, report, embed_s, wall)
        if not args.no_label_issues:
            from core.evaluation.protocol import make_split

            split = make_split(run_.features, config.holdout, config.holdout_seed)
            for rate in levels:
                issue_rows += label_issue_rows(name, run_.features, split.pool, split.test, rate)
                print(
                    f"[{name}] label issues at noise {rate:g}: "
                    + "; ".join(f"{r['who']} F1 {_f(r['f1'])} share {100 * r['share']:.1f} %" for r in issue_rows[-2:]),
                    file=sys.stderr,
                )
        full = report.results_frame().groupby("noise")["full"].mean()
        summary.append(
            f"| {name} | " + " | ".join(f"{_f(full.get(n, math.nan))}" for n in levels) + f" | {wall / 60:.1f} |"
        )
        print(report.format_table(), file=sys.stderr)
        print(f"[{name}] report.html: {workspace / 'bench-quality' / tag / 'report.html'}", file=sys.stderr)
        write_markdown(
            out_md, args, levels, summary, sections + label_issue_markdown(issue_rows), time.perf_counter() - started
        )
    return 0


def write_markdown(
    out_md: Path, args: argparse.Namespace, levels: list[float], summary: list[str], sections: list[str], total: float
) -> None:
    """Write quality.md with the datasets finished so far (called after each dataset)."""
    from core.provenance import machine_description, package_versions

    header = [
        "# Quality benchmark: selected subset vs random subset vs full training set",
        "",
        "Generated by `bench/quality.py`"
        + (f" with `{' '.join(sys.argv[1:])}`" if sys.argv[1:] else "")
        + f". Total wall time {total / 60:.1f} min on {machine_description()['platform']} "
        f"({machine_description()['cpus']} CPUs, device {args.device}).",
        "",
        "Protocol: selection on `effnet-lite0` + `effnet-lite1` features; evaluation by a linear probe (standardised "
        "features, multinomial logistic regression, C = 1.0 fixed, never tuned on test data) on `effnet-lite2` "
        "features. Each method is compared with random subsets at exactly its per-class budgets (one per seed) and "
        "with the full training pool. Difference to random: mean(method) − mean(random) with a 95 % Welch t "
        "interval; when the method's accuracy does not vary over the seeds (deterministic selector, deterministic "
        "probe) this is the one-sample t interval over the random seeds. Label noise: each training label flipped "
        "with probability η to a uniformly drawn other class (seed 0); selection and training see the noisy "
        "labels, test labels are clean. Mean rank: rank of the mean accuracy among the methods at each fraction "
        "(1 = best), averaged over the fractions.",
        "",
        "| dataset | " + " | ".join(f"full-data acc. %, noise {n:g}" for n in levels) + " | wall time (min) |",
        "|---|" + "---:|" * (len(levels) + 1),
        *summary,
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in package_versions().items()),
        "",
    ]
    out_md.parent.mkdir(parents=True, exist_ok=True)
    from core.workspace import atomic_write_text

    atomic_write_text(out_md, "\n".join(header + sections) + "\n")
    print(f"wrote {out_md} after {total / 60:.1f} min", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
