"""The Explore page's map: which points are drawn, and the WebGL figure that draws them.

Large pools are drawn downsampled: above :data:`MAX_DRAWN` points a seeded random sample of
that many pool rows is drawn (every class in proportion, in expectation), so the plot stays
interactive at 100,000 images; the page says so, and a lasso chooses among the drawn points.
Classes keep the order of the bar charts (sorted) in the legend and get colours of
:data:`CLASS_COLOURS` (dark enough to see on white; no pale yellows or light greens).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.colors as pc
import plotly.graph_objects as go

from core.text import display_text

MAX_DRAWN = 20_000
WEBGL_ABOVE = 5_000  # SVG draws crisper and prints; WebGL stays fast with many points
#: D3's ten colours for up to ten classes, Plotly's Dark24 beyond (then cycled)
CLASS_COLOURS = pc.qualitative.D3
MANY_CLASS_COLOURS = pc.qualitative.Dark24
KEPT_COLOURS = {"kept": "#3b6fd8", "dropped": "#c9d1e0"}


def drawn_rows(pool_rows: np.ndarray, max_drawn: int = MAX_DRAWN, seed: int = 0) -> np.ndarray:
    """The pool rows drawn on the map: all of them up to ``max_drawn``, else a random sample of
    ``max_drawn`` (``seed``), in pool order."""
    pool_rows = np.asarray(pool_rows, dtype=np.int64)
    if len(pool_rows) <= max_drawn:
        return pool_rows
    pick = np.random.default_rng(seed).choice(len(pool_rows), size=max_drawn, replace=False)
    return pool_rows[np.sort(pick)]


def class_colours(classes: Sequence[str]) -> dict[str, str]:
    """Class -> colour, classes in sorted order (the legend's and the bar charts' order)."""
    palette = CLASS_COLOURS if len(classes) <= len(CLASS_COLOURS) else MANY_CLASS_COLOURS
    return {c: palette[k % len(palette)] for k, c in enumerate(sorted(classes))}


def _hover(points: pd.DataFrame, score_cols: Sequence[str]) -> tuple[np.ndarray, str]:
    """customdata (index first, as app.hover expects) and the hover template: file name, class,
    kept, every score."""
    cols = ["index", "file", "class", "kept", *score_cols]
    custom = np.empty((len(points), len(cols)), dtype=object)
    for k, c in enumerate(cols):
        custom[:, k] = points[c].to_numpy()
    lines = ["%{customdata[1]}", "class %{customdata[2]} · %{customdata[3]}"]
    lines += [f"{c} %{{customdata[{4 + k}]:.3f}}" for k, c in enumerate(score_cols)]
    return custom, "<br>".join(lines) + "<extra></extra>"


def point_figure(
    points: pd.DataFrame, colour: str, score_cols: Sequence[str], title: str, height: int = 560
) -> go.Figure:
    """The map as scatter traces (``Scattergl`` above :data:`WEBGL_ABOVE` points): one per class (``colour="class"``), kept/dropped
    (``"kept"``), or one trace coloured by a score column (Viridis, with a colour bar).
    ``points`` needs ``x``, ``y``, ``index``, ``file``, ``class``, ``kept`` and ``score_cols``."""
    fig = go.Figure()
    marker = dict(size=6, opacity=0.85)
    trace = go.Scattergl if len(points) > WEBGL_ABOVE else go.Scatter
    if colour in ("class", "kept"):
        if colour == "class":
            groups = class_colours(points["class"].astype(str).unique().tolist())
        else:
            groups = {g: KEPT_COLOURS[g] for g in ("kept", "dropped") if (points["kept"] == g).any()}
        for name, col in groups.items():
            part = points[points[colour].astype(str) == name]
            custom, template = _hover(part, score_cols)
            fig.add_trace(
                trace(
                    x=part["x"],
                    y=part["y"],
                    mode="markers",
                    name=display_text(name),
                    marker={**marker, "color": col},
                    customdata=custom,
                    hovertemplate=template,
                )
            )
    else:
        custom, template = _hover(points, score_cols)
        fig.add_trace(
            trace(
                x=points["x"],
                y=points["y"],
                mode="markers",
                name=colour,
                marker={
                    **marker,
                    "color": points[colour],
                    "colorscale": "Viridis",
                    "showscale": True,
                    "colorbar": {"title": {"text": colour}},
                },
                customdata=custom,
                hovertemplate=template,
                showlegend=False,
            )
        )
    fig.update_layout(
        title=title,
        height=height,
        margin=dict(l=10, r=10, t=40, b=10),
        dragmode="lasso",
        xaxis_title="",
        yaxis_title="",
        legend_title_text="",
        hovermode="closest",
        legend=dict(itemsizing="constant"),
    )
    return fig


__all__ = ["CLASS_COLOURS", "KEPT_COLOURS", "MAX_DRAWN", "WEBGL_ABOVE", "class_colours", "drawn_rows", "point_figure"]
