"""Saved runs (core.runs.RunStore) and the app keeping runs, hand edits and evaluations across a restart."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.runs import RunStore
from core.selection import run_selection

from ._app_helpers import embedded, errors, selected, start, state


def _result(seed: int = 0):
    rng = np.random.default_rng(seed)
    feats = {"m": rng.normal(size=(60, 5)).astype(np.float32)}
    labels = np.repeat(np.array(["a", "b", "c"]), 20)
    return run_selection("ram_apl", feats, labels, 0.2, seed=seed)


def test_a_saved_run_reloads_equal_with_its_config_edits_and_evaluations(tmp_path):
    store = RunStore(tmp_path)
    res = _result()
    store.save_run("fp1", "ram_apl 20%", "k1", {"method": "ram_apl", "fraction": 0.2}, res)
    back = store.load_result("fp1", "k1")
    assert back is not None and back.same_selection(res) and back.details == res.details
    assert list(back.table.columns) == list(res.table.columns)
    [rec] = store.list_runs("fp1")
    assert (rec.run_id, rec.key, rec.config["fraction"], rec.n_edits, rec.evaluations) == (
        "ram_apl 20%",
        "k1",
        0.2,
        0,
        (),
    )
    store.save_edits("fp1", "k1", {3, 1}, {7})
    assert store.load_edits("fp1", "k1") == ({1, 3}, {7}) and store.list_runs("fp1")[0].n_edits == 3
    store.save_evaluation("fp1", "k1", "e1", {"report.json": b"{}", "subset.csv": b"a\n"}, note="n")
    store.save_evaluation("fp1", "k1", "e0", {"report.json": b"[]"})
    ev = store.load_evaluation("fp1", "k1", "e1")
    assert ev.note == "n" and ev.files == {"report.json": b"{}", "subset.csv": b"a\n"}
    assert store.list_runs("fp1")[0].evaluations[-1] == "e0"  # newest last
    assert store.list_runs("other") == [] and store.load_result("fp1", "nope") is None


def test_runs_are_listed_per_dataset_oldest_first_and_deleted_with_everything(tmp_path):
    store = RunStore(tmp_path)
    store.save_run("fp1", "first", "k1", {}, _result(0))
    store.save_run("fp1", "second", "k2", {}, _result(1))
    store.save_run("fp2", "elsewhere", "k3", {}, _result(2))
    assert [r.run_id for r in store.list_runs("fp1")] == ["first", "second"]
    store.save_edits("fp1", "k1", {1}, set())
    store.save_evaluation("fp1", "k1", "e1", {"report.json": b"{}"})
    assert store.delete_run("fp1", "k1") and not store.delete_run("fp1", "k1")
    assert [r.run_id for r in store.list_runs("fp1")] == ["second"] and store.load_result("fp1", "k1") is None
    assert store.load_evaluation("fp1", "k1", "e1") is None
    store.save_edits("fp1", "k1", {5}, set())  # edits of a deleted run are not written anywhere
    assert not store.folder("fp1", "k1").exists()
    assert [r.run_id for r in store.list_runs("fp2")] == ["elsewhere"]


def test_a_broken_run_folder_is_reported_and_never_hides_the_others(tmp_path):
    store = RunStore(tmp_path)
    store.save_run("fp1", "good", "k1", {}, _result())
    bad = store.save_run("fp1", "bad", "k2", {}, _result(1))
    (bad / "config.json").write_text("{not json")
    assert [r.run_id for r in store.list_runs("fp1")] == ["good"]
    [problem] = store.problems()
    assert str(bad) in problem and "delete the folder" in problem
    (bad / "table.parquet").unlink()
    (bad / "config.json").write_text(json.dumps({"run_id": "bad", "key": "k2", "config": {}}))
    assert store.load_result("fp1", "k2") is None  # listed again, but its result is unreadable: None


@pytest.mark.parametrize("bad", ["../x", "a/b", "", "x" * 200])
def test_a_fingerprint_that_is_not_one_is_refused(tmp_path, bad):
    with pytest.raises(ValueError, match="fingerprint"):
        RunStore(tmp_path).list_runs(bad)


@pytest.mark.usefixtures("fake_app_model")
def test_the_app_keeps_runs_edits_and_evaluations_across_a_restart_and_deletes_a_run():
    at = selected()
    st_ = state(at)
    run_id = st_.active_run
    spec = st_.runs[run_id]
    from app import cached

    first = int(cached.selection(spec).selected[0])
    st_.edits_for(run_id).dropped.add(first)
    at.switch_page("views/evaluate.py").run()
    at.number_input(key="eval_seeds").set_value(2)
    at.button(key="eval_run").click().run()
    assert not errors(at) and st_.evaluations.get(run_id)
    accuracy = [m.value for m in at.metric]

    # a restart: every process-wide cache emptied, a new browser session (no ?s=)
    again = embedded(start())
    assert state(again).runs == {}  # nothing restored before a page needs the runs
    again.switch_page("views/select.py").run()
    st2 = state(again)
    assert not errors(again) and list(st2.runs) == [run_id] and st2.active_run == run_id
    assert st2.edits_for(run_id).dropped == {first}
    frames = [d.value for d in again.dataframe if "open here" in d.value.columns]
    assert len(frames) == 1 and frames[0]["run"].tolist() == [run_id] and frames[0]["hand edits"].tolist() == [1]
    assert frames[0]["evaluations"].tolist() == [1]
    again.switch_page("views/evaluate.py").run()
    assert not errors(again) and [m.value for m in again.metric] == accuracy  # read back, not recomputed
    assert any("(hand edits: +0 / −1)" in c.value for c in again.caption)

    # deleting the run removes it from the session and from the workspace
    again.switch_page("views/select.py").run()
    again.selectbox(key="select_delete_pick").set_value(run_id)
    again.button(key="select_delete").click().run()
    assert not errors(again) and state(again).runs == {}
    third = embedded(start())
    third.switch_page("views/select.py").run()
    assert state(third).runs == {} and not [d for d in third.dataframe if "open here" in d.value.columns]
