"""``report.html``: one self-contained file (inline CSS and SVG, images as ``data:`` URIs).

Nothing is loaded from the network: no scripts, fonts, style sheets or images by URL.
Sections (each chart is an ``<svg>`` with an ``id`` and a ``<title>``):

* ``chart-accuracy-<i>`` (one per noise level): top-1 accuracy (%) against the fraction
  for every method, mean over the seeds with ± 1 sample std error bars; the full
  training set as a dashed line. Fractions are equally spaced (categorical axis).
* ``chart-budgets``: rows kept per class at the primary fraction, one bar per budget
  strategy present in the run (all ``paper`` methods share the same budgets).
* ``chart-per-class``: per-class test accuracy (%) of the primary selection, its random
  baseline (mean over seeds) and the full training set.
* ``thumbnails``: the primary selection's most representative and hardest kept and
  dropped images. "Representative" = lowest value, "hard" = highest value of the first
  of these columns the method computed: ``score`` (RAM-APL, MIN: low = central and
  well-predicted), ``ram``, ``distance`` (Moderate-DS), ``distance_to_selected``
  (k-center: distance to the nearest kept sample), ``herding_error``, ``gain``
  (facility location / graph cut, negated: high gain = representative), ``random_key``
  (random: no meaning); the caption names the column used.

The *primary* selection is the first non-random method at the first fraction and the
first noise level (or the only one, for ``coreset-studio evaluate``).
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..evaluation.report import EvaluationReport
from ..features import FeatureSet
from ..workspace import atomic_write_text

PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
    "#393b79",
    "#637939",
)
#: (column, sign): representativeness = sign * value, low = representative.
THUMBNAIL_COLUMNS = (
    ("score", 1),
    ("ram", 1),
    ("distance", 1),
    ("distance_to_selected", 1),
    ("herding_error", 1),
    ("gain", -1),
    ("random_key", 1),
)
THUMB_SIZE = 96
THUMBS_PER_GROUP = 6

esc = html.escape


def _fmt(v: float, digits: int = 2) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


# --------------------------------------------------------------------------- SVG charts
def _nice_max(v: float) -> float:
    if not math.isfinite(v) or v <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * exp:
            return m * exp
    return 10 * exp


def svg_line_chart(
    chart_id: str,
    title: str,
    x_labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    reference: float | None = None,
    reference_label: str = "full",
    y_label: str = "accuracy (%)",
    width: int = 960,
    height: int = 420,
) -> str:
    """Lines with ± error bars over categorical x positions; ``series = [(name, y, err)]``."""
    left, right, top, bottom = 56, 180, 34, 48
    pw, ph = width - left - right, height - top - bottom
    values = [y + (e if math.isfinite(e) else 0) for _, ys, es in series for y, e in zip(ys, es) if math.isfinite(y)]
    if reference is not None and math.isfinite(reference):
        values.append(reference)
    lo_vals = [y - (e if math.isfinite(e) else 0) for _, ys, es in series for y, e in zip(ys, es) if math.isfinite(y)]
    y_max = min(100.0, _nice_max(max(values) if values else 1.0) if max(values or [1]) > 0 else 1.0)
    y_min = max(0.0, math.floor((min(lo_vals) if lo_vals else 0.0) / 10.0) * 10.0)
    if y_max <= y_min:
        y_min, y_max = 0.0, 100.0
    n = max(1, len(x_labels))

    def X(i: int) -> float:
        return left + (pw * (i + 0.5) / n)

    def Y(v: float) -> float:
        return top + ph * (1 - (v - y_min) / (y_max - y_min))

    out = [
        f'<svg id="{esc(chart_id)}" class="chart" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img">',
        f"<title>{esc(title)}</title>",
        f'<text x="{left}" y="18" class="ctitle">{esc(title)}</text>',
    ]
    for k in range(6):
        v = y_min + (y_max - y_min) * k / 5
        out.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{Y(v) + 4:.1f}" class="tick" text-anchor="end">{v:.0f}</text>'
        )
    for i, lab in enumerate(x_labels):
        out.append(f'<text x="{X(i):.1f}" y="{top + ph + 18}" class="tick" text-anchor="middle">{esc(lab)}</text>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 8}" class="axis" text-anchor="middle">fraction kept</text>')
    out.append(
        f'<text x="14" y="{top + ph / 2:.1f}" class="axis" text-anchor="middle" '
        f'transform="rotate(-90 14 {top + ph / 2:.1f})">{esc(y_label)}</text>'
    )
    if reference is not None and math.isfinite(reference):
        out.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{Y(reference):.1f}" y2="{Y(reference):.1f}" '
            f'class="ref"><title>{esc(reference_label)}: {reference:.2f}</title></line>'
        )
    for k, (name, ys, errs) in enumerate(series):
        color = PALETTE[k % len(PALETTE)]
        pts = [(X(i), Y(y)) for i, y in enumerate(ys) if math.isfinite(y)]
        if len(pts) > 1:
            out.append(
                f'<polyline fill="none" stroke="{color}" stroke-width="2" points="'
                + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
                + '"/>'
            )
        for i, (y, e) in enumerate(zip(ys, errs)):
            if not math.isfinite(y):
                continue
            if math.isfinite(e) and e > 0:
                out.append(
                    f'<line x1="{X(i):.1f}" x2="{X(i):.1f}" y1="{Y(min(y + e, y_max)):.1f}" '
                    f'y2="{Y(max(y - e, y_min)):.1f}" stroke="{color}" stroke-width="1.5"/>'
                )
            out.append(
                f'<circle cx="{X(i):.1f}" cy="{Y(y):.1f}" r="3.5" fill="{color}">'
                f"<title>{esc(name)} at {esc(x_labels[i])}: {y:.2f} ± {_fmt(e)}</title></circle>"
            )
        ly = top + 14 + 18 * k
        out.append(
            f'<rect x="{left + pw + 14}" y="{ly - 9}" width="12" height="12" fill="{color}"/>'
            f'<text x="{left + pw + 32}" y="{ly + 1}" class="legend">{esc(name)}</text>'
        )
    if reference is not None and math.isfinite(reference):
        ly = top + 14 + 18 * len(series)
        out.append(
            f'<line x1="{left + pw + 12}" x2="{left + pw + 28}" y1="{ly - 3}" y2="{ly - 3}" class="ref"/>'
            f'<text x="{left + pw + 32}" y="{ly + 1}" class="legend">{esc(reference_label)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def svg_grouped_bars(
    chart_id: str,
    title: str,
    categories: Sequence[str],
    groups: Sequence[tuple[str, Sequence[float]]],
    y_label: str,
    y_max: float | None = None,
    width: int | None = None,
    height: int = 400,
) -> str:
    """Grouped vertical bars: one group of bars per category, one bar per ``groups`` entry."""
    n_cat = max(1, len(categories))
    n_grp = max(1, len(groups))
    left, right, top, bottom = 56, 180, 34, 90
    width = width or max(760, left + right + n_cat * (n_grp * 10 + 8))
    pw, ph = width - left - right, height - top - bottom
    vals = [v for _, vs in groups for v in vs if v is not None and math.isfinite(v)]
    y_max = y_max if y_max is not None else _nice_max(max(vals) if vals else 1.0)
    slot = pw / n_cat
    bw = max(1.0, (slot * 0.8) / n_grp)

    def Y(v: float) -> float:
        return top + ph * (1 - v / y_max)

    out = [
        f'<svg id="{esc(chart_id)}" class="chart" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img">',
        f"<title>{esc(title)}</title>",
        f'<text x="{left}" y="18" class="ctitle">{esc(title)}</text>',
    ]
    for k in range(6):
        v = y_max * k / 5
        out.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" class="grid"/>'
            f'<text x="{left - 6}" y="{Y(v) + 4:.1f}" class="tick" text-anchor="end">{v:g}</text>'
        )
    out.append(
        f'<text x="14" y="{top + ph / 2:.1f}" class="axis" text-anchor="middle" '
        f'transform="rotate(-90 14 {top + ph / 2:.1f})">{esc(y_label)}</text>'
    )
    for c, cat in enumerate(categories):
        x0 = left + slot * c + slot * 0.1
        for g, (name, vs) in enumerate(groups):
            v = vs[c] if c < len(vs) else math.nan
            if v is None or not math.isfinite(v):
                continue
            color = PALETTE[g % len(PALETTE)]
            out.append(
                f'<rect x="{x0 + g * bw:.1f}" y="{Y(min(v, y_max)):.1f}" width="{bw:.1f}" '
                f'height="{max(0.0, Y(0) - Y(min(v, y_max))):.1f}" fill="{color}">'
                f"<title>{esc(str(cat))} / {esc(name)}: {v:g}</title></rect>"
            )
        cx = left + slot * (c + 0.5)
        out.append(
            f'<text x="{cx:.1f}" y="{top + ph + 12}" class="tick" text-anchor="end" '
            f'transform="rotate(-45 {cx:.1f} {top + ph + 12})">{esc(str(cat)[:24])}</text>'
        )
    for g, (name, _) in enumerate(groups):
        ly = top + 14 + 18 * g
        out.append(
            f'<rect x="{left + pw + 14}" y="{ly - 9}" width="12" height="12" fill="{PALETTE[g % len(PALETTE)]}"/>'
            f'<text x="{left + pw + 32}" y="{ly + 1}" class="legend">{esc(name)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


# --------------------------------------------------------------------------- thumbnails
def thumbnail_data_uri(path: str, size: int = THUMB_SIZE, fmt: str = "png", square: bool = False) -> str | None:
    """A base64 ``data:`` URI of the image scaled to fit ``size`` px, or None if unreadable.
    ``square``: centre-cropped to a square instead (tidy grids), ``size`` px or the image's
    shorter side if that is smaller.

    ``fmt``: ``png`` (lossless, the default), ``jpeg`` (quality 85: about a quarter of the
    bytes for photographs, for thumbnails sent in bulk) or ``auto`` (PNG when the image is
    already no larger than ``size``, e.g. 28 px Fashion-MNIST, whose JPEG artefacts would show
    when enlarged; JPEG when it is scaled down). JPEG sources are decoded at a reduced scale
    first (``Image.draft``), which is faster and still at least ``size`` px. Decoding is
    :func:`~core.datasets.images.open_rgb`'s, as for embeddings (16-bit and float images
    scaled, alpha on white, EXIF orientation applied).
    """
    from PIL import Image, ImageOps

    from ..datasets.images import open_rgb

    if fmt not in ("png", "jpeg", "auto"):
        raise ValueError(f"fmt must be 'png', 'jpeg' or 'auto', not {fmt!r}")
    try:
        with Image.open(path) as raw:
            if fmt == "auto":
                fmt = "png" if max(raw.size) <= size else "jpeg"
            im = open_rgb(raw, draft=(size, size))
            if square:  # never enlarged: a smaller image gives a smaller square
                side = min(size, *im.size)
                im = ImageOps.fit(im, (side, side), Image.Resampling.BICUBIC)
            else:
                im.thumbnail((size, size))
            buf = io.BytesIO()
            if fmt == "png":
                im.save(buf, format="PNG", optimize=True)
            else:
                im.save(buf, format="JPEG", quality=85)
    except Exception:  # noqa: BLE001 - a bad file just gets no thumbnail
        return None
    return f"data:image/{fmt};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def thumbnail_column(table: pd.DataFrame) -> tuple[str, int] | None:
    """``(column, sign)`` used to order samples from representative to hard (module docstring)."""
    for col, sign in THUMBNAIL_COLUMNS:
        if col in table.columns and pd.api.types.is_numeric_dtype(table[col]) and table[col].notna().any():
            return col, sign
    return None


def registry_order(table: pd.DataFrame, method: str | None) -> tuple[str, int] | None:
    """``(column, sign)`` from the method's registry entry (its score column and which end is
    representative), or None when the method declares no score column in ``table``."""
    if not method:
        return None
    from ..errors import SelectionInputError
    from ..selection import get_selector

    try:
        spec = get_selector(method)
    except SelectionInputError:
        return None
    col = spec.score_column
    if col and col in table.columns and pd.api.types.is_numeric_dtype(table[col]) and table[col].notna().all():
        return col, (1 if spec.representative == "low" else -1)
    return None


def pick_thumbnails(
    table: pd.DataFrame, k: int = THUMBS_PER_GROUP, method: str | None = None
) -> dict[str, pd.DataFrame]:
    """Rows for the thumbnail groups, each with a ``repr_value`` column for its caption.

    With the method's registry entry: a score column gives representative/hard x kept/dropped
    by that column and direction; a method with no score column (greedy ones) gives its first
    and last picks, and the dropped images with the highest and lowest label agreement (label
    consensus) when known. Without a method, the first of :data:`THUMBNAIL_COLUMNS` present."""
    chosen = registry_order(table, method)
    greedy = False
    if chosen is None and method:
        from ..errors import SelectionInputError
        from ..selection import get_selector

        try:
            greedy = get_selector(method).score_column is None
        except SelectionInputError:
            greedy = False
    if greedy:
        kept = table[table["selected"]].sort_values("order").assign(repr_value=lambda f: f["order"].astype(float))
        dropped = table[~table["selected"]]
        out = {"picked first": kept.head(k), "picked last": kept.tail(k).iloc[::-1]}
        if "label_agreement" in dropped.columns:
            d = dropped.assign(repr_value=dropped["label_agreement"].astype(float))
            out["dropped, label most agreed"] = d.sort_values(["repr_value", "index"], ascending=[False, True]).head(k)
            out["dropped, label least agreed"] = d.sort_values(["repr_value", "index"]).head(k)
        else:
            out["dropped"] = dropped.head(k).assign(repr_value=math.nan)
        return out
    if chosen is None:
        chosen = thumbnail_column(table)
    if chosen is None:
        return {}
    col, sign = chosen
    t = table.assign(repr_value=sign * table[col].astype(float)).dropna(subset=["repr_value"])
    kept, dropped = t[t["selected"]], t[~t["selected"]]
    out = {
        "most representative kept": kept.nsmallest(k, "repr_value"),
        "hardest kept": kept.nlargest(k, "repr_value"),
        "most representative dropped": dropped.nsmallest(k, "repr_value"),
        "hardest dropped": dropped.nlargest(k, "repr_value"),
    }
    return out


# --------------------------------------------------------------------------- the page
CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px} h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ddd;padding:3px 7px;text-align:right}
th{background:#f4f4f4} td.l,th.l{text-align:left} .pos{color:#15803d} .neg{color:#b91c1c}
.chart{display:block;margin:10px 0;background:#fff} .grid{stroke:#e5e5e5;stroke-width:1}
.ref{stroke:#555;stroke-width:1.5;stroke-dasharray:6 4} .tick{font-size:11px;fill:#444}
.axis{font-size:12px;fill:#222} .legend{font-size:12px;fill:#222} .ctitle{font-size:14px;font-weight:600;fill:#222}
.thumbs{display:flex;flex-wrap:wrap;gap:6px} figure{margin:0;font-size:11px;text-align:center;width:100px}
figure img{width:96px;height:96px;object-fit:contain;background:#eee;display:block;margin:auto}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 14px;font-size:13px} dt{font-weight:600}
.note{font-size:13px;color:#555}
"""


def _primary_index(report: EvaluationReport) -> int | None:
    if not report.cells:
        return None
    levels = report.plan.get("noise_levels") or [report.cells[0].label_noise]
    fractions = report.plan.get("fractions") or [report.cells[0].fraction]
    for c_i, c in enumerate(report.cells):
        if c.method != "random" and c.label_noise == levels[0] and c.fraction == fractions[0]:
            return c_i
    return 0


def _results_table(report: EvaluationReport) -> str:
    frame = report.results_frame()
    head = (
        "<tr><th>noise</th><th class='l'>method</th><th>fraction</th><th>kept</th><th>accuracy %</th>"
        "<th>random %</th><th>difference (95 % CI)</th><th>full %</th><th>flipped kept</th></tr>"
    )
    rows = []
    for r in frame.itertuples():
        cls = (
            "pos"
            if math.isfinite(r.ci_low) and r.ci_low > 0
            else ("neg" if math.isfinite(r.ci_high) and r.ci_high < 0 else "")
        )
        diff = "baseline" if r.method == "random" else f"{_fmt(r.diff)} [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]"
        rows.append(
            f"<tr><td>{r.noise:g}</td><td class='l'>{esc(r.method)}</td><td>{r.fraction:g}</td><td>{r.kept}</td>"
            f"<td>{_fmt(r.acc)} ± {_fmt(r.acc_std)}</td><td>{_fmt(r.random)} ± {_fmt(r.random_std)}</td>"
            f"<td class='{cls}'>{esc(diff)}</td><td>{_fmt(r.full)}</td><td>{r.flipped_kept:g}</td></tr>"
        )
    return f"<table id='results'>{head}{''.join(rows)}</table>"


def _duplicates_text(d: dict | None) -> str:
    """The near-duplicate counts of the evaluation's rows (:meth:`Evaluator.duplicates`), in words."""
    if not d:
        return "not computed"
    text = f"{d.get('groups', 0)} group(s), {d.get('duplicates', 0)} image(s) beyond one per group"
    across = d.get("groups_across_pool_and_test", 0)
    if across:
        text += f"; {across} group(s) have images both in the training pool and in the test set"
    return text


def render_html(report: EvaluationReport, fs: FeatureSet | None = None, title: str | None = None) -> str:
    """The whole report page as a string (see the module docstring)."""
    ds = report.dataset or {}
    name = ds.get("name") or "features"
    title = title or f"Coreset Studio report: {name}"
    cfg = report.config
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    split = report.protocol.get("split", {})
    info = {
        "dataset": f"{name} ({ds.get('rows', '?')} rows; fingerprint {str(ds.get('fingerprint', 'n/a'))[:16]})",
        "selection features": ", ".join(report.features.get("selection_models", [])),
        "evaluation": f"{cfg.get('trainer')} on {report.features.get('eval_model') or 'images'}"
        + (" (also used for selection)" if report.features.get("eval_also_selects") else ""),
        "test set": f"{split.get('source')} ({split.get('n_test')} test / {split.get('n_pool')} training pool"
        + (
            f"; hold-out {split.get('holdout'):.0%}, seed {split.get('holdout_seed')}"
            if split.get("source") == "hold-out"
            else ""
        )
        + ")",
        "near-duplicates": _duplicates_text(report.protocol.get("duplicates")),
        "seeds": ", ".join(map(str, cfg.get("seeds", []))),
        "label noise": ", ".join(
            f"{n['rate']:g} ({n['n_flipped']} flipped, seed {n['seed']})" for n in report.protocol.get("noise", [])
        ),
        "created": report.created,
        "wall time": f"{report.timing_s.get('total', float('nan')):.1f} s",
        "versions": ", ".join(f"{k} {v}" for k, v in report.versions.items()),
    }
    parts.append("<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(str(v))}</dd>" for k, v in info.items()) + "</dl>")
    parts.append(
        "<p class='note'>Accuracy: top-1 on the test set, in %, mean ± sample std (ddof=1) over the seeds. "
        "Difference: method minus random at the same per-class budgets, with a 95 % Welch t interval "
        "(one-sample t over the random seeds when the method does not vary).</p>"
    )

    results_table = "<h2>Results</h2>" + _results_table(report)  # long: placed after the charts

    # accuracy vs fraction, one chart per noise level
    frame = report.results_frame()
    parts.append("<h2>Accuracy vs fraction</h2>")
    fractions = report.plan.get("fractions") or sorted(frame["fraction"].unique().tolist())
    for i, level in enumerate(report.plan.get("noise_levels") or sorted(frame["noise"].unique().tolist())):
        sub = frame[frame["noise"] == level]
        series = []
        for method in dict.fromkeys(sub["method"]):
            m = sub[sub["method"] == method].set_index("fraction")
            ys = [float(m.loc[f, "acc"]) if f in m.index else math.nan for f in fractions]
            es = [float(m.loc[f, "acc_std"]) if f in m.index else math.nan for f in fractions]
            series.append((method, ys, es))
        if "random" not in set(sub["method"]) and len(sub):
            # every cell carries its own random baseline (same per-class sizes): draw it, so that a
            # single evaluation is not a lone dot
            first = sub[sub["method"] == sub["method"].iloc[0]].set_index("fraction")
            series.append(
                (
                    "random (same per-class sizes)",
                    [float(first.loc[f, "random"]) if f in first.index else math.nan for f in fractions],
                    [float(first.loc[f, "random_std"]) if f in first.index else math.nan for f in fractions],
                )
            )
        full = float(sub["full"].mean()) if len(sub) else math.nan
        parts.append(
            svg_line_chart(
                f"chart-accuracy-{i}",
                f"Top-1 accuracy vs fraction (label noise {level:g})",
                [f"{f:g}" for f in fractions],
                series,
                reference=full,
                reference_label="full training set",
            )
        )

    primary = _primary_index(report)
    if primary is not None:
        cell = report.cells[primary]
        classes = report.protocol.get("classes") or list(cell.budget_counts)
        # budget bars: one bar per budget strategy at the primary fraction and noise
        groups, seen = [], set()
        for c in report.cells:
            if c.fraction == cell.fraction and c.label_noise == cell.label_noise and c.budget not in seen:
                seen.add(c.budget)
                groups.append((f"{c.budget} budget", [float(c.budget_counts.get(str(k), 0)) for k in classes]))
        sizes = None
        bt = cell.selection.get("budget_table")
        if bt:
            sizes = dict(zip(map(str, bt["data"]["class"]), bt["data"]["size"]))
        parts.append("<h2>Class budgets</h2>")
        if sizes:
            parts.append(
                f"<p class='note'>Rows kept per class at fraction {cell.fraction:g}. Class sizes in the pool: "
                + esc(", ".join(f"{k} {sizes.get(str(k), 0)}" for k in classes))
                + ".</p>"
            )
        parts.append(
            svg_grouped_bars(
                "chart-budgets",
                f"Rows kept per class (fraction {cell.fraction:g})",
                [str(k) for k in classes],
                groups,
                "rows kept",
            )
        )
        parts.append("<h2>Per-class accuracy</h2>")
        pc = [
            (f"{cell.label}", [100 * v for v in cell.method_result.per_class]),
            ("random (same budgets)", [100 * v for v in cell.random.per_class]),
            ("full training set", [100 * v for v in cell.full.per_class]),
        ]
        parts.append(
            svg_grouped_bars(
                "chart-per-class",
                f"Per-class test accuracy: {cell.label}, fraction {cell.fraction:g}, noise {cell.label_noise:g}",
                [str(k) for k in classes],
                pc,
                "accuracy (%)",
                y_max=100.0,
            )
        )
        parts.append(_thumbnails_section(cell, fs))
    parts.append(results_table)
    parts.append("</body></html>")
    return "\n".join(parts)


def _thumbnails_section(cell, fs: FeatureSet | None) -> str:
    head = "<h2>Kept and dropped images</h2><div id='thumbnails'>"
    table_d = cell.selection.get("table")
    if not table_d or fs is None or fs.paths is None:
        return head + "<p class='note'>No thumbnails: the image paths or per-sample scores are not available.</p></div>"
    table = cell.selection_result().table
    method = (cell.selection.get("details") or {}).get("chosen_method") or cell.method
    chosen = registry_order(table, method) or thumbnail_column(table)
    groups = pick_thumbnails(table, method=method)
    if not groups:
        return head + "<p class='note'>No thumbnails: the method computed no per-sample score.</p></div>"
    if "picked first" in groups:
        col, sign = "order", 1
        note = (
            f"{esc(cell.label)} at fraction {cell.fraction:g}: {esc(method)} has no per-image score, so the "
            "kept images are shown in the order it picked them; dropped images by their label agreement "
            "(share of the models' neighbours and class means voting for their label)."
        )
    else:
        assert chosen is not None  # pick_thumbnails found groups, so a score column orders them
        col, sign = chosen
        order = "high" if sign < 0 else "low"
        note = (
            f"{esc(cell.label)} at fraction {cell.fraction:g}: ordered by the column <code>{esc(col)}</code> "
            f"({order} = representative)" + (" — random keys carry no meaning" if col == "random_key" else "") + "."
        )
    parts = [head, f"<p class='note'>{note}</p>"]
    for gname, rows in groups.items():
        cap_col = "label agreement" if gname.startswith("dropped, label") else col
        figs = []
        for r in rows.itertuples(index=False):
            path = str(fs.paths[int(r.index)])
            uri = thumbnail_data_uri(path)
            if uri is None:
                continue
            figs.append(
                f"<figure><img alt='{esc(Path(path).name)}' src=\"{uri}\"><figcaption>{esc(str(r.label))}"
                + (
                    f"<br>{esc(cap_col)} {float(r.repr_value) * (1 if cap_col != col else sign):.3g}"
                    if math.isfinite(float(r.repr_value))
                    else ""
                )
                + "</figcaption></figure>"
            )
        parts.append(f"<h3>{esc(gname)}</h3><div class='thumbs'>{''.join(figs) or '(none)'}</div>")
    parts.append("</div>")
    return "".join(parts)


def write_html(path: str | os.PathLike, report: EvaluationReport, fs: FeatureSet | None = None) -> Path:
    """Render and write ``report.html`` atomically."""
    return atomic_write_text(path, render_html(report, fs))


__all__ = [
    "pick_thumbnails",
    "render_html",
    "svg_grouped_bars",
    "svg_line_chart",
    "thumbnail_column",
    "thumbnail_data_uri",
    "write_html",
]
