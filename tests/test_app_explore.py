"""AppTest: the Explore page (projection, colours, lasso/box selection -> edits, galleries)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app import cached

from ._app_helpers import FAKE, errors, metrics, selected, state

pytestmark = pytest.mark.usefixtures("fake_app_model")


@pytest.fixture(autouse=True)
def fast_umap(monkeypatch):
    # UMAP (numba) is slow to start: a fast stand-in with the same contract
    monkeypatch.setattr("core.projection.umap_2d", lambda x, seed=0: np.asarray(x, dtype=np.float32)[:, :2] * -1)


def _explore(projection: str = "PCA"):
    at = selected()
    at.session_state["explore_projection"] = projection
    at.switch_page("views/explore.py").run()
    assert not errors(at) and not at.exception, (errors(at), at.exception)
    return at


def _figure(at) -> dict:
    charts = at.get("plotly_chart")
    return json.loads(charts[0].proto.spec)


def test_pca_map_coloured_by_class_and_kept():
    at = _explore("PCA")
    fig = _figure(at)
    assert fig["layout"]["title"]["text"].startswith(f"PCA of {FAKE} (1000 images)")
    assert len(fig["data"]) == 10 and sum(len(t["customdata"]) for t in fig["data"]) == 1000
    assert all(t["type"] == "scatter" for t in fig["data"])  # svg below 5,000 points
    # the tooltip names the file, not its absolute path; the legend lists classes in the bar charts' order
    fs = cached.get_features(state(at).embedding_key)
    first = fig["data"][0]["customdata"][0]
    assert (
        first[1] == fs.paths[int(first[0])].rsplit("/", 1)[-1] and "%{customdata[1]}" in fig["data"][0]["hovertemplate"]
    )
    assert not any(str(fs.paths[int(cd[0])]) in json.dumps(cd) for cd in fig["data"][0]["customdata"][:20])
    names = [t["name"] for t in fig["data"]]
    assert names == sorted(names)
    from app.explore_plot import CLASS_COLOURS

    assert [t["marker"]["color"] for t in fig["data"]] == list(CLASS_COLOURS)  # D3: no pale yellows
    at.selectbox(key="explore_colour").set_value("kept/dropped").run()
    fig = _figure(at)
    sizes = {t["name"]: len(t["customdata"]) for t in fig["data"]}
    assert sizes == {"dropped": 900, "kept": 100}
    at.selectbox(key="explore_colour").set_value("RAM").run()
    assert len(_figure(at)["data"]) == 1  # continuous colour scale


def test_umap_runs_in_background_then_replaces_pca():
    at = _explore("UMAP")
    title = _figure(at)["layout"]["title"]["text"]
    if title.startswith("PCA"):  # still computing: PCA is shown meanwhile, with a note
        assert any("UMAP is being computed" in i.value for i in at.info)
        import time

        time.sleep(1.0)
        at.run()
    assert _figure(at)["layout"]["title"]["text"].startswith("UMAP of")


class _Lasso:
    """Stand-in for the browser: st.plotly_chart draws the chart and returns this selection."""

    def __init__(self, monkeypatch):
        import streamlit as st

        self.rows: list[int] = []
        original = st.plotly_chart

        def plotly_chart(fig, *args, **kwargs):
            original(fig, *args, **kwargs)
            points = [{"customdata": [i], "point_index": k, "curve_number": 0} for k, i in enumerate(self.rows)]
            return {"selection": {"points": points, "point_indices": list(range(len(points))), "box": [], "lasso": []}}

        monkeypatch.setattr(st, "plotly_chart", plotly_chart)


def test_chosen_rows_from_events():
    from app.services import chosen_rows

    assert chosen_rows(None) == [] and chosen_rows({"selection": {"points": []}}) == []
    ev = {"selection": {"points": [{"customdata": [3, "x"]}, {"customdata": [1]}, {"customdata": [3]}, {}]}}
    assert chosen_rows(ev) == [3, 1]
    assert chosen_rows({"bad": 1}) == []


@pytest.mark.slow
def test_box_selection_lists_images_and_edits_the_subset(monkeypatch):
    lasso = _Lasso(monkeypatch)
    at = _explore("PCA")
    st_ = state(at)
    result = cached.selection(st_.runs[st_.active_run])
    kept = [int(i) for i in result.selected[:3]]
    dropped = [int(i) for i in result.table.loc[~result.table["selected"], "index"].iloc[:2]]
    chosen = kept + dropped
    lasso.rows = chosen
    at.run()
    assert any("5 chosen" in m.value and "3 kept" in m.value for m in at.markdown)
    at.button(key="explore_drop").click().run()
    # only real changes are recorded: the 3 kept rows are dropped, the 2 dropped ones stay so
    assert state(at).edits_for(st_.active_run).dropped == set(kept)
    assert not state(at).edits_for(st_.active_run).added
    at.switch_page("views/select.py").run()
    assert metrics(at)["Kept"] == "97 / 1000"
    at.switch_page("views/explore.py").run()
    lasso.rows = dropped
    at.run()
    at.button(key="explore_add").click().run()
    e = state(at).edits_for(st_.active_run)
    assert e.added == set(dropped) and e.dropped == set(kept)
    assert any("+2 added, −3 dropped" in c.value for c in at.caption)
    # adding back a row the run kept undoes its drop instead of counting as an addition
    lasso.rows = kept[:1]
    at.run()
    at.button(key="explore_add").click().run()
    e = state(at).edits_for(st_.active_run)
    assert e.added == set(dropped) and e.dropped == set(kept[1:])
    at.button(key="explore_undo").click().run()
    assert not state(at).edits_for(st_.active_run)


def test_galleries_per_class():
    at = _explore("PCA")
    assert [t.label for t in at.tabs] == ["Most representative", "Hardest", "Suspected mislabels", "Kept vs dropped"]
    at.selectbox(key="explore_gallery_class").set_value("trouser").run()
    # 12 representative + 12 hardest + mislabels (<= 12) + 10 kept + 12 dropped
    n = len(at.get("image"))
    assert 46 <= n <= 58, n


@pytest.mark.parametrize("seed", range(5))
def test_edit_subset_matches_a_direct_record_of_each_rows_state(seed):
    from app.services import edit_subset

    rng = np.random.default_rng(seed)
    base = set(rng.choice(40, 12, replace=False).tolist())
    added, dropped = set(), set()
    want = {i: i in base for i in range(40)}  # the obvious reference: each row's wanted state
    for _ in range(30):
        chosen = rng.choice(40, int(rng.integers(1, 8)), replace=False).tolist()
        keep = bool(rng.integers(2))
        edit_subset(added, dropped, base, chosen, keep)
        want.update({i: keep for i in chosen})
        assert (base | added) - dropped == {i for i, k in want.items() if k}
        assert not added & base and dropped <= base  # only real changes are recorded


def _hover_payload(at) -> dict:
    (component,) = at.get("bidi_component")
    return json.loads(component.proto.json)


def test_hover_cards_get_each_points_thumbnail_once_per_session():
    from core.export.html import thumbnail_data_uri

    at = _explore("PCA")
    payload = _hover_payload(at)
    assert payload["plot"] == "explore_plot"
    fig = _figure(at)
    rows = [int(cd[0]) for t in fig["data"] for cd in t["customdata"]]
    assert sorted(int(r) for r in payload["thumbs"]) == sorted(rows)  # one per point
    fs = cached.get_features(state(at).embedding_key)
    for r in rows[::97]:
        assert payload["paths"][str(r)] == str(fs.paths[r])
        assert payload["thumbs"][str(r)] == thumbnail_data_uri(fs.paths[r], 64, "auto")
    # the browser reports that it holds this version: later reruns send only the version
    at.session_state["explore_hover"] = {"have": payload["version"]}
    at.selectbox(key="explore_colour").set_value("kept/dropped").run()
    light = _hover_payload(at)
    assert light == {"plot": "explore_plot", "version": payload["version"]}
    # a browser that lost them (page reload) gets them again
    at.session_state["explore_hover"] = {"have": None}
    at.run()
    assert len(_hover_payload(at)["thumbs"]) == len(rows)


def test_above_the_eager_limit_each_hovered_row_is_answered_alone(monkeypatch):
    from app.hover import EAGER_MAX_ENV
    from core.export.html import thumbnail_data_uri

    monkeypatch.setenv(EAGER_MAX_ENV, "500")  # the demo's 1,000 points are then "many"
    at = _explore("PCA")
    payload = _hover_payload(at)
    assert payload["lazy"] is True and "thumbs" not in payload  # nothing sent up front
    fs = cached.get_features(state(at).embedding_key)
    rows = [int(cd[0]) for t in _figure(at)["data"] for cd in t["customdata"]]
    for n, row in enumerate((rows[3], rows[-1]), start=1):
        # the browser asks for the row under the pointer
        at.session_state["explore_hover_lazy"] = {"want": {"row": row, "n": n}}
        at.run()
        answer = _hover_payload(at)
        assert answer["thumbs"] == {str(row): thumbnail_data_uri(fs.paths[row], 64, "auto")}
        assert answer["paths"] == {str(row): str(fs.paths[row])}
    # a row that is not a point of the plot gets no answer
    at.session_state["explore_hover_lazy"] = {"want": {"row": 10**6, "n": 3}}
    at.run()
    assert "thumbs" not in _hover_payload(at) and not at.exception


def test_more_than_ten_classes_get_distinct_colours(tmp_path, monkeypatch):
    from app import services

    from ._app_helpers import start
    from .conftest import write_image

    for c in range(12):
        for i in range(4):
            write_image(tmp_path / "many" / f"class{c:02d}" / f"{i}.png", seed=10 * c + i)
    monkeypatch.setenv(services.ROOTS_ENV, str(tmp_path))
    at = start()
    at.radio(key="data_source").set_value("Folder on the server").run()
    at.text_input(key="data_folder").set_value(str(tmp_path / "many"))
    at.button(key="data_load_folder").click().run()
    at = selected(at)
    at.session_state["explore_projection"] = "PCA"
    at.switch_page("views/explore.py").run()
    assert not errors(at) and not at.exception
    colours = [t["marker"]["color"] for t in _figure(at)["data"]]
    assert len(colours) == 12 and len(set(colours)) == 12


@pytest.mark.slow
def test_a_long_choice_says_the_list_is_cut(monkeypatch):
    lasso = _Lasso(monkeypatch)
    at = _explore("PCA")
    lasso.rows = list(range(93))
    at.run()
    assert any("93 chosen" in m.value for m in at.markdown)
    assert any("first 48 of the 93 chosen" in c.value for c in at.caption)
    lasso.rows = list(range(20))
    at.run()
    assert not any("chosen images; Add" in c.value for c in at.caption)


def test_gallery_captions_read_the_registry_and_name_the_suggested_class():
    at = _explore("PCA")  # a ram_apl run: score column "score", low = representative
    st_ = state(at)
    result = cached.selection(st_.runs[st_.active_run])
    from app import services

    label = sorted(result.budget_table["class"].astype(str))[0]
    g = services.gallery_rows(result, label, k=5)
    scores = g["representative"].rows["score"].tolist()
    assert (
        scores == sorted(scores)
        and g["hardest"].rows["score"].tolist()
        == sorted(result.table.loc[result.table["label"] == label, "score"], reverse=True)[:5]
    )
    mis = g["mislabels"].rows
    if len(mis):
        cap = services.gallery_caption(mis.iloc[0], "score")
        assert f"→ {mis.iloc[0]['suggested_class']}" in cap
    # a greedy method has no score: its first picks, and the least agreed labels as hardest
    h = run_like(result, "herding")
    gh = services.gallery_rows(h, label, k=5)
    assert gh["representative"].title == "Picked first"
    assert gh["representative"].rows["order"].tolist() == sorted(gh["representative"].rows["order"])
    agree = gh["hardest"].rows["label_agreement"].tolist()
    assert agree == sorted(agree)


def run_like(result, method):
    from core.selection import run_selection

    at_fs = cached.get_features(next(iter(cached.feature_store())))
    from app.services import selection_pool

    return run_selection(
        method, at_fs.features, at_fs.labels, result.fraction, pool=selection_pool(at_fs), label_issues=True
    )
