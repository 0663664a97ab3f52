"""AppTest: the Select page (run, headline figures, budgets, ranking, parameters, manual, compare)."""

from __future__ import annotations

import pytest

from app import cached

from ._app_helpers import FAKE, embedded, errors, metrics, selected, start, state

pytestmark = pytest.mark.usefixtures("fake_app_model")


def test_without_embeddings_points_to_models():
    at = start()
    at.switch_page("views/select.py").run()
    assert any("No embeddings yet" in i.value for i in at.info) and not at.exception


def test_ram_apl_run_shows_headline_budget_and_ranking():
    at = selected()
    st_ = state(at)
    assert len(st_.runs) == 1 and st_.active_run == "ram_apl 10% paper seed 0"
    m = metrics(at)
    assert m["Kept"] == "100 / 1000" and m["Classes kept"] == "10"
    result = cached.selection(st_.runs[st_.active_run])
    # the label consensus (every method gets it), not RAM-APL's APL = 0
    assert m["Suspected mislabels"] == str(int(result.table["suspected_mislabel"].sum()))
    chart = at.get("plotly_chart")[0].proto.spec
    assert "Kept vs total per class" in chart
    ranking = at.dataframe[0].value
    assert {"thumbnail", "file", "label", "ram", "apl", "score", f"rank[{FAKE}]", "selected"} <= set(ranking.columns)
    assert len(ranking) == 500 and ranking["selected"].iloc[:100].all() and not ranking["selected"].iloc[100:].any()
    assert ranking["thumbnail"].iloc[0].startswith("data:image/png;base64,")  # 28 px images stay PNG
    # filter by class
    at.multiselect(key="select_filter_class").set_value(["bag"]).run()
    ranking = at.dataframe[0].value
    assert set(ranking["label"]) == {"bag"} and len(ranking) == 100 and ranking["selected"].sum() == 10


@pytest.mark.slow
def test_parameters_form_built_from_dataclass_and_runs_compared():
    at = selected()
    at.selectbox(key="select_method").set_value("kcenter").run()
    assert at.selectbox(key="select_param_kcenter_model").options == ["(all models)", FAKE]
    assert at.selectbox(key="select_param_kcenter_normalize").options == ["none", "l2"]
    at.selectbox(key="select_param_kcenter_normalize").set_value("l2")
    at.slider(key="select_fraction").set_value(20)
    at.button(key="select_run").click().run()
    assert not errors(at)
    st_ = state(at)
    assert list(st_.runs) == ["ram_apl 10% paper seed 0", "kcenter 20% paper seed 0 normalize=l2"]
    kc = cached.selection(state(at).runs["kcenter 20% paper seed 0 normalize=l2"])
    assert metrics(at)["Kept"] == "200 / 1000"
    assert metrics(at)["Suspected mislabels"] == str(int(kc.table["suspected_mislabel"].sum()))  # any method
    overlap = at.dataframe[-1].value
    assert overlap.shape == (2, 2) and overlap.iloc[0, 0] == 1.0 and 0 <= overlap.iloc[0, 1] <= 1
    # switching the shown run is instant (cached) and changes the figures
    at.selectbox(key="select_active").set_value("ram_apl 10% paper seed 0").run()
    assert metrics(at)["Kept"] == "100 / 1000"


def test_manual_budget_uses_the_edited_table():
    at = selected()
    at.selectbox(key="select_budget").set_value("manual").run()
    editor = at.data_editor
    assert len(editor) == 1 and editor[0].value["count"].tolist() == [10] * 10  # starts at the paper budget
    at.session_state["select_manual_counts"] = {"edited_rows": {0: {"count": 3}}, "added_rows": [], "deleted_rows": []}
    at.run()
    at.button(key="select_run").click().run()
    assert not errors(at) and not at.exception
    assert metrics(at)["Kept"] == "93 / 1000"
    st_ = state(at)
    assert st_.active_run.startswith("ram_apl 10% manual seed 0")
    result = cached.selection(st_.runs[st_.active_run])
    assert result.budget_table.set_index("class").loc["ankle_boot", "kept"] == 3


def test_selection_error_is_shown_and_earlier_runs_kept(monkeypatch):
    at = selected()
    from core.errors import SelectionInputError

    def boom(*a, **k):
        raise SelectionInputError("Parameter 'a' of method 'ram_apl' must be <= 1, got 2.")

    monkeypatch.setattr("core.selection.run_selection", boom)
    at.slider(key="select_fraction").set_value(33)
    at.button(key="select_run").click().run()
    assert len(errors(at)) == 1 and "must be <= 1" in errors(at)[0] and not at.exception
    assert list(state(at).runs) == ["ram_apl 10% paper seed 0"] and metrics(at)["Kept"] == "100 / 1000"


@pytest.mark.slow
def test_select_defaults_to_auto_and_shows_its_choice():
    at = embedded()
    at.switch_page("views/select.py").run()
    assert at.selectbox(key="select_method").value == "auto"
    assert at.selectbox(key="select_method").options[0] == "auto (recommended)"
    at.slider(key="select_fraction").set_value(30)
    at.button(key="select_run").click().run()
    assert not errors(at) and not at.exception
    st_ = state(at)
    assert st_.active_run == "auto 30% paper seed 0"
    result = cached.selection(st_.runs[st_.active_run])
    chosen = result.details["chosen"]
    shown = [m.value for m in at.success] + [m.value for m in at.warning]
    assert any(v.startswith(f"Picked {chosen} for 30 %") for v in shown), shown
    table = next(d.value for d in at.dataframe if "candidate" in d.value.columns)
    assert table["candidate"].tolist()[0] == "random" and table["chosen"].sum() == 1
    assert table.loc[table["chosen"], "candidate"].item() == chosen
    assert metrics(at)["Kept"] == "300 / 1000"


@pytest.mark.slow
def test_a_picked_method_below_random_is_warned_about(monkeypatch):
    at = selected(method="ram_apl", pct=30)
    check = cached.pool_check(state(at).runs["ram_apl 30% paper seed 0"])
    # the real check: auto's estimate of ram_apl against random on the same pool
    assert check["candidate"] == "ram_apl" and check["gain_low"] <= check["gain"] <= check["gain_high"]
    monkeypatch.setattr(
        cached, "pool_check", lambda spec: {"candidate": "ram_apl", "gain": -5.0, "gain_low": -7.0, "gain_high": -3.0}
    )
    at.run()
    warns = [w.value for w in at.warning]
    assert any("below random" in w and "ram_apl" in w and "-5.0 pp" in w for w in warns), warns
    monkeypatch.setattr(
        cached, "pool_check", lambda spec: {"candidate": "ram_apl", "gain": 2.0, "gain_low": 0.5, "gain_high": 3.5}
    )
    at.run()
    assert not any("below random" in w.value for w in at.warning)


@pytest.mark.slow
def test_prefix_consistent_fraction_is_resliced_not_run_again(monkeypatch):
    from core.selection import run_selection

    at = selected(method="herding", pct=10)
    calls = []
    import core.selection as sel

    real = sel.run_selection
    monkeypatch.setattr(sel, "run_selection", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    at.slider(key="select_fraction").set_value(40)
    at.button(key="select_run").click().run()
    assert not errors(at) and "herding" not in calls  # herding did not run (the pool check runs auto)
    assert any("Re-sliced at 40%" in c.value for c in at.caption)
    spec = state(at).runs["herding 40% paper seed 0"]
    fs = cached.get_features(spec.embedding_key)
    from app.services import selection_pool

    fresh = run_selection("herding", fs.features, fs.labels, 0.4, pool=selection_pool(fs), device="cpu")
    assert cached.selection(spec).selected.tolist() == fresh.selected.tolist()


def test_review_queue_keeps_or_drops_flagged_images():
    at = selected(method="random", pct=50)
    spec = state(at).runs["random 50% paper seed 0"]
    result = cached.selection(spec)
    flagged = result.table[result.table["suspected_mislabel"]]
    assert len(flagged) > 0
    from app import services

    services_queue = services.review_queue(result)
    first = int(services_queue["index"].iloc[0])
    assert any(e.label.startswith(f"Review suspected mislabels ({len(flagged)})") for e in at.expander)
    kept = bool(result.table.set_index("index").loc[first, "selected"])
    at.button(key=f"review_{'drop' if kept else 'keep'}|{state(at).active_run}").click().run()
    edits = state(at).edits_for(state(at).active_run)
    assert (first in edits.dropped) if kept else (first in edits.added)
    second = int(services_queue["index"].iloc[1])
    assert any(f"2 of {len(flagged)}" in m.value for m in at.markdown)
    assert services_queue["label_confidence"].is_monotonic_decreasing
    assert second != first
