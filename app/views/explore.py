"""Explore: a 2-D map of a model's features, lasso/box selection, and galleries per class."""

from __future__ import annotations

import streamlit as st

from app import cached, explore_plot, hover, sample_view, services
from app.components import need_run, thumb_grid
from app.state import get_state
from core.selection import get_selector

MAX_LISTED = 48

state = get_state()
st.title("Explore")
st.caption(
    "Each dot is a training image, placed by its features; hover a dot to see the image. Drag a box "
    "or lasso round dots to list them, then add them to the subset or drop them from it."
)

active = need_run()
if active is None:
    st.stop()
run_id, fs, edits, result = active.run_id, active.fs, active.edits, active.result
st.caption(f"Run: **{run_id}**")

c1, c2, c3 = st.columns(3)
model = c1.selectbox("Features of", fs.models, key="explore_model")
projection = c2.radio("Projection", ["UMAP", "PCA"], key="explore_projection", horizontal=True)
score_cols = services.point_score_columns(result)
colour_names = {"ram": "RAM", "apl": "APL", "label_agreement": "label agreement"}
colour_options = ["class", "kept/dropped"] + [colour_names.get(c, c) for c in score_cols]
colour = c3.selectbox("Colour by", colour_options, key="explore_colour")

coords, used, pending = None, "PCA", False
if projection == "UMAP":
    try:
        coords = cached.umap(state.embedding_key, model)
        used = "UMAP"
        pending = coords is None
    except ImportError:
        st.warning("umap-learn is not installed (`pip install umap-learn`); showing PCA instead.")
    except Exception as exc:  # noqa: BLE001 - fall back to PCA, say why
        st.warning(f"UMAP failed ({type(exc).__name__}: {exc}); showing PCA instead.")
if coords is None:
    coords, used = cached.pca(state.embedding_key, model), "PCA"
if pending:
    st.info(
        "UMAP is being computed in the background (the first time takes a few seconds); showing PCA meanwhile.",
        icon=":material/hourglass_top:",
    )

    @st.fragment(run_every=1.5)
    def _wait_for_umap() -> None:
        if cached.umap(state.embedding_key, model) is not None:
            st.rerun(scope="app")

    _wait_for_umap()

pool_rows = result.table["index"].to_numpy()
drawn = explore_plot.drawn_rows(pool_rows)
points = services.point_frame(result, fs, coords, drawn)
colour_col = {"class": "class", "kept/dropped": "kept", **{colour_names.get(c, c): c for c in score_cols}}[colour]
title = f"{used} of {model} ({len(pool_rows)} images)"
if len(drawn) < len(pool_rows):
    title += f", {len(drawn):,} drawn"
    st.caption(
        f"The map draws a random sample of {len(drawn):,} of the {len(pool_rows):,} images (seed 0) so that it "
        "stays quick; a lasso or box chooses among the drawn ones. The galleries, the ranking and the "
        "subset use every image."
    )
fig = explore_plot.point_figure(points, colour_col, [c for c in score_cols if c in points.columns], title)
event = st.plotly_chart(
    fig, key="explore_plot", on_select="rerun", selection_mode=("points", "box", "lasso"), width="stretch"
)
chosen = services.chosen_rows(event)

# a click on one dot opens its sample view (once per click: the selection stays on the chart)
sample_view.request_once("explore", tuple(chosen), chosen[0] if len(chosen) == 1 else None, run_id, "explore")
if chosen:
    kept_now = set(result.selected.tolist())
    n_kept = sum(i in kept_now for i in chosen)
    st.markdown(f"**{len(chosen)} chosen** ({n_kept} kept, {len(chosen) - n_kept} dropped)")
    shown = chosen[:MAX_LISTED]
    if len(chosen) > len(shown):
        st.caption(
            f"Showing the first {len(shown)} of the {len(chosen)} chosen images; Add / Drop act on all {len(chosen)}."
        )
    thumb_grid(
        [fs.paths[i] for i in shown],
        [f"{fs.labels[i]}{' ✓' if i in kept_now else ''}" for i in shown],
        columns=12,
        size=56,
        key="explore_chosen",
        rows=shown,
        active=active,
    )
    b1, b2, _ = st.columns([1, 1, 3])
    if b1.button("Add to subset", key="explore_add", type="primary"):
        services.edit_subset(edits.added, edits.dropped, active.base.selected, chosen, keep=True)
        st.rerun()
    if b2.button("Drop from subset", key="explore_drop"):
        services.edit_subset(edits.added, edits.dropped, active.base.selected, chosen, keep=False)
        st.rerun()
else:
    st.caption(
        "Tip: hover a dot to see its image, click it to open it large with its scores and neighbours, or "
        "use the lasso or box tool of the plot to choose several."
    )
if edits:
    st.caption(f"Hand edits of this run: +{len(edits.added)} added, −{len(edits.dropped)} dropped.")
    if st.button("Undo all edits", key="explore_undo"):
        edits.added.clear()
        edits.dropped.clear()
        st.rerun()

st.divider()
st.subheader("Galleries")
classes = sorted(result.budget_table["class"].astype(str))
g1, g2 = st.columns([3, 1])
label = g1.selectbox("Class", classes, key="explore_gallery_class")
class_size = int((result.table["label"].astype(str) == label).sum())
GALLERY_K = 12
n_pages = max(1, -(-class_size // GALLERY_K))
gpage = (
    int(
        g2.number_input(
            f"Page (of {n_pages})", min_value=1, max_value=n_pages, value=1, step=1, key=f"explore_gallery_page|{label}"
        )
    )
    - 1
)
rows = services.gallery_rows(result, label, k=GALLERY_K, offset=gpage * GALLERY_K)


score_column = get_selector(result.method).score_column


def _grid(gallery, key: str) -> None:
    frame = gallery.rows
    st.caption(gallery.caption)
    idx = frame["index"].astype(int).tolist()
    caps = [services.gallery_caption(r, score_column) for _, r in frame.iterrows()]
    thumb_grid([fs.paths[i] for i in idx], caps, columns=6, size=96, key=key, rows=idx, active=active)


tabs = st.tabs([rows["representative"].title, rows["hardest"].title, rows["mislabels"].title, "Kept vs dropped"])
with tabs[0]:
    _grid(rows["representative"], "g_repr")
with tabs[1]:
    _grid(rows["hardest"], "g_hard")
with tabs[2]:
    if "suspected_mislabel" not in result.table.columns and "apl" not in result.table.columns:
        st.caption(
            "Label issues are not computed for pools this large; use `coreset-studio select` (it writes "
            "them to scores.csv)."
        )
    else:
        _grid(rows["mislabels"], "g_mis")
with tabs[3]:
    left, right = st.columns(2)
    with left:
        st.markdown("**Kept**")
        _grid(rows["kept"], "g_kept")
    with right:
        st.markdown("**Dropped**")
        _grid(rows["dropped"], "g_drop")

# Last, so the galleries show before the first visit makes the hover thumbnails (the card
# finds the chart by its key wherever this sits).
if fs.paths is not None:
    # the real paths (the frame's path column is for display: bytes that are not UTF-8 escaped)
    hover.hover_thumbnails(
        "explore_plot",
        points["index"].tolist(),
        [str(fs.paths[i]) for i in points["index"]],
        data_key=f"{state.embedding_key}|{hover.THUMB_PX}",
        key="explore_hover",
        thumbnails=lambda paths: cached.thumbnails(paths, hover.THUMB_PX),
    )

# a click on a dot (reported by the hover component) opens that image, once per click
click = hover.clicked("explore_hover")
sample_view.request_once("explore_click", click, click[0] if click else None, run_id, "explore")
sample_view.show(active, "explore")  # last: the image opened from the map or a gallery, if any
