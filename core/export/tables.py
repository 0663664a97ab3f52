"""CSV exports of a selection: ``scores.csv`` (every pool sample) and ``subset.csv`` (kept rows).

* ``scores.csv``: ``index`` (row of the feature set), ``path`` (empty when unknown),
  ``label`` (the label the selector saw: noisy under label noise), ``true_label`` and
  ``flipped`` (only when some label was flipped), every score column the method computed,
  ``selected``, ``order`` (position in the selection, -1 if dropped).
* ``subset.csv``: ``path,label`` then the same score columns, for the kept rows in
  selection order.

A path or label that is not valid UTF-8 (a file name with undecodable bytes) is written
with those bytes as ``\\xNN`` (:func:`core.text.display_text`).
* ``results.csv``: the results table of a report (percent).

Text cells starting with ``= + - @`` (or tab / CR) are prefixed with ``'``
(:func:`escape_csv_frame`, here: the one home of CSV escaping); files are written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..features import FeatureSet
from ..text import display_array, escape_csv_cell
from ..workspace import atomic_write_with

#: Columns of a selection table that are bookkeeping, not scores.
NON_SCORE_COLUMNS = ("index", "label", "selected", "order")


def escape_csv_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Copy of ``frame`` with :func:`core.text.escape_csv_cell` applied to every text column
    (numeric and boolean columns are left as they are)."""
    out = frame.copy()
    for col in out.columns:
        if not (pd.api.types.is_numeric_dtype(out[col]) or pd.api.types.is_bool_dtype(out[col])):
            out[col] = out[col].map(escape_csv_cell)
    return out


def scores_frame(table: pd.DataFrame, fs: FeatureSet | None = None) -> pd.DataFrame:
    """The ``scores.csv`` frame of a selection table (see the module docstring)."""
    frame = table.copy()
    idx = frame["index"].to_numpy(dtype=np.int64)
    # paths that are not valid UTF-8 are written with their undecodable bytes as \xNN (core.text)
    paths = (
        display_array(fs.paths[idx])
        if fs is not None and fs.paths is not None
        else np.full(len(frame), "", dtype=object)
    )
    frame.insert(1, "path", paths)
    if fs is not None:
        true = np.asarray(fs.labels)[idx].astype(str)
        flipped = frame["label"].astype(str).to_numpy() != true
        if flipped.any():
            pos = frame.columns.get_loc("label") + 1
            frame.insert(pos, "true_label", true)
            frame.insert(pos + 1, "flipped", flipped)
    return frame


def subset_frame(scores: pd.DataFrame, selected: np.ndarray) -> pd.DataFrame:
    """Kept rows of a ``scores_frame`` in selection order: path, label, then the scores."""
    kept = scores.set_index("index").loc[np.asarray(selected, dtype=np.int64)]
    cols = ["path", "label"] + [c for c in kept.columns if c not in ("path", "label", "selected", "order")]
    return kept[cols].reset_index(drop=True)


def csv_text(frame: pd.DataFrame) -> str:
    """``frame`` as CSV text (no index column), formula-like text cells escaped."""
    return escape_csv_frame(frame).to_csv(index=False)


#: Rows converted to CSV text at a time by :func:`write_csv`.
CSV_CHUNK_ROWS = 65536


def write_csv(path: str | os.PathLike, frame: pd.DataFrame) -> Path:
    """Write :func:`csv_text` of ``frame`` (UTF-8) atomically, converting :data:`CSV_CHUNK_ROWS` rows
    at a time: a table of a million rows is never held as one string."""

    def write(fh) -> None:
        for start in range(0, max(len(frame), 1), CSV_CHUNK_ROWS):
            chunk = frame.iloc[start : start + CSV_CHUNK_ROWS]
            fh.write(escape_csv_frame(chunk).to_csv(index=False, header=start == 0).encode("utf-8"))

    return atomic_write_with(path, write)


def write_selection_csvs(
    folder: str | os.PathLike, table: pd.DataFrame, selected: np.ndarray, fs: FeatureSet | None = None
) -> tuple[Path, Path]:
    """Write ``folder/scores.csv`` and ``folder/subset.csv``; return their paths."""
    folder = Path(folder)
    scores = scores_frame(table, fs)
    return (write_csv(folder / "scores.csv", scores), write_csv(folder / "subset.csv", subset_frame(scores, selected)))


__all__ = [
    "CSV_CHUNK_ROWS",
    "NON_SCORE_COLUMNS",
    "csv_text",
    "escape_csv_frame",
    "scores_frame",
    "subset_frame",
    "write_csv",
    "write_selection_csvs",
]
