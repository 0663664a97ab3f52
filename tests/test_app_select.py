"""AppTest: the Select page (run, headline figures, budgets, ranking, parameters, manual, compare)."""

from __future__ import annotations

import pytest

from app import cached

from ._app_helpers import FAKE, embedded, errors, metrics, selected, start, state


pytestmark = pytest.mark.usefixtures("fake_app_model")


def test_without_embeddings_points_to_models():
    at = start()
    at.switch_page("pages/select.py").run()
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
    at.session_state["select_manual_counts"] = {"edited_rows": {0: {"count": 3}}, "added_rows": [],
                                                "deleted_rows": []}
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
