"""The app's glue over :mod:`core`, with no Streamlit: folder roots, uploads, subset edits,
display tables, overlaps, evaluation and export.

Pages call these and only format the results; everything here is testable without a UI.
"""

from __future__ import annotations

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
    return SelectionResult(method=result.method, params=dict(result.params), fraction=result.fraction,
                           budget=result.budget, budget_table=budget, seed=result.seed, models=list(result.models),
                           selected=selected, table=table, versions=dict(result.versions),
                           timing_s=dict(result.timing_s), device=result.device)


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
    """Rows whose APL is 0: in every model, the nearest class mean is another class.
    Empty when the method computes no APL."""
    if "apl" not in result.table.columns:
        return result.table.iloc[0:0]
    return result.table[result.table["apl"] == 0]


@dataclass(frozen=True)
class Headline:
    kept: int
    pool: int
    classes: int
    mislabels: int | None  # None: the method has no APL


def headline(result: SelectionResult) -> Headline:
    has_apl = "apl" in result.table.columns
    return Headline(kept=int(result.n_selected), pool=int(len(result.table)),
                    classes=int((result.budget_table["kept"] > 0).sum()),
                    mislabels=int(len(suspected_mislabels(result))) if has_apl else None)


def ranking_frame(result: SelectionResult, fs: FeatureSet, thumbs: Mapping[str, str] | None = None,
                  classes: Sequence[str] | None = None) -> pd.DataFrame:
    """The per-sample table for display: thumbnail, file, then the method's columns."""
    t = result.table
    if classes:
        t = t[t["label"].astype(str).isin([str(c) for c in classes])]
    idx = t["index"].to_numpy(dtype=np.int64)
    paths = fs.paths[idx] if fs.paths is not None else np.full(len(t), "", dtype=object)
    front = pd.DataFrame({
        "thumbnail": [thumbs.get(p) if thumbs else None for p in paths],
        "file": [Path(p).name for p in paths],
    }, index=t.index)
    cols = [c for c in t.columns if not c.startswith("distance[")]
    out = pd.concat([front, t[cols]], axis=1)
    sort_col = "order" if "order" in out.columns else "index"
    kept = out[out["selected"]].sort_values(sort_col)
    return pd.concat([kept, out[~out["selected"]]]).reset_index(drop=True)


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


def gallery_rows(result: SelectionResult, label: str, k: int = 12) -> dict[str, pd.DataFrame]:
    """Rows of one class for the galleries: representative, hardest, suspected mislabels, kept, dropped."""
    t = result.table[result.table["label"].astype(str) == str(label)]
    out: dict[str, pd.DataFrame] = {}
    if "ram" in t.columns:
        out["representative"] = t.nsmallest(k, ["ram", "index"])
    elif "score" in t.columns:
        out["representative"] = t.nsmallest(k, ["score", "index"])
    else:
        out["representative"] = t[t["selected"]].sort_values("order").head(k)
    if "score" in t.columns and "apl" in t.columns:
        out["hardest"] = t.sort_values(["apl", "score"], ascending=[True, False]).head(k)
    elif "score" in t.columns:
        out["hardest"] = t.nlargest(k, "score")
    else:
        out["hardest"] = t[~t["selected"]].head(k)
    out["mislabels"] = suspected_mislabels(result).pipe(lambda m: m[m["label"].astype(str) == str(label)]).head(k)
    out["kept"] = t[t["selected"]].sort_values("order").head(k)
    out["dropped"] = t[~t["selected"]].head(k)
    return out


def point_frame(result: SelectionResult, fs: FeatureSet, coords: np.ndarray) -> pd.DataFrame:
    """One row per pool sample for the Explore plot: x, y, index, class, path, kept and the scores."""
    t = result.table
    idx = t["index"].to_numpy(dtype=np.int64)
    frame = pd.DataFrame({
        "x": coords[idx, 0], "y": coords[idx, 1], "index": idx, "class": t["label"].astype(str).to_numpy(),
        "path": fs.paths[idx] if fs.paths is not None else "",
        "kept": np.where(t["selected"].to_numpy(), "kept", "dropped"),
    })
    for col in ("ram", "apl", "score"):
        if col in t.columns:
            frame[col] = t[col].to_numpy()
    return frame


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
        note = (f"The evaluation features ({ev.eval_model}) were also used for selection; embed a second model "
                "(e.g. effnet-lite1) on the Models page for an independent evaluation.")
    return EvaluationOutcome(report=report, files=files, note=note)


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
            "run": run_id,
            "kept": int(cell.method_result.n_train[0]) if cell.method_result.n_train else 0,
            "evaluation": f"{cfg.get('trainer', '?')} on {report.features.get('eval_model') or 'images'}",
            "seeds": len(cell.seeds),
            "subset %": round(100 * cell.method_result.mean, 2),
            "random %": round(100 * cell.random.mean, 2),
            "subset − random (pts)": round(100 * d.diff, 2),
            "interval (pts)": ("" if not (np.isfinite(d.low) and np.isfinite(d.high))
                               else f"[{100 * d.low:+.1f}, {100 * d.high:+.1f}] ({100 * d.confidence:g} %)"),
            "full %": round(100 * cell.full.mean, 2),
        })
    return pd.DataFrame(rows)
