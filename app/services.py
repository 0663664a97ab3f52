"""The app's glue over :mod:`core`, with no Streamlit: folder roots, uploads, subset edits,
display tables, overlaps, evaluation and export.

Pages call these and only format the results; everything here is testable without a UI.
"""

from __future__ import annotations

import dataclasses

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from core.datasets import Dataset, load_dataset, load_demo, load_manifest
from core.datasets.archive import dataset_root, extract_archive
from core.errors import CoresetError, DatasetError
from core.features import FeatureSet
from core.text import display_text
from core.selection import SelectionResult
from core.workspace import atomic_write_bytes, resolve_workspace

ROOTS_ENV = "CORESET_STUDIO_ROOTS"


# --------------------------------------------------------------------------- folder roots
def allowed_roots(workspace: str | os.PathLike | None = None,
                  configured: Sequence[str | os.PathLike] | None = None) -> list[Path]:
    """Folders the Data page may read from, first found of: ``$CORESET_STUDIO_ROOTS``
    (os.pathsep-separated); ``configured`` (the ``roots`` list of ``[coreset_studio]`` in
    ``.streamlit/secrets.toml``); the working directory and the workspace."""
    env = os.environ.get(ROOTS_ENV, "").strip()
    if env:
        roots = [Path(p).expanduser() for p in env.split(os.pathsep) if p.strip()]
    elif configured:
        roots = [Path(str(p)).expanduser() for p in configured if str(p).strip()]
    else:
        roots = [Path.cwd(), resolve_workspace(workspace)]
    out: list[Path] = []
    for r in roots:
        r = r.resolve()
        if r not in out:
            out.append(r)
    return out


def check_server_path(text: str, roots: Sequence[Path]) -> Path:
    """The resolved path if it lies inside one of ``roots``; else a :class:`CoresetError`
    naming the allowed roots. Symlinks are resolved first, so a link cannot escape."""
    text = (text or "").strip()
    if not text:
        raise CoresetError("Type the path of a dataset folder (or a manifest .csv / .zip) on the server.")
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    path = path.resolve()
    if not any(path == r or r in path.parents for r in roots):
        names = ", ".join(str(r) for r in roots)
        raise CoresetError(
            f"{path} is outside the folders this app may read. Allowed: {names}. "
            f"Move the data under one of them, or restart the app with {ROOTS_ENV}=<folder> "
            f"(several joined by '{os.pathsep}').")
    if not path.exists():
        raise DatasetError(f"{path} does not exist; give a folder, a .csv/.parquet manifest or a .zip inside "
                           f"{', '.join(str(r) for r in roots)}.")
    return path


# --------------------------------------------------------------------------- loading
def load_server_path(text: str, roots: Sequence[Path], workspace=None, progress=None) -> Dataset:
    """Load a folder, manifest or zip on the server. Every image path it leads to (folder
    entries, manifest rows, links) must lie inside ``roots`` too: one outside is refused before
    it is read (an ``outside_allowed_roots`` row that does not say whether the file exists);
    a zip's contents are confined to its own extraction folder."""
    return load_dataset(check_server_path(text, roots), workspace=workspace, progress=progress,
                        allowed_roots=list(roots))


def save_upload(data: bytes, name: str, workspace=None) -> Path:
    """Store uploaded bytes in ``<workspace>/uploads/<sha>/<name>`` (content-addressed)."""
    digest = hashlib.sha256(data).hexdigest()[:16]
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(name).name) or "upload"
    path = resolve_workspace(workspace) / "uploads" / digest / safe
    if not path.exists():
        atomic_write_bytes(path, data)
    return path


def load_uploaded_zip(data: bytes, name: str, workspace=None, progress=None) -> Dataset:
    """An uploaded zip; only files inside its own extraction folder are read (a manifest in it
    naming server paths gets an ``outside_allowed_roots`` row for each)."""
    if not data:
        raise DatasetError(f"The uploaded file {name} is empty; upload a zip with one folder per class.")
    path = save_upload(data, name if name.lower().endswith(".zip") else name + ".zip", workspace)
    return load_dataset(path, workspace=workspace, progress=progress, allowed_roots=[path.parent])


def load_uploaded_manifest(csv_data: bytes, csv_name: str, zip_data: bytes, zip_name: str, workspace=None,
                           progress=None) -> Dataset:
    """A CSV manifest (``path,label[,split]``, paths relative to the zip's top) plus a zip of its images.
    Only paths inside the zip's extraction folder are read: a row naming any other server path
    gets an ``outside_allowed_roots`` row that does not say whether the file exists."""
    if not csv_data:
        raise DatasetError(f"The manifest {csv_name} is empty; it needs the columns path,label[,split].")
    zip_path = save_upload(zip_data, zip_name, workspace)
    folder, problems = extract_archive(zip_path, workspace=workspace)
    digest = hashlib.sha256(csv_data).hexdigest()[:12]
    candidates = [folder] + ([dataset_root(folder)] if dataset_root(folder) != folder else [])
    last: Exception | None = None
    best: Dataset | None = None
    for base in candidates:
        manifest = base / f".manifest-{digest}.csv"
        atomic_write_bytes(manifest, csv_data)
        try:
            ds = load_manifest(manifest, name=Path(csv_name).stem, allowed_roots=[folder])
        except DatasetError as exc:
            last = exc
            continue
        if best is None or len(ds) > len(best):
            best = ds
    if best is None:
        raise DatasetError(f"None of the manifest's images were found in {zip_name}: {last}") from last
    best.problems = problems + best.problems
    return best


def load_demo_dataset(progress=None) -> Dataset:
    return load_demo(progress=progress)


# --------------------------------------------------------------------------- dataset views
def class_count_frame(ds: Dataset) -> pd.DataFrame:
    """Long table: class, split, images (for a stacked bar chart)."""
    counts = ds.class_counts()
    return counts.reset_index().melt(id_vars="label", var_name="split", value_name="images").rename(
        columns={"label": "class"})


def class_paths(ds: Dataset, label: str, limit: int = 24, split: str | None = None) -> list[str]:
    out = [p for p, lab, sp in zip(ds.paths, ds.labels, ds.splits)
           if lab == label and (split is None or sp == split)]
    return out[:limit]


# --------------------------------------------------------------------------- selection
def selection_pool(fs: FeatureSet) -> np.ndarray | None:
    from core.cli.select import selection_pool as _pool

    return _pool(fs)[0]


def apply_edits(result: SelectionResult, added: Iterable[int] = (), dropped: Iterable[int] = ()) -> SelectionResult:
    """A copy of ``result`` with rows added to / dropped from the subset (pool rows only).

    Kept rows keep their order; added rows follow. ``table.selected``/``order`` and the
    budget table's ``kept`` are updated. Without edits, ``result`` itself is returned.
    """
    added, dropped = set(int(i) for i in added), set(int(i) for i in dropped)
    if not added and not dropped:
        return result
    pool = set(result.table["index"].astype(int).tolist())
    sel = [int(i) for i in result.selected if int(i) not in dropped]
    have = set(sel)
    sel += sorted(i for i in added if i in pool and i not in have and i not in dropped)
    selected = np.asarray(sel, dtype=np.int64)
    table = result.table.copy()
    order = {row: k for k, row in enumerate(sel)}
    table["selected"] = table["index"].map(lambda i: int(i) in order).astype(bool)
    table["order"] = table["index"].map(lambda i: order.get(int(i), -1)).astype(np.int64)
    budget = result.budget_table.copy()
    kept_per_class = table[table["selected"]].groupby("label").size()
    budget["kept"] = [int(kept_per_class.get(c, 0)) for c in budget["class"]]
    return dataclasses.replace(result, budget_table=budget, selected=selected, table=table)


def edit_subset(added: set[int], dropped: set[int], base_kept: Iterable[int], chosen: Iterable[int],
                keep: bool) -> None:
    """Record in place that the ``chosen`` rows are to be kept (``keep``) or left out.

    ``added``/``dropped`` only ever hold real changes against the run's own subset
    (``base_kept``): adding a row the run kept (or dropping one it left out) just undoes an
    earlier edit of that row.
    """
    base = set(int(i) for i in base_kept)
    for i in (int(r) for r in chosen):
        added.discard(i)
        dropped.discard(i)
        if keep and i not in base:
            added.add(i)
        elif not keep and i in base:
            dropped.add(i)


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
    return Headline(kept=int(result.n_selected), pool=int(len(result.table)),
                    classes=int((result.budget_table["kept"] > 0).sum()),
                    mislabels=int(len(suspected_mislabels(result))) if known else None)


def mislabel_help(n_models: int) -> str:
    """What the "suspected mislabels" figure means, for the number of models used."""
    base = ("Label consensus: for each image, its 10 nearest neighbours and the nearest class mean vote in every "
            "model; an image is flagged when another class is clearly better supported than its own label "
            "(own label's support ≤ 5 %). The suggested class is the best-supported one.")
    if n_models <= 1:
        return base + (" With one model every vote comes from one feature space, so look-alike classes are "
                       "flagged more often; embed a second model to make the flags sharper.")
    return base + f" {n_models} models vote; an image must look like another class in all of them."


def ranking_order(result: SelectionResult, classes: Sequence[str] | None = None,
                  only_kept: bool = False) -> pd.DataFrame:
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
    front = pd.DataFrame({
        "thumbnail": [thumbs.get(p) if thumbs else None for p in paths],
        "file": [display_text(Path(p).name) for p in paths],
    }, index=t.index)
    cols = [c for c in t.columns if not c.startswith("distance[")]
    return pd.concat([front, t[cols]], axis=1).reset_index(drop=True)


def ranking_frame(result: SelectionResult, fs: FeatureSet, thumbs: Mapping[str, str] | None = None,
                  classes: Sequence[str] | None = None) -> pd.DataFrame:
    """The per-sample table for display: thumbnail, file, then the method's columns (all rows)."""
    return _ranking_display(ranking_order(result, classes), fs, thumbs)


def ranking_page(result: SelectionResult, fs: FeatureSet, page: int, page_size: int,
                 classes: Sequence[str] | None = None, only_kept: bool = False) -> tuple[pd.DataFrame, int]:
    """One page of :func:`ranking_frame` (``page`` from 0; the display columns are made for that
    page only, so a page of a 100,000-image pool costs as little as one of the demo's) and the
    number of rows of the whole ranking."""
    order = ranking_order(result, classes, only_kept)
    start = max(0, int(page)) * int(page_size)
    return _ranking_display(order.iloc[start:start + int(page_size)], fs, None), len(order)


def budget_frame(result: SelectionResult) -> pd.DataFrame:
    """class, kept, dropped (for stacked bars) plus size and budget."""
    b = result.budget_table
    return pd.DataFrame({"class": b["class"].astype(str), "kept": b["kept"].astype(int),
                         "dropped": (b["size"] - b["kept"]).astype(int), "size": b["size"].astype(int),
                         "budget": b["budget"].astype(int)})


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
    return pd.DataFrame([{"run": rid, "kept": r.n_selected, "mislabels": count_text(headline(r).mislabels)}
                         for rid, r in results.items()])


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
        rows.append({"class": c, "first run": len(sa), "second run": len(sb), "both": shared,
                     "overlap": round(shared / max(1, min(len(sa), len(sb))), 3)})
    return pd.DataFrame(rows)


def saved_runs_frame(records, embedding_key: str | None) -> pd.DataFrame:
    """The saved runs of a dataset for display: run, models, when, edits, evaluations, open here."""
    import datetime as _dt

    return pd.DataFrame([{
        "run": r.run_id,
        "models": ", ".join(r.config.get("models", [])),
        "saved": _dt.datetime.fromtimestamp(r.created).strftime("%Y-%m-%d %H:%M"),
        "hand edits": r.n_edits,
        "evaluations": len(r.evaluations),
        "open here": r.config.get("embedding_key") == embedding_key,
    } for r in records])


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
        out["representative"] = Gallery("Most representative", t.sort_values([col, "index"], ascending=[low_first, True]).iloc[offset:offset + k],
                                        f"{'Lowest' if low_first else 'Highest'} {col}: the typical end of {spec.name}'s ranking.")
        out["hardest"] = Gallery("Hardest", t.sort_values([col, "index"], ascending=[not low_first, True]).iloc[offset:offset + k],
                                 f"{'Highest' if low_first else 'Lowest'} {col}: the other end of {spec.name}'s ranking.")
    else:
        out["representative"] = Gallery("Picked first", t[t["selected"]].sort_values("order").iloc[offset:offset + k],
                                        f"{spec.name} has no per-image score; these are the images it picked first.")
        if "label_agreement" in t.columns:
            out["hardest"] = Gallery("Hardest", t.sort_values(["label_agreement", "index"]).iloc[offset:offset + k],
                                     "Least label agreement: the models' neighbours and class means vote least for "
                                     "this class.")
        else:
            out["hardest"] = Gallery("Hardest", t[~t["selected"]].iloc[offset:offset + k], "Dropped images (no score to rank by).")
    mis = suspected_mislabels(result)
    out["mislabels"] = Gallery("Suspected mislabels", mis[mis["label"].astype(str) == str(label)].iloc[offset:offset + k],
                               "Flagged by the label consensus; the caption names the class the models suggest.")
    out["kept"] = Gallery("Kept", t[t["selected"]].sort_values("order").iloc[offset:offset + k], "Kept, in selection order.")
    out["dropped"] = Gallery("Dropped", t[~t["selected"]].iloc[offset:offset + k], f"{int((~t['selected']).sum())} dropped.")
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
    return name if len(name) <= width else name[: width // 2 - 1] + "…" + name[-(width - width // 2):]


AUTO_ESTIMATE_NOTE = ("Each candidate selected from 2 of 3 folds of your training images at this fraction; a "
                      "linear probe (the evaluation's logistic regression) trained on its subset was scored on the third fold and compared with random "
                      "subsets of the same per-class sizes. Gain in percentage points with a 95 % interval over "
                      "the folds. Test images are never used.")


def auto_estimates_frame(details: dict) -> pd.DataFrame:
    """auto's candidates for display: pool accuracy, gain over random with its interval, chosen."""
    rows = []
    for e in details.get("estimates", []):
        lo, hi = e.get("gain_low"), e.get("gain_high")
        rows.append({"candidate": e["candidate"], "chosen": e["candidate"] == details.get("chosen"),
                     "pool accuracy %": round(float(e["accuracy"]), 1),
                     "gain over random (pp)": round(float(e["gain"]), 1),
                     "95 % interval": "–" if lo is None or hi is None else f"[{lo:+.1f}, {hi:+.1f}]"})
    return pd.DataFrame(rows)


def review_queue(result: SelectionResult) -> pd.DataFrame:
    """The flagged images to review one by one: most confident suggestions first (then row)."""
    mis = suspected_mislabels(result)
    if "label_confidence" in mis.columns:
        return mis.sort_values(["label_confidence", "index"], ascending=[False, True]).reset_index(drop=True)
    return mis.sort_values("index").reset_index(drop=True)


def point_frame(result: SelectionResult, fs: FeatureSet, coords: np.ndarray,
                rows: np.ndarray | None = None) -> pd.DataFrame:
    """One row per drawn pool sample for the Explore plot (``rows``: the feature rows to draw,
    default the whole pool, in pool order): x, y, index, class, file (the file name, for the
    tooltip), kept and the scores."""
    t = result.table
    if rows is not None:
        pos = pd.Index(t["index"].to_numpy(dtype=np.int64)).get_indexer(np.asarray(rows, dtype=np.int64))
        t = t.iloc[pos[pos >= 0]]
    idx = t["index"].to_numpy(dtype=np.int64)
    names = [display_text(os.path.basename(str(p))) for p in fs.paths[idx]] if fs.paths is not None \
        else [f"#{i}" for i in idx]
    frame = pd.DataFrame({
        "x": coords[idx, 0], "y": coords[idx, 1], "index": idx, "class": t["label"].astype(str).to_numpy(),
        "file": names, "kept": np.where(t["selected"].to_numpy(), "kept", "dropped"),
    })
    for col in point_score_columns(result):
        frame[col] = t[col].to_numpy()
    return frame


def point_score_columns(result: SelectionResult) -> list[str]:
    """The per-image scores the Explore plot can colour by and shows on hover: RAM-APL's,
    the method's own score column (from the registry) and the label agreement."""
    from core.selection import get_selector

    score = get_selector(result.method).score_column
    return [c for c in dict.fromkeys(["ram", "apl", "score", score, "label_agreement"])
            if c and c in result.table.columns]


def chosen_rows(event) -> list[int]:
    """Row indices of the points of a plotly selection event (``customdata[0]``), in order, unique."""
    out: list[int] = []
    try:
        points = event["selection"]["points"] if event else []
        for p in points:
            cd = p.get("customdata")
            if cd is not None and len(cd):
                out.append(int(cd[0]))
    except (AttributeError, KeyError, TypeError, ValueError):
        return []
    return list(dict.fromkeys(out))


def subset_csv_bytes(result: SelectionResult, fs: FeatureSet) -> tuple[bytes, bytes]:
    """``(scores.csv, subset.csv)`` bytes, exactly as ``coreset-studio select`` writes them."""
    from core.export.tables import csv_text, scores_frame, subset_frame

    scores = scores_frame(result.table, fs)
    return (csv_text(scores).encode("utf-8"), csv_text(subset_frame(scores, result.selected)).encode("utf-8"))


def subset_zip(result: SelectionResult, fs: FeatureSet, subset_csv: bytes) -> bytes:
    """The kept images in a folder per class with ``manifest.csv`` (loadable as a dataset) and
    ``subset_csv`` (the ``subset.csv`` of :func:`subset_csv_bytes`), as one zip
    (:func:`core.export.subset_zip_bytes`)."""
    from core.export import subset_zip_bytes

    sel = np.asarray(result.selected, dtype=np.int64)
    return subset_zip_bytes(fs.paths[sel].tolist(), np.asarray(fs.labels)[sel].astype(str).tolist(),
                            extra={"subset.csv": subset_csv})


# --------------------------------------------------------------------------- evaluation
@dataclass
class EvaluationOutcome:
    report: object           # core.evaluation.EvaluationReport
    files: dict[str, bytes]  # report.json, report.html, subset.csv, scores.csv
    note: str = ""


def evaluation_key(embedding_key: str, result: SelectionResult, seeds: int, trainer: str, eval_model: str) -> str:
    h = hashlib.sha256()
    h.update(f"{embedding_key}|{result.method}|{result.budget}|{result.fraction}|{sorted(result.params.items())}|"
             f"{seeds}|{trainer}|{eval_model}|".encode())
    h.update(np.asarray(result.selected, dtype=np.int64).tobytes())
    return h.hexdigest()[:20]


def run_evaluation(fs: FeatureSet, result: SelectionResult, out: Path, *, seeds: int = 5, trainer: str = "linear",
                   eval_model: str | None = None, device: str = "auto", edited: bool = False,
                   step: Callable[[float, str], None] | None = None) -> EvaluationOutcome:
    """Evaluate ``result`` (subset vs random subsets of the same per-class size vs the full pool)
    and export report.json / report.html / subset.csv / scores.csv into ``out``, as
    ``coreset-studio evaluate`` does. ``edited``: ``result`` carries hand edits (said in the
    note when the method has to be run again). ``step(fraction_done, message)`` reports progress."""
    from core.evaluation import EvalConfig, Evaluator
    from core.evaluation.plan import single_cell_report
    from core.export import export_report

    step = step or (lambda f, m: None)
    t0 = time.perf_counter()
    step(0.05, "preparing the split and the evaluation features")
    config = EvalConfig(trainer=trainer, eval_model=eval_model, seeds=tuple(range(int(seeds))))
    ev = Evaluator(fs, config, list(result.models), device=device)
    step(0.1, "choosing the random subsets")

    def trained(done: int, total: int, what: str) -> None:
        step(0.15 + 0.7 * done / max(total, 1), f"{what} ({done}/{total} trainings)")

    cell, note = ev.evaluate_selection(result, progress=trained)
    if note and edited:
        note += " Your hand edits are not part of this evaluation."
    step(0.85, "writing report.json, report.html and the CSV files")
    report = single_cell_report(ev, cell, fs, started=t0)
    written = export_report(out, report, fs)
    files = {name: Path(p).read_bytes() for name, p in written.items()
             if name in ("report.json", "report.html", "subset.csv", "scores.csv")}
    step(1.0, "done")
    if ev.eval_also_selects and not note:
        note = (f"The evaluation features ({ev.eval_model}) were also used for selection; embed another model "
                f"(e.g. {independent_model_hint(result.models)}) on the Models page and evaluate on it for an "
                "independent evaluation.")
    return EvaluationOutcome(report=report, files=files, note=note)


def independent_model_hint(selection_models: Sequence[str]) -> str:
    """An offline embedder not used for selection, to suggest for an independent evaluation."""
    from core.evaluation.protocol import EVAL_MODEL_PREFERENCE

    used = set(selection_models)
    return next((m for m in EVAL_MODEL_PREFERENCE if m not in used), "another model")


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
        rows.append({"group": name, "accuracy": 100 * m, "std": 100 * s if np.isfinite(s) else 0.0,
                     "train images": int(g.n_train[0]) if g.n_train else 0})
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
        rows.append({
            "dataset": str(report.dataset.get("name") or ""),
            "run": run_id,
            "kept": int(cell.method_result.n_train[0]) if cell.method_result.n_train else 0,
            "evaluation": f"{cfg.get('trainer', '?')} on {report.features.get('eval_model') or 'images'}",
            "seeds": len(cell.seeds),
            "subset %": round(100 * cell.method_result.mean, 1),
            "random %": round(100 * cell.random.mean, 1),
            "subset − random (pts)": round(100 * d.diff, 1),
            "interval (pts)": ("" if not (np.isfinite(d.low) and np.isfinite(d.high))
                               else f"[{100 * d.low:+.1f}, {100 * d.high:+.1f}] ({100 * d.confidence:g} %)"),
            "full %": round(100 * cell.full.mean, 1),
        })
    return pd.DataFrame(rows)
