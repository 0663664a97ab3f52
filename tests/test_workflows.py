"""One home per concept: report files in memory (core.export.report_files, core.workflows) equal
the files export_report writes; subset edits keep every other field; the pool rule."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from core.errors import SelectionInputError
from core.evaluation import EvalConfig, run_plan
from core.export import export_report, report_files
from core.features import FeatureSet
from core.pool import evaluation_candidates, selection_pool
from core.selection import run_selection
from core.selection.edit import apply_edits, edit_subset

from .test_evaluation_data import blobs


def test_report_files_in_memory_are_the_files_export_report_writes(tmp_path):
    """The slow reference is the disk: every file export_report writes, byte for byte, and no other."""
    fs = blobs((12, 10, 11), labels=["=cmd", "+plus", "cat"], test_per_class=3, paths_root=tmp_path / "src")
    report = run_plan(fs, ["ram_apl", "kcenter@uniform"], [0.3], EvalConfig(seeds=(0, 1)))
    files = report_files(report, fs)
    written = export_report(tmp_path / "out", report, fs)
    assert set(files) == set(written) and "report.html" in files and "selections/ram_apl_p0.3/scores.csv" in files
    for name, path in written.items():
        assert path.read_bytes() == files[name], name
    assert json.loads(files["report.json"])["kind"] == report.kind
    assert b"'=cmd" in files["selections/ram_apl_p0.3/scores.csv"]  # escaped in export, the one home


def test_evaluate_result_returns_the_cli_files_without_writing(tmp_path, monkeypatch):
    from core import workspace
    from core.workflows import EVALUATION_FILES, evaluate_result, selection_files

    fs = blobs((12, 12, 12), test_per_class=3, paths_root=tmp_path / "src")
    result = run_selection("herding", fs.features, fs.labels, 0.3, models=["a", "b"], pool=selection_pool(fs)[0])

    def no_writes(*a, **k):
        raise AssertionError("evaluate_result wrote a file")

    monkeypatch.setattr(workspace, "atomic_write_with", no_writes)
    outcome = evaluate_result(fs, result, seeds=2)
    assert set(outcome.files) == set(EVALUATION_FILES)
    scores, subset = selection_files(result, fs)
    assert outcome.files["scores.csv"] == scores and outcome.files["subset.csv"] == subset
    assert json.loads(outcome.files["report.json"])["cells"][0]["method"] == "herding"


def test_apply_edits_keeps_every_other_field():
    fs = blobs((10, 10))
    result = run_selection("ram_apl", fs.features, fs.labels, 0.4, models=["a", "b"])
    drop = int(result.selected[0])
    add = int(next(i for i in result.table["index"] if int(i) not in set(result.selected.tolist())))
    edited = apply_edits(result, added=[add], dropped=[drop])
    changed = {"selected", "table", "budget_table"}
    for f in dataclasses.fields(result):
        if f.name not in changed:
            assert getattr(edited, f.name) is getattr(result, f.name), f.name
    assert edited.selected.tolist() == [i for i in result.selected.tolist() if i != drop] + [add]
    assert int(edited.budget_table["kept"].sum()) == result.n_selected
    assert apply_edits(result) is result
    added, dropped = set(), set()
    edit_subset(added, dropped, result.selected, [add, drop], keep=False)
    assert (added, dropped) == (set(), {drop})
    edit_subset(added, dropped, result.selected, [drop], keep=True)  # undoes the earlier edit
    assert (added, dropped) == (set(), set())


def _fs(split, n=4):
    n = n if split is None else len(split)
    return FeatureSet(
        {"a": np.zeros((n, 2), np.float32)},
        np.array(["x", "y"] * (n // 2)),
        split=None if split is None else np.array(split),
    )


def test_the_pool_rule():
    mask, desc = selection_pool(_fs(["train", "test", "train", "val"]))
    assert mask.tolist() == [True, False, True, False] and "train" in desc
    assert selection_pool(_fs(None)) == (None, "all rows")
    with pytest.raises(SelectionInputError, match="no 'train' rows .*found: 2 'test'"):
        selection_pool(_fs(["test", "test"]), "f.npz")
    assert evaluation_candidates(np.array(["train", "val", "train", "val"]), 4).tolist() == [0, 2]
    assert evaluation_candidates(np.array(["val", "val"]), 2).tolist() == [0, 1]
    assert evaluation_candidates(None, 3).tolist() == [0, 1, 2]
