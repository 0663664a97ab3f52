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
from pathlib import Path

import numpy as np

from ..evaluation.report import EvaluationReport
from ..features import FeatureSet
from ..workspace import make_output_dir
from .folder import export_subset_folder, safe_name, subset_layout, subset_zip_bytes
from .html import render_html, write_html
from .tables import scores_frame, subset_frame, write_csv, write_selection_csvs


def cell_slug(cell) -> str:
    """Folder name of a cell: ``<method>[@budget]_p<fraction>[_noise<eta>]`` (safe characters)."""
    slug = f"{cell.label}_p{cell.fraction:g}" + (f"_noise{cell.label_noise:g}" if cell.label_noise else "")
    return safe_name(slug.replace("@", "-"))


def export_report(out: str | os.PathLike, report: EvaluationReport, fs: FeatureSet | None = None, *,
                  html: bool = True, selections: bool = True, copy_subset: str | os.PathLike | None = None,
                  link: bool = False) -> dict[str, Path]:
    """Write the report's files into ``out`` (see the module docstring); return name -> path.

    ``copy_subset``: folder receiving the primary selection's kept images (``link``: symlinks).
    The per-sample exports and thumbnails need the cells' selection tables (kept in
    memory and in the run cache, not in report.json) and ``fs`` for the paths.
    """
    from .html import _primary_index

    out = make_output_dir(out)
    written: dict[str, Path] = {}
    written["report.json"] = report.save(out / "report.json")
    frame = report.results_frame()
    if not frame.empty:
        written["results.csv"] = write_csv(out / "results.csv", frame.round(4))
    if selections:
        single = report.kind == "evaluate" and len([c for c in report.cells if c.method != "random"]) <= 1
        for cell in report.cells:
            if "table" not in cell.selection:
                continue
            if single and (cell.method != "random" or len(report.cells) == 1):
                folder = out
            elif single:
                continue
            else:
                folder = out / "selections" / cell_slug(cell)
            res = cell.selection_result()
            s, u = write_selection_csvs(folder, res.table, res.selected, fs)
            written[str(s.relative_to(out))] = s
            written[str(u.relative_to(out))] = u
    if html:
        written["report.html"] = write_html(out / "report.html", report, fs)
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


__all__ = ["cell_slug", "export_report", "export_subset_folder", "render_html", "scores_frame", "subset_frame",
           "subset_layout", "subset_zip_bytes", "write_csv", "write_html", "write_selection_csvs"]
