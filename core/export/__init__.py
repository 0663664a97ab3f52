"""Exports: CSV tables, report.json, the self-contained report.html, and the subset folder.

:func:`export_report` writes everything for an :class:`~core.evaluation.EvaluationReport`
into one folder::

    out/report.json          provenance and metrics (EvaluationReport.to_dict, no per-sample tables)
    out/report.html          one self-contained page (inline SVG charts, data: thumbnails)
    out/results.csv          the results table (percent)
    out/scores.csv           evaluate: every pool sample with the method's scores
    out/subset.csv           evaluate: kept rows (path, label, scores), in selection order
    out/selections/<slug>/   run: scores.csv and subset.csv of every cell
    <copy_subset>/<class>/   optional: the primary selection's kept images (copies or links)

Every file is written atomically; CSV text cells are escaped against formula injection;
source images are only read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..evaluation.report import EvaluationReport
from ..features import FeatureSet
from ..workspace import atomic_write_bytes, make_output_dir
from .folder import export_subset_folder, safe_name, subset_layout, subset_zip_bytes
from .html import render_html, write_html
from .tables import csv_text, scores_frame, subset_frame, write_csv, write_selection_csvs


def cell_slug(cell) -> str:
    """Folder name of a cell: ``<method>[@budget]_p<fraction>[_noise<eta>]`` (safe characters)."""
    slug = f"{cell.label}_p{cell.fraction:g}" + (f"_noise{cell.label_noise:g}" if cell.label_noise else "")
    return safe_name(slug.replace("@", "-"))


def _utf8(text: str) -> bytes:
    """``text`` as UTF-8; a lone surrogate (a name that was not valid UTF-8) as ``\\xNN``, as
    :func:`core.workspace.atomic_write_text` writes it."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        from ..text import display_text

        return display_text(text).encode("utf-8")


def iter_report_files(
    report: EvaluationReport, fs: FeatureSet | None = None, *, html: bool = True, selections: bool = True
) -> Iterator[tuple[str, bytes]]:
    """``(relative path, bytes)`` of every file of a report (see the module docstring), in
    the order :func:`export_report` writes them, made one at a time in memory."""
    from . import html as html_module

    yield "report.json", _utf8(report.to_json(False))
    frame = report.results_frame()
    if not frame.empty:
        yield "results.csv", _utf8(csv_text(frame.round(4)))
    if selections:
        single = report.kind == "evaluate" and len([c for c in report.cells if c.method != "random"]) <= 1
        for cell in report.cells:
            if "table" not in cell.selection:
                continue
            if single and (cell.method != "random" or len(report.cells) == 1):
                folder = ""
            elif single:
                continue
            else:
                folder = f"selections/{cell_slug(cell)}/"
            res = cell.selection_result()
            scores = scores_frame(res.table, fs)
            yield folder + "scores.csv", _utf8(csv_text(scores))
            yield folder + "subset.csv", _utf8(csv_text(subset_frame(scores, res.selected)))
    if html:
        yield "report.html", _utf8(html_module.render_html(report, fs))


def report_files(
    report: EvaluationReport, fs: FeatureSet | None = None, *, html: bool = True, selections: bool = True
) -> dict[str, bytes]:
    """Every file of a report as ``{relative path: bytes}``, in memory (nothing is written)."""
    return dict(iter_report_files(report, fs, html=html, selections=selections))


def export_report(
    out: str | os.PathLike,
    report: EvaluationReport,
    fs: FeatureSet | None = None,
    *,
    html: bool = True,
    selections: bool = True,
    copy_subset: str | os.PathLike | None = None,
    link: bool = False,
) -> dict[str, Path]:
    """Write the report's files into ``out`` (see the module docstring); return name -> path.

    The files are those of :func:`iter_report_files`, each written atomically as soon as it is made.
    ``copy_subset``: folder receiving the primary selection's kept images (``link``: symlinks).
    The per-sample exports and thumbnails need the cells' selection tables (kept in
    memory and in the run cache, not in report.json) and ``fs`` for the paths.
    """
    from .html import _primary_index

    out = make_output_dir(out)
    written: dict[str, Path] = {}
    for name, data in iter_report_files(report, fs, html=html, selections=selections):
        written[name] = atomic_write_bytes(out / name, data)
    if copy_subset is not None:
        idx = _primary_index(report)
        if idx is None or fs is None or fs.paths is None:
            from ..errors import CoresetError

            raise CoresetError("Cannot copy the subset: no selection with image paths.")
        cell = report.cells[idx]
        sel = np.asarray(cell.selection["selected"], dtype=np.int64)
        export_subset_folder(fs.paths[sel], np.asarray(fs.labels)[sel].astype(str), copy_subset, link=link)
        written["subset folder"] = Path(copy_subset)
    return written


__all__ = [
    "cell_slug",
    "csv_text",
    "export_report",
    "iter_report_files",
    "report_files",
    "export_subset_folder",
    "render_html",
    "scores_frame",
    "subset_frame",
    "subset_layout",
    "subset_zip_bytes",
    "write_csv",
    "write_html",
    "write_selection_csvs",
]
