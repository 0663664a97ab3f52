"""AppTest: the Evaluate & export page (downloads, evaluation, chart, errors)."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from app import cached, services

from ._app_helpers import errors, selected, start, state

pytestmark = pytest.mark.usefixtures("fake_app_model")


def _evaluate_page():
    at = selected()
    at.switch_page("views/evaluate.py").run()
    assert not errors(at) and not at.exception
    return at


def test_without_a_selection_points_to_select():
    at = start()
    at.switch_page("views/evaluate.py").run()
    assert any("No embeddings yet" in i.value for i in at.info) and not at.exception


@pytest.mark.slow
def test_subset_downloads_before_evaluation():
    at = _evaluate_page()
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["subset.csv", "scores.csv", "subset.zip"]
    st_ = state(at)
    result = cached.selection(st_.runs[st_.active_run])
    scores, subset = services.subset_csv_bytes(result, cached.get_features(st_.embedding_key))
    sub = pd.read_csv(io.BytesIO(subset))
    assert len(sub) == 100 and list(sub.columns[:2]) == ["path", "label"] and sub["label"].value_counts().eq(10).all()
    assert len(pd.read_csv(io.BytesIO(scores))) == 1000


@pytest.mark.slow
def test_run_evaluation_shows_chart_metrics_and_report_downloads():
    at = _evaluate_page()
    at.number_input(key="eval_seeds").set_value(3)
    at.button(key="eval_run").click().run()
    assert not errors(at) and not at.exception
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    bar = fig["data"][0]
    assert bar["type"] == "bar" and list(bar["x"]) == ["subset", "random", "full"] and "error_y" in bar
    labels = {m.label for m in at.metric}
    assert {"Subset", "Random (same size per class)", "Full training pool"} <= labels
    downloads = [b.label for b in at.get("download_button")]
    assert {"report.json", "report.html"} <= set(downloads)
    # the evaluated CSVs are the page's own subset.csv / scores.csv here: offered once, not twice
    st0 = state(at)
    outcome0 = cached.evaluation_store()[st0.evaluations[st0.active_run]]
    page_scores, page_subset = services.subset_csv_bytes(
        cached.selection(st0.runs[st0.active_run]), cached.get_features(st0.embedding_key)
    )
    assert ("subset.csv (evaluated)" in downloads) == (outcome0.files["subset.csv"] != page_subset)
    assert ("scores.csv (evaluated)" in downloads) == (outcome0.files["scores.csv"] != page_scores)
    assert downloads.count("subset.csv") == 1
    # the headline carries the interval, rounded like the comparison table
    cell0 = outcome0.report.cells[0]
    delta = next(m for m in at.metric if m.label == "Subset").proto.delta
    d0 = cell0.difference
    assert delta == f"{100 * d0.diff:+.1f} pts vs random [{100 * d0.low:+.1f}, {100 * d0.high:+.1f}]"
    # the same-features warning (one model selects and evaluates), once, naming a model not in use
    warn = [w.value for w in at.warning if "also used for selection" in w.value]
    assert len(warn) == 1 and "effnet-lite2" in warn[0] and "fake-app)" not in warn[0].split("e.g.")[1]
    assert not at.get("progress")
    # downloading does not rerun the page
    assert all(b.proto.ignore_rerun for b in at.get("download_button"))
    st_ = state(at)
    outcome = cached.evaluation_store()[st_.evaluations[st_.active_run]]
    report = json.loads(outcome.files["report.json"])
    assert report["kind"] == "evaluate" and report["cells"][0]["method"] == "ram_apl"
    assert len(report["cells"][0]["seeds"]) == 3
    assert pd.read_csv(io.BytesIO(outcome.files["subset.csv"])).shape[0] == 100
    assert outcome.files["report.html"].startswith(b"<!DOCTYPE html>")
    # pressing nothing: the result stays (cached by key), no recompute
    at.run()
    assert at.get("plotly_chart") and not errors(at)


@pytest.mark.slow
def test_evaluation_error_is_shown_and_earlier_result_kept(monkeypatch):
    at = _evaluate_page()
    at.number_input(key="eval_seeds").set_value(2)
    at.button(key="eval_run").click().run()
    assert at.get("plotly_chart")
    from core.errors import CoresetError

    def boom(*a, **k):
        raise CoresetError("The hold-out of 20% is empty (too few images per class); add a test split.")

    monkeypatch.setattr(services, "run_evaluation", boom)
    at.button(key="eval_run").click().run()
    assert len(errors(at)) == 1 and "hold-out" in errors(at)[0] and not at.exception
    assert at.get("plotly_chart")  # the earlier evaluation is still shown


@pytest.mark.slow
def test_evaluation_progress_moves_with_each_training(tmp_path):
    at = _evaluate_page()
    st_ = state(at)
    fs = cached.get_features(st_.embedding_key)
    result = cached.selection(st_.runs[st_.active_run])
    steps = []
    services.run_evaluation(fs, result, seeds=3, step=lambda f, m: steps.append((f, m)))
    fractions = [f for f, _ in steps]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and 0 < fractions[0]
    trainings = [m for _, m in steps if "trainings)" in m]
    assert len(trainings) == 10  # "subsets chosen" + 3 groups x 3 seeds
    assert trainings[-1].endswith("(9/9 trainings)") and "full pool" in trainings[-1]


def test_selection_with_hold_out_rows_is_run_again_with_a_note(tmp_path):
    from core.selection import run_selection

    from .test_evaluation_data import blobs

    fs = blobs((20, 20, 20), paths_root=tmp_path / "img")  # no test split: the evaluation holds 20 % out
    result = run_selection("ram_apl", fs.features, fs.labels, 0.3, models=["a", "b"])
    outcome = services.run_evaluation(fs, result, seeds=3, edited=True)
    assert "run again on the training rows only" in outcome.note and "hand edits" in outcome.note
    report = json.loads(outcome.files["report.json"])
    assert report["protocol"]["split"]["source"] == "hold-out"
    held_out = set(report["protocol"]["split"]["test_rows"])
    kept = set(report["cells"][0]["selection"]["selected"])
    assert held_out and kept and not kept & held_out
    assert pd.read_csv(io.BytesIO(outcome.files["subset.csv"])).shape[0] == len(kept)


@pytest.mark.slow
def test_evaluated_runs_are_compared_side_by_side():
    at = _evaluate_page()
    at.number_input(key="eval_seeds").set_value(3)
    at.button(key="eval_run").click().run()
    first = state(at).active_run
    at.switch_page("views/select.py").run()
    at.selectbox(key="select_method").set_value("herding")
    at.button(key="select_run").click().run()
    second = state(at).active_run
    assert second != first
    at.switch_page("views/evaluate.py").run()
    # before the second run is evaluated there is one evaluation: no comparison yet
    assert not [d for d in at.dataframe if "run" in d.value.columns and "subset %" in d.value.columns]
    at.number_input(key="eval_seeds").set_value(3)
    at.button(key="eval_run").click().run()
    assert not errors(at) and not at.exception
    (table,) = [d.value for d in at.dataframe if "subset %" in d.value.columns]
    assert table["run"].tolist() == [first, second] and (table["kept"] == 100).all()
    assert table["dataset"].tolist() == [cached.get_dataset(state(at).dataset_key).name] * 2
    for rid, row in table.set_index("run").iterrows():
        cell = cached.evaluation_store()[state(at).evaluations[rid]].report.cells[0]
        assert row["subset %"] == round(100 * cell.method_result.mean, 1)  # as the headline rounds
        assert row["random %"] == round(100 * cell.random.mean, 1)
        assert abs(row["subset − random (pts)"] - 100 * (cell.method_result.mean - cell.random.mean)) < 0.051
        assert row["seeds"] == 3 and row["evaluation"].startswith("linear on ")


def test_subset_zip_holds_the_kept_images_by_class_and_loads_as_a_dataset(tmp_path):
    import zipfile

    from core.datasets import load_dataset

    at = _evaluate_page()
    st_ = state(at)
    fs = cached.get_features(st_.embedding_key)
    result = cached.selection(st_.runs[st_.active_run])
    subset_csv = services.subset_csv_bytes(result, fs)[1]
    zf = zipfile.ZipFile(io.BytesIO(services.subset_zip(result, fs, subset_csv)))
    images = [n for n in zf.namelist() if n.endswith(".png")]
    assert len(images) == 100 and "MISSING.txt" not in zf.namelist()
    first = int(result.selected[0])
    label, name = str(fs.labels[first]), fs.paths[first].rsplit("/", 1)[-1]
    assert zf.read(f"{label}/{name}") == open(fs.paths[first], "rb").read()
    assert zf.read("subset.csv") == subset_csv
    zf.extractall(tmp_path / "sub")
    ds = load_dataset(tmp_path / "sub" / "manifest.csv")
    assert len(ds) == 100 and sorted(set(ds.labels)) == sorted(set(map(str, fs.labels)))


def test_evaluation_progress_text_says_the_time_left(monkeypatch):
    from app import components

    clock = iter([100.0, 130.0, 131.0, 160.0])
    monkeypatch.setattr(components.time, "perf_counter", lambda: next(clock))
    eta = components.FractionETA()  # started at t = 100 s
    assert eta.text(0.25, "training") == "training · 25% · about 90 s left"  # 30 s for a quarter
    assert eta.text(0.02, "training") == "training · 2%"  # too early to say
    assert eta.text(1.0, "done") == "done · 100%"


def test_the_download_csvs_are_made_once_per_run_and_edit_set(monkeypatch):
    from app import cached, services

    at = _evaluate_page()
    st_ = state(at)
    spec = st_.runs[st_.active_run]
    fs = cached.get_features(st_.embedding_key)
    edits = st_.edits_for(st_.active_run)
    result = services.apply_edits(cached.selection(spec), edits.added, edits.dropped)
    assert cached.selection_csvs(spec, edits, result, fs) == services.subset_csv_bytes(result, fs)
    calls = []
    monkeypatch.setattr(services, "subset_csv_bytes", lambda r, f: calls.append(r) or (b"s", b"u"))
    cached.selection_csvs(spec, edits, result, fs)
    assert calls == []  # the same run and edits: from the store
    edits.dropped.add(int(result.selected[0]))
    edited = services.apply_edits(cached.selection(spec), edits.added, edits.dropped)
    assert cached.selection_csvs(spec, edits, edited, fs) == (b"s", b"u") and calls == [edited]
