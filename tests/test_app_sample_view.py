"""The sample view (one image large, its scores, neighbours, add/drop), paging of the ranking and
galleries, and the Explore map drawn downsampled on large pools."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app import cached

from ._app_helpers import FAKE, errors, selected, state

pytestmark = pytest.mark.usefixtures("fake_app_model")


def _explore(at):
    at.session_state["explore_projection"] = "PCA"
    at.switch_page("views/explore.py").run()
    assert not errors(at) and not at.exception, (errors(at), at.exception)
    return at


def test_neighbours_equal_a_slow_cosine_reference_nearest_first():
    from app import sample_view

    at = selected()
    st_ = state(at)
    fs = cached.get_features(st_.embedding_key)
    x = np.asarray(fs.features[FAKE], dtype=np.float64)
    pool = cached.selection(st_.runs[st_.active_run]).table["index"].to_numpy()
    for i in (int(pool[0]), int(pool[77])):
        got = sample_view.neighbours(st_.embedding_key, fs, FAKE, i, k=5, rows=pool)
        sims = [(float(x[j] @ x[i] / (np.linalg.norm(x[j]) * np.linalg.norm(x[i]))), int(j)) for j in pool if j != i]
        ref = sorted(sims, key=lambda t: (-t[0], t[1]))[:5]
        assert got["index"].tolist() == [j for _, j in ref]
        assert np.allclose(got["similarity"], [s for s, _ in ref], atol=1e-5)
        assert got["label"].tolist() == [str(fs.labels[j]) for _, j in ref]


def test_a_gallery_image_opens_large_with_scores_neighbours_and_drop():
    at = _explore(selected())
    st_ = state(at)
    result = cached.selection(st_.runs[st_.active_run])
    first_kept = int(result.selected[0])
    label = str(result.table.loc[result.table["index"] == first_kept, "label"].iloc[0])
    at.selectbox(key="explore_gallery_class").set_value(label).run()
    buttons = [b for b in at.button if b.key and b.key.startswith("g_kept_open_")]
    assert buttons and buttons[0].key == f"g_kept_open_{first_kept}"  # kept gallery: selection order
    buttons[0].click().run()
    assert not errors(at) and not at.exception
    scores = [d.value for d in at.dataframe if "score" in d.value.columns and "value" in d.value.columns]
    assert scores, "the sample view shows the scores"
    table = dict(zip(scores[0]["score"], scores[0]["value"]))
    row = result.table.set_index("index").loc[first_kept]
    assert table["score"] == f"{float(row['score']):.4g}" and table["ram"] == f"{float(row['ram']):.4g}"
    assert any(f"nearest training images in {FAKE}" in c.value for c in at.caption)
    assert any(str(cached.get_features(st_.embedding_key).paths[first_kept]) in c.value for c in at.caption)
    assert at.button(key="sample_add").disabled and not at.button(key="sample_drop").disabled
    at.button(key="sample_drop").click().run()
    assert st_.edits_for(st_.active_run).dropped == {first_kept}
    assert not at.button(key="sample_add").disabled and at.button(key="sample_drop").disabled  # still open, updated
    # closing it (its ✕ calls sample_view.close) keeps it closed on the next reruns
    from app import sample_view

    at.session_state[sample_view.OPEN_KEY] = None
    at.run()
    assert not [d for d in at.dataframe if "score" in d.value.columns and "value" in d.value.columns]


def test_the_ranking_pages_and_a_clicked_row_opens_its_image(monkeypatch):
    at = selected()
    st_ = state(at)
    result = cached.selection(st_.runs[st_.active_run])
    at.number_input(key="select_ranking_page").set_value(2).run()
    ranking = at.dataframe[0].value
    assert len(ranking) == 500 and not ranking["selected"].any()
    dropped = result.table.loc[~result.table["selected"], "index"].tolist()
    assert ranking["index"].tolist() == dropped[400:900]  # page 2 of (100 kept + 900 dropped)
    assert any("Rows 501–1,000 of 1,000" in c.value for c in at.caption)

    # a row click (the dataframe's selection) opens that image's view once
    at.session_state["select_ranking"] = {"selection": {"rows": [3], "columns": [], "cells": []}}
    at.run()
    views = [c.value for c in at.caption if str(cached.get_features(st_.embedding_key).paths[dropped[403]]) in c.value]
    assert views, "the clicked row's image opens"


def test_gallery_pages_continue_the_ranking():
    at = _explore(selected())
    st_ = state(at)
    result = cached.selection(st_.runs[st_.active_run])
    label = sorted(result.budget_table["class"].astype(str))[0]
    at.selectbox(key="explore_gallery_class").set_value(label).run()
    at.number_input(key=f"explore_gallery_page|{label}").set_value(2).run()
    keys = [b.key for b in at.button if b.key and b.key.startswith("g_repr_open_")]
    t = result.table[result.table["label"].astype(str) == label].sort_values(["score", "index"])
    want = [f"g_repr_open_{i}" for i in t["index"].iloc[12:24]]
    # the grid has 6 columns, read column by column: items 0, 6, 1, 7, ...
    assert keys == [want[c + 6 * r] for c in range(6) for r in range(2)]


def test_a_large_pool_is_drawn_downsampled_with_a_note(monkeypatch):
    from app import explore_plot

    monkeypatch.setattr(explore_plot, "MAX_DRAWN", 300)
    monkeypatch.setattr(explore_plot.drawn_rows, "__defaults__", (300, 0))
    at = _explore(selected())
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    drawn = [int(cd[0]) for t in fig["data"] for cd in t["customdata"]]
    pool = cached.selection(state(at).runs[state(at).active_run]).table["index"].to_numpy()
    assert len(drawn) == 300 and len(set(drawn)) == 300 and set(drawn) <= set(pool.tolist())
    assert sorted(drawn) == explore_plot.drawn_rows(pool, 300, 0).tolist()
    assert "300 drawn" in fig["layout"]["title"]["text"]
    assert any("random sample of 300 of the 1,000 images" in c.value for c in at.caption)
    assert all(t["type"] == "scatter" for t in fig["data"])  # below WEBGL_ABOVE points: SVG
    assert explore_plot.drawn_rows(np.arange(50), 300).tolist() == list(range(50))


def test_a_click_on_a_dot_opens_its_image_once_per_click():
    at = _explore(selected())
    st_ = state(at)
    fs = cached.get_features(st_.embedding_key)
    row = int(cached.selection(st_.runs[st_.active_run]).table["index"].iloc[5])

    def shown():
        return [c.value for c in at.caption if c.value == str(fs.paths[row])]

    held = dict(at.session_state["explore_hover"]) if "explore_hover" in at.session_state else {}
    at.session_state["explore_hover"] = {**held, "clicked": {"row": row, "n": 1}}  # what the component reports
    at.run()
    assert shown(), "the clicked dot's image opens"
    from app import sample_view

    at.session_state[sample_view.OPEN_KEY] = None  # closed with its ✕
    at.run()
    assert not shown()  # the same click does not open it again
    at.session_state["explore_hover"] = {**held, "clicked": {"row": row, "n": 2}}  # clicked again
    at.run()
    assert shown()
