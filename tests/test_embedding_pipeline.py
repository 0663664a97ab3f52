"""Embedding a whole dataset (core.embedding) and the embed / select / demo commands."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.cli import main
from core.datasets import load_demo, load_folder
from core.embedders import register_embedder, unregister_embedder
from core.embedding import embed_dataset, parse_models
from core.errors import CoresetError
from core.features import load_features

from ._embed_helpers import fake_embedder


@pytest.fixture
def fake_models():
    """Two fast fake embedders in the registry (dims 6 and 4), removed afterwards."""
    names = {"fake-a": 6, "fake-b": 4}
    for name, dim in names.items():
        register_embedder(
            name,
            lambda weights=None, workspace=None, n=name, d=dim: fake_embedder(n, d, f"w-{n}"),
            description="test",
            family="timm",
            availability="offline",
            dim=dim,
            overwrite=True,
        )
    yield list(names)
    for name in names:
        unregister_embedder(name)


def test_features_follow_the_dataset_and_carry_provenance(image_tree, fake_models):
    ds = load_folder(image_tree)
    run = embed_dataset(ds, "fake-a,fake-b")
    fs = run.features
    assert fs.models == ["fake-a", "fake-b"]
    assert fs.features["fake-a"].shape == (9, 6) and fs.features["fake-b"].shape == (9, 4)
    assert fs.features["fake-a"].dtype == np.float32 and np.isfinite(fs.features["fake-a"]).all()
    assert list(fs.labels) == ds.labels and list(fs.paths) == ds.paths and list(fs.split) == ds.splits
    assert fs.meta["dataset"]["fingerprint"] == ds.fingerprint
    assert set(fs.meta["models"]) == {"fake-a", "fake-b"}
    assert run.stats["fake-a"]["computed"] == 9 and run.stats["fake-a"]["cached"] == 0
    # distinct images give distinct features (the rows are not all one vector)
    assert len({tuple(np.round(r, 5)) for r in fs.features["fake-a"]}) == 9


def test_second_run_reads_the_cache_and_gives_the_same_features(image_tree, fake_models):
    ds = load_folder(image_tree)
    first = embed_dataset(ds, ["fake-a"]).features
    again = embed_dataset(ds, ["fake-a"])
    assert again.stats["fake-a"] == {**again.stats["fake-a"], "computed": 0, "cached": 9}
    np.testing.assert_array_equal(again.features.features["fake-a"], first.features["fake-a"])


def test_image_broken_after_loading_is_dropped_and_reported(image_tree, fake_models):
    ds = load_folder(image_tree)
    broken = ds.paths[4]
    with open(broken, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n garbage")
    run = embed_dataset(ds, ["fake-a", "fake-b"], use_cache=False)
    assert len(run.features) == 8 and broken not in set(run.features.paths)
    assert [p.location for p in run.problems] == [broken]
    assert run.features.features["fake-a"].shape[0] == run.features.features["fake-b"].shape[0] == 8


def test_model_list_parsing_and_weights_for_unknown_models(image_tree, fake_models):
    assert parse_models(" fake-a, fake-b ,fake-a") == ["fake-a", "fake-b"]
    with pytest.raises(CoresetError, match="at least one"):
        parse_models(" , ")
    with pytest.raises(CoresetError, match="not among the models"):
        embed_dataset(load_folder(image_tree), ["fake-a"], weights={"dinov2-vits14": "x.pth"})


def test_cli_embed_then_select(image_tree, tmp_path, fake_models, capsys):
    features = tmp_path / "f.npz"
    assert main(["embed", str(image_tree), "--models", "fake-a,fake-b", "--out", str(features)]) == 0
    fs = load_features(features)
    assert fs.models == ["fake-a", "fake-b"] and len(fs) == 9
    out = tmp_path / "sel"
    assert main(["select", str(features), "--method", "ram_apl", "--fraction", "0.5", "--out", str(out)]) == 0
    subset = pd.read_csv(out / "subset.csv")
    # paper budget: round-half-even(0.5 * N_c) = cat 3 -> 2, dog 2 -> 1, fox 4 -> 2
    assert subset["label"].value_counts().to_dict() == {"cat": 2, "dog": 1, "fox": 2}
    assert set(subset["path"]) <= set(fs.paths)
    provenance = json.loads((out / "selection.json").read_text())
    assert provenance["features"]["meta"]["dataset"]["fingerprint"] == load_folder(image_tree).fingerprint


def test_cli_hub_model_offline_is_one_clear_error(image_tree, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf"))
    code = main(["embed", str(image_tree), "--models", "dinov2-vits14", "--out", str(tmp_path / "f.npz")])
    err = capsys.readouterr().err
    assert code == 2
    assert "dinov2-vits14" in err and "--weights" in err and "Traceback" not in err
    assert not (tmp_path / "f.npz").exists()


def test_cli_bad_dataset_is_a_clear_error(tmp_path, capsys):
    assert main(["check", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_check_writes_the_problem_report(image_tree, tmp_path, capsys):
    (image_tree / "cat" / "notes.txt").write_text("x")
    report = tmp_path / "problems.csv"
    assert main(["check", str(image_tree), "--report", str(report)]) == 0
    frame = pd.read_csv(report)
    assert frame["kind"].tolist() == ["not_an_image"] and frame["location"][0].endswith("notes.txt")


@pytest.mark.slow
def test_demo_command_runs_the_whole_pipeline_on_real_weights(tmp_path, capsys):
    """The headless job of `make demo`: demo -> effnet-lite0 -> auto 10 % (real model and auto's
    k-fold estimates: 280 s on the shared 2-core CPU, so slow)."""
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    fs = load_features(out / "features.npz")
    assert len(fs) == 1200 and fs.features["effnet-lite0"].shape == (1200, 1280)
    subset = pd.read_csv(out / "subset.csv")
    assert len(subset) == 100 and (subset["label"].value_counts() == 10).all()
    train_paths = set(fs.paths[fs.split == "train"])
    assert set(subset["path"]) <= train_paths
    provenance = json.loads((out / "selection.json").read_text())
    assert provenance["features"]["meta"]["dataset"]["fingerprint"] == load_demo().fingerprint
    assert provenance["method"] == "auto" and provenance["fraction"] == 0.1
    chosen = provenance["details"]["chosen"]
    assert f"picked {chosen} for 10 %" in capsys.readouterr().out
    assert "suggested_class" in pd.read_csv(out / "scores.csv").columns
