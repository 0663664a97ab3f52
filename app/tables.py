"""The app's display tables and figures' data, computed from core results (no Streamlit here):
dataset counts, headline figures, the ranking, budgets, overlaps, galleries, the Explore
plot's points, auto's estimates, evaluation accuracies and run comparisons."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.datasets import Dataset
from core.features import FeatureSet
from core.selection import SelectionResult
from core.text import display_text
from core.workflows import EvaluationOutcome


def class_count_frame(ds: Dataset) -> pd.DataFrame:
    """Long table: class, split, images (for a stacked bar chart)."""
    counts = ds.class_counts()
    return (
        counts.reset_index()
        .melt(id_vars="label", var_name="split", value_name="images")
        .rename(columns={"label": "class"})
    )


def class_paths(ds: Dataset, label: str, limit: int = 24, split: str | None = None) -> list[str]:
    out = [p for p, lab, sp in zip(ds.paths, ds.labels, ds.splits) if lab == label and (split is None or sp == split)]
    return out[:limit]


def suspected_mislabels(result: SelectionResult) -> pd.DataFrame:
    """Rows the label consensus flags (``suspected_mislabel``: another class is better supported
    by the models' neighbours and class means); without that column, RAM-APL's APL = 0.
    Empty when neither is there."""
    t = result.table
    if "suspected_mislabel" in t.columns:
        return t[t["suspected_mislabel"].astype(bool)]
    if "apl" in t.columns:
        return t[t["apl"] == 0]
    return t.iloc[0:0]


@dataclass(frozen=True)
class Headline:
    kept: int
    pool: int
    classes: int
    mislabels: int | None  # None: no label issues computed (pool too large)


def headline(result: SelectionResult) -> Headline:
    known = "suspected_mislabel" in result.table.columns or "apl" in result.table.columns
    return Headline(
        kept=int(result.n_selected),
        pool=int(len(result.table)),
        classes=int((result.budget_table["kept"] > 0).sum()),
        mislabels=int(len(suspected_mislabels(result))) if known else None,
    )


def mislabel_help(n_models: int) -> str:
    """What the "suspected mislabels" figure means, for the number of models used."""
    base = (
        "Label consensus: for each image, its 10 nearest neighbours and the nearest class mean vote in every "
        "model; an image is flagged when another class is clearly better supported than its own label "
        "(own label's support ≤ 5 %). The suggested class is the best-supported one."
    )
    if n_models <= 1:
        return base + (
            " With one model every vote comes from one feature space, so look-alike classes are "
            "flagged more often; embed a second model to make the flags sharper."
        )
    return base + f" {n_models} models vote; an image must look like another class in all of them."


def ranking_order(
    result: SelectionResult, classes: Sequence[str] | None = None, only_kept: bool = False
) -> pd.DataFrame:
    """The per-sample table in ranking order: kept first in selection order, then the dropped
    (pool order); filtered to ``classes`` and to the kept rows when asked."""
    t = result.table
    if classes:
        t = t[t["label"].astype(str).isin([str(c) for c in classes])]
    sel = t["selected"].to_numpy(dtype=bool)
    sort_col = "order" if "order" in t.columns else "index"
    kept = t[sel].sort_values(sort_col, kind="stable")
    return kept if only_kept else pd.concat([kept, t[~sel]])


def _ranking_display(t: pd.DataFrame, fs: FeatureSet, thumbs: Mapping[str, str] | None) -> pd.DataFrame:
    idx = t["index"].to_numpy(dtype=np.int64)
    paths = fs.paths[idx] if fs.paths is not None else np.full(len(t), "", dtype=object)
    front = pd.DataFrame(
        {
            "thumbnail": [thumbs.get(p) if thumbs else None for p in paths],
            "file": [display_text(Path(p).name) for p in paths],
        },
        index=t.index,
    )
    cols = [c for c in t.columns if not c.startswith("distance[")]
    return pd.concat([front, t[cols]], axis=1).reset_index(drop=True)


def ranking_frame(
    result: SelectionResult,
    fs: FeatureSet,
    thumbs: Mapping[str, str] | None = None,
    classes: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The per-sample table for display: thumbnail, file, then the method's columns (all rows)."""
    return _ranking_display(ranking_order(result, classes), fs, thumbs)


def ranking_page(order: pd.DataFrame, fs: FeatureSet, page: int, page_size: int) -> pd.DataFrame:
    """One page (``page`` from 0) of a ranking from :func:`ranking_order`, with the display
    columns of :func:`ranking_frame` made for that page only, so a page of a 100,000-image pool
    costs as little as one of the demo's."""
    start = max(0, int(page)) * int(page_size)
    return _ranking_display(order.iloc[start : start + int(page_size)], fs, None)


def budget_frame(result: SelectionResult) -> pd.DataFrame:
    """class, kept, dropped (for stacked bars) plus size and budget."""
    b = result.budget_table
    return pd.DataFrame(
        {
            "class": b["class"].astype(str),
            "kept": b["kept"].astype(int),
            "dropped": (b["size"] - b["kept"]).astype(int),
            "size": b["size"].astype(int),
            "budget": b["budget"].astype(int),
        }
    )


def overlap_frame(results: Mapping[str, SelectionResult]) -> pd.DataFrame:
    """Pairwise overlap of subsets: shared rows / size of the smaller subset (row run, column run)."""
    names = list(results)
    sets = {n: set(np.asarray(r.selected).tolist()) for n, r in results.items()}
    data = {}
    for b in names:
        col = []
        for a in names:
            inter = len(sets[a] & sets[b])
            denom = max(1, min(len(sets[a]), len(sets[b])))
            col.append(round(inter / denom, 3))
        data[b] = col
    return pd.DataFrame(data, index=names)


def count_text(value) -> str:
    """A count for display: the number, or "–" when it was not computed (one rule for every page)."""
    return "–" if value is None else f"{int(value):,}"


def compare_summary_frame(results: Mapping[str, SelectionResult]) -> pd.DataFrame:
    """Runs side by side: images kept and suspected mislabels ("–" when not computed)."""
    return pd.DataFrame(
        [
            {"run": rid, "kept": r.n_selected, "mislabels": count_text(headline(r).mislabels)}
            for rid, r in results.items()
        ]
    )


def shared_counts_frame(results: Mapping[str, SelectionResult]) -> pd.DataFrame:
    """Pairwise number of images kept by both runs (the diagonal: each run's size)."""
    names = list(results)
    sets = {n: set(np.asarray(r.selected).tolist()) for n, r in results.items()}
    return pd.DataFrame({b: [len(sets[a] & sets[b]) for a in names] for b in names}, index=names)


def overlap_by_class(a: SelectionResult, b: SelectionResult) -> pd.DataFrame:
    """Per class: images kept by run ``a``, by run ``b``, by both, and both / the smaller count."""

    def kept(r: SelectionResult) -> pd.Series:
        t = r.table
        return t.loc[t["selected"].to_numpy(dtype=bool)].groupby(t["label"].astype(str))["index"].apply(set)

    ka, kb = kept(a), kept(b)
    rows = []
    for c in sorted(set(a.table["label"].astype(str)) | set(b.table["label"].astype(str))):
        sa, sb = ka.get(c, set()), kb.get(c, set())
        shared = len(sa & sb)
        rows.append(
            {
                "class": c,
                "first run": len(sa),
                "second run": len(sb),
                "both": shared,
                "overlap": round(shared / max(1, min(len(sa), len(sb))), 3),
            }
        )
    return pd.DataFrame(rows)


def saved_runs_frame(records, embedding_key: str | None) -> pd.DataFrame:
    """The saved runs of a dataset for display: run, models, when, edits, evaluations, open here."""
    import datetime as _dt

    return pd.DataFrame(
        [
            {
                "run": r.run_id,
                "models": ", ".join(r.config.get("models", [])),
                "saved": _dt.datetime.fromtimestamp(r.created).strftime("%Y-%m-%d %H:%M"),
                "hand edits": r.n_edits,
                "evaluations": len(r.evaluations),
                "open here": r.config.get("embedding_key") == embedding_key,
            }
            for r in records
        ]
    )


@dataclass(frozen=True)
class Gallery:
    """One gallery of a class: its rows and a caption saying how they were chosen."""

    title: str
    rows: pd.DataFrame
    caption: str


def gallery_rows(result: SelectionResult, label: str, k: int = 12, offset: int = 0) -> dict[str, Gallery]:
    """The galleries of one class, read from the method's registry entry (its score column and
    which end is representative): ``representative``, ``hardest``, ``mislabels``, ``kept``, ``dropped``;
    ``k`` images each from position ``offset`` (paging).

    A method without a score column (greedy ones) shows its first picks as representative and,
    as hardest, the rows whose label the models agree with least (label consensus)."""
    from core.selection import get_selector

    spec = get_selector(result.method)
    t = result.table[result.table["label"].astype(str) == str(label)]
    col = spec.score_column if spec.score_column in t.columns else None
    out: dict[str, Gallery] = {}
    if col:
        low_first = spec.representative == "low"
        out["representative"] = Gallery(
            "Most representative",
            t.sort_values([col, "index"], ascending=[low_first, True]).iloc[offset : offset + k],
            f"{'Lowest' if low_first else 'Highest'} {col}: the typical end of {spec.name}'s ranking.",
        )
        out["hardest"] = Gallery(
            "Hardest",
            t.sort_values([col, "index"], ascending=[not low_first, True]).iloc[offset : offset + k],
            f"{'Highest' if low_first else 'Lowest'} {col}: the other end of {spec.name}'s ranking.",
        )
    else:
        out["representative"] = Gallery(
            "Picked first",
            t[t["selected"]].sort_values("order").iloc[offset : offset + k],
            f"{spec.name} has no per-image score; these are the images it picked first.",
        )
        if "label_agreement" in t.columns:
            out["hardest"] = Gallery(
                "Hardest",
                t.sort_values(["label_agreement", "index"]).iloc[offset : offset + k],
                "Least label agreement: the models' neighbours and class means vote least for this class.",
            )
        else:
            out["hardest"] = Gallery(
                "Hardest", t[~t["selected"]].iloc[offset : offset + k], "Dropped images (no score to rank by)."
            )
    mis = suspected_mislabels(result)
    out["mislabels"] = Gallery(
        "Suspected mislabels",
        mis[mis["label"].astype(str) == str(label)].iloc[offset : offset + k],
        "Flagged by the label consensus; the caption names the class the models suggest.",
    )
    out["kept"] = Gallery(
        "Kept", t[t["selected"]].sort_values("order").iloc[offset : offset + k], "Kept, in selection order."
    )
    out["dropped"] = Gallery(
        "Dropped", t[~t["selected"]].iloc[offset : offset + k], f"{int((~t['selected']).sum())} dropped."
    )
    return out


def gallery_caption(row: pd.Series, score_column: str | None) -> str:
    """A short caption of one gallery image (one line under a 96 px image): the method's score
    and, for a suspected mislabel, the class the models suggest with their confidence."""
    bits = []
    if score_column and score_column in row.index and pd.notna(row[score_column]):
        bits.append(f"{score_column} {float(row[score_column]):.2f}")
    if "suspected_mislabel" in row.index and bool(row["suspected_mislabel"]):
        bits.append(f"→ {row['suggested_class']} {float(row['label_confidence']):.0%}")
    return " · ".join(bits) or f"#{int(row['index'])}"


def short_name(path: str, width: int = 14) -> str:
    """A file name cut to ``width`` characters (middle elided) for a button under a thumbnail."""
    name = display_text(os.path.basename(str(path)))
    return name if len(name) <= width else name[: width // 2 - 1] + "…" + name[-(width - width // 2) :]


AUTO_ESTIMATE_NOTE = (
    "Each candidate selected from 2 of 3 folds of your training images at this fraction; a "
    "linear probe (the evaluation's logistic regression) trained on its subset was scored on the third fold and compared with random "
    "subsets of the same per-class sizes. Gain in percentage points with a 95 % interval over "
    "the folds. Test images are never used."
)


def auto_estimates_frame(details: dict) -> pd.DataFrame:
    """auto's candidates for display: pool accuracy, gain over random with its interval, chosen."""
    rows = []
    for e in details.get("estimates", []):
        lo, hi = e.get("gain_low"), e.get("gain_high")
        rows.append(
            {
                "candidate": e["candidate"],
                "chosen": e["candidate"] == details.get("chosen"),
                "pool accuracy %": round(float(e["accuracy"]), 1),
                "gain over random (pp)": round(float(e["gain"]), 1),
                "95 % interval": "–" if lo is None or hi is None else f"[{lo:+.1f}, {hi:+.1f}]",
            }
        )
    return pd.DataFrame(rows)


def review_queue(result: SelectionResult) -> pd.DataFrame:
    """The flagged images to review one by one: most confident suggestions first (then row)."""
    mis = suspected_mislabels(result)
    if "label_confidence" in mis.columns:
        return mis.sort_values(["label_confidence", "index"], ascending=[False, True]).reset_index(drop=True)
    return mis.sort_values("index").reset_index(drop=True)


def point_frame(
    result: SelectionResult, fs: FeatureSet, coords: np.ndarray, rows: np.ndarray | None = None
) -> pd.DataFrame:
    """One row per drawn pool sample for the Explore plot (``rows``: the feature rows to draw,
    default the whole pool, in pool order): x, y, index, class, file (the file name, for the
    tooltip), kept and the scores."""
    t = result.table
    if rows is not None:
        pos = pd.Index(t["index"].to_numpy(dtype=np.int64)).get_indexer(np.asarray(rows, dtype=np.int64))
        t = t.iloc[pos[pos >= 0]]
    idx = t["index"].to_numpy(dtype=np.int64)
    names = (
        [display_text(os.path.basename(str(p))) for p in fs.paths[idx]]
        if fs.paths is not None
        else [f"#{i}" for i in idx]
    )
    frame = pd.DataFrame(
        {
            "x": coords[idx, 0],
            "y": coords[idx, 1],
            "index": idx,
            "class": t["label"].astype(str).to_numpy(),
            "file": names,
            "kept": np.where(t["selected"].to_numpy(), "kept", "dropped"),
        }
    )
    for col in point_score_columns(result):
        frame[col] = t[col].to_numpy()
    return frame


def point_score_columns(result: SelectionResult) -> list[str]:
    """The per-image scores the Explore plot can colour by and shows on hover: RAM-APL's,
    the method's own score column (from the registry) and the label agreement."""
    from core.selection import get_selector

    score = get_selector(result.method).score_column
    return [
        c for c in dict.fromkeys(["ram", "apl", "score", score, "label_agreement"]) if c and c in result.table.columns
    ]


def headline_difference(cell) -> str:
    """``-5.0 pts vs random [-7.3, -2.7]``: the difference with its interval, rounded like the table."""
    d = cell.difference
    text = f"{100 * d.diff:+.1f} pts vs random"
    if np.isfinite(d.low) and np.isfinite(d.high):
        text += f" [{100 * d.low:+.1f}, {100 * d.high:+.1f}]"
    return text


def accuracy_frame(report) -> pd.DataFrame:
    """group (subset / random / full), accuracy %, std % of the report's first cell."""
    cell = report.cells[0]
    rows = []
    for name, g in (("subset", cell.method_result), ("random", cell.random), ("full", cell.full)):
        m, s = g.mean, g.std
        rows.append(
            {
                "group": name,
                "accuracy": 100 * m,
                "std": 100 * s if np.isfinite(s) else 0.0,
                "train images": int(g.n_train[0]) if g.n_train else 0,
            }
        )
    return pd.DataFrame(rows)


def comparison_frame(outcomes: Mapping[str, EvaluationOutcome]) -> pd.DataFrame:
    """One row per evaluated run (run id -> outcome), for side-by-side reading: kept images,
    evaluation set-up, subset / random / full accuracy (%, mean over seeds) and the subset's
    difference to random in percentage points with its confidence interval (Welch)."""
    rows = []
    for run_id, outcome in outcomes.items():
        report = outcome.report
        cell = report.cells[0]
        d = cell.difference
        cfg = report.config
        rows.append(
            {
                "dataset": str(report.dataset.get("name") or ""),
                "run": run_id,
                "kept": int(cell.method_result.n_train[0]) if cell.method_result.n_train else 0,
                "evaluation": f"{cfg.get('trainer', '?')} on {report.features.get('eval_model') or 'images'}",
                "seeds": len(cell.seeds),
                "subset %": round(100 * cell.method_result.mean, 1),
                "random %": round(100 * cell.random.mean, 1),
                "subset − random (pts)": round(100 * d.diff, 1),
                "interval (pts)": (
                    ""
                    if not (np.isfinite(d.low) and np.isfinite(d.high))
                    else f"[{100 * d.low:+.1f}, {100 * d.high:+.1f}] ({100 * d.confidence:g} %)"
                ),
                "full %": round(100 * cell.full.mean, 1),
            }
        )
    return pd.DataFrame(rows)


__all__ = [
    "AUTO_ESTIMATE_NOTE",
    "Gallery",
    "Headline",
    "accuracy_frame",
    "auto_estimates_frame",
    "budget_frame",
    "class_count_frame",
    "class_paths",
    "comparison_frame",
    "gallery_caption",
    "gallery_rows",
    "headline",
    "headline_difference",
    "mislabel_help",
    "overlap_frame",
    "point_frame",
    "point_score_columns",
    "ranking_frame",
    "review_queue",
    "suspected_mislabels",
]
