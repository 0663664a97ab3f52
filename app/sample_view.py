"""The sample view: one image large with its path, label, every score, its nearest neighbours
in a chosen model and buttons to add it to / drop it from the subset.

Opened from anywhere an image is shown (the ranking table, the galleries, a click on a dot in
Explore) with :func:`request`; a page calls :func:`show` once, last, which draws the view while
one is open on that page and run. It is an ``st.dialog``: it floats over the page and closes with
its ✕ or Esc (which forgets it, so it does not come back by itself). Sources that stay selected
across reruns (a table row, a clicked dot) go through :func:`request_once`, which asks only when
that selection changes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.text import display_text

from . import cached, services

OPEN_KEY = "_sample_view_open"  # {"row", "run", "page"} while a view is open
_SEEN_KEY = "_sample_view_seen"  # source -> the selection that last asked for the view
NEIGHBOURS = 8
VIEW_PX = 320


def request(i: int, run_id: str, page: str) -> None:
    """Open the view of feature row ``i`` of run ``run_id`` on ``page`` (drawn by :func:`show`)."""
    st.session_state[OPEN_KEY] = {"row": int(i), "run": run_id, "page": page}


def request_once(source: str, selection, i: int | None, run_id: str, page: str) -> None:
    """:func:`request` row ``i`` when ``selection`` (the selected rows of ``source``, anything
    comparable) differs from what last asked from that source; ``i`` None asks nothing."""
    seen = st.session_state.setdefault(_SEEN_KEY, {})
    changed = seen.get(source) != selection
    seen[source] = selection
    if i is not None and changed:
        request(i, run_id, page)


def close() -> None:
    st.session_state.pop(OPEN_KEY, None)


def show(active, page: str) -> None:
    """Draw the open view if it belongs to this ``page`` and the ``active`` run (call once, last)."""
    want = st.session_state.get(OPEN_KEY)
    if not want or want.get("page") != page or want.get("run") != active.run_id:
        return
    i = int(want["row"])
    if not 0 <= i < len(active.fs):
        close()
        return
    _dialog(i, active)


def score_items(result, i: int) -> list[tuple[str, str]]:
    """``(name, value)`` of every score the run computed for row ``i`` (table order)."""
    t = result.table
    hit = t.loc[t["index"].to_numpy() == i]
    if hit.empty:
        return []
    row = hit.iloc[0]
    skip = {"index", "label", "selected"}
    out = []
    for col in t.columns:
        if col in skip:
            continue
        v = row[col]
        if isinstance(v, (bool, np.bool_)):
            out.append((col, "yes" if v else "no"))
        elif isinstance(v, (int, np.integer)):
            out.append((col, f"{int(v)}"))
        elif isinstance(v, (float, np.floating)):
            out.append((col, "–" if not np.isfinite(v) else f"{float(v):.4g}"))
        else:
            out.append((col, display_text(str(v))))
    return out


def neighbours(
    embedding_key: str, fs, model: str, i: int, k: int = NEIGHBOURS, rows: np.ndarray | None = None
) -> pd.DataFrame:
    """The ``k`` nearest rows to row ``i`` by cosine similarity in ``model``'s features (among
    ``rows``, default all), nearest first: ``index``, ``label``, ``similarity``."""
    unit = cached.unit_features(embedding_key, model)
    sims = unit @ unit[i]
    sims[i] = -np.inf
    if rows is not None:
        mask = np.full(len(sims), True)
        mask[np.asarray(rows, dtype=np.int64)] = False
        sims[mask] = -np.inf
    k = int(min(k, np.isfinite(sims).sum()))
    if k <= 0:
        return pd.DataFrame({"index": [], "label": [], "similarity": []})
    top = np.argpartition(-sims, k - 1)[:k]
    top = top[np.lexsort((top, -sims[top]))]  # nearest first, ties by row
    return pd.DataFrame(
        {
            "index": top.astype(np.int64),
            "label": [str(fs.labels[j]) for j in top],
            "similarity": sims[top].astype(float),
        }
    )


@st.dialog("Image", width="large", on_dismiss=close)
def _dialog(i: int, active) -> None:
    fs, result = active.fs, active.result
    path = str(fs.paths[i]) if fs.paths is not None else ""
    kept_now = bool(np.isin(i, result.selected))
    left, right = st.columns([1, 1])
    uri = cached.thumbnails([path], VIEW_PX).get(path) if path else None
    if uri:
        left.image(uri, width=VIEW_PX)
    else:
        left.caption("The image could not be read.")
    right.markdown(f"**{display_text(path.rsplit('/', 1)[-1])}**")
    right.caption(display_text(path))
    right.markdown(
        f"Label: **{display_text(str(fs.labels[i]))}** · {'**in** the subset' if kept_now else '**not in** the subset'}"
    )
    items = score_items(result, i)
    if items:
        right.dataframe(pd.DataFrame(items, columns=["score", "value"]), hide_index=True, key="sample_scores")
    b1, b2 = right.columns(2)
    if b1.button("Add to subset", key="sample_add", disabled=kept_now, type="primary"):
        services.edit_subset(active.edits.added, active.edits.dropped, active.base.selected, [i], keep=True)
        st.rerun()
    if b2.button("Drop from subset", key="sample_drop", disabled=not kept_now):
        services.edit_subset(active.edits.added, active.edits.dropped, active.base.selected, [i], keep=False)
        st.rerun()
    model = st.selectbox("Nearest neighbours in", list(fs.models), key="sample_model")
    pool = result.table["index"].to_numpy(dtype=np.int64)
    near = neighbours(get_embedding_key(), fs, model, i, rows=pool)
    if near.empty:
        return
    st.caption(f"The {len(near)} nearest training images in {model} (cosine similarity)")
    idx = near["index"].tolist()
    thumbs = cached.thumbnails([str(fs.paths[j]) for j in idx], 96, square=True)
    cols = st.columns(len(idx))
    kept_set = set(np.asarray(result.selected).tolist())
    for col, j, lab, sim in zip(cols, idx, near["label"], near["similarity"]):
        with col:
            u = thumbs.get(str(fs.paths[j]))
            if u:
                st.image(u, width=80)
            st.caption(f"{display_text(lab)}{' ✓' if j in kept_set else ''} · {sim:.2f}")


def get_embedding_key() -> str:
    from .state import get_state

    return get_state().embedding_key or ""


__all__ = ["NEIGHBOURS", "OPEN_KEY", "close", "neighbours", "request", "request_once", "score_items", "show"]
