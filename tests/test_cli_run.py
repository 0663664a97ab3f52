"""``coreset-studio run`` and ``evaluate``: outputs, results table, cache on re-run, errors."""

from __future__ import annotations

import json
import time

import pytest

from core.cli import COMMAND_MODULES, main
from core.features import save_features

from .test_evaluation_data import blobs


def cli(argv: list[str]) -> int:
    """The real entry point (user errors -> message on stderr, exit status 2)."""
    return main(argv)


def test_commands_are_registered():
    assert "evaluate" in COMMAND_MODULES and "run" in COMMAND_MODULES


@pytest.fixture
def features_file(tmp_path):
    fs = blobs((16, 12, 14), test_per_class=4, paths_root=tmp_path / "images")
    return save_features(tmp_path / "features.npz", fs)


@pytest.mark.slow
def test_run_writes_everything_and_rerun_reads_the_cache(features_file, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [
        "run",
        str(features_file),
        "--methods",
        "ram_apl,herding",
        "--fractions",
        "0.2,0.5",
        "--seeds",
        "3",
        "--label-noise",
        "0,0.2",
        "--out",
        str(out),
    ]
    assert cli(argv) == 0
    text = capsys.readouterr().out
    assert "12 cell(s) computed, 0 from cache" in text
    assert "ram_apl" in text and "herding" in text and "(baseline)" in text
    for name in ("report.json", "report.html", "results.csv"):
        assert (out / name).is_file()
    assert (out / "selections" / "herding_p0.5_noise0.2" / "subset.csv").is_file()
    report = json.loads((out / "report.json").read_text())
    assert report["features"]["selection_models"] == ["a", "b"] and report["features"]["eval_model"] == "effnet-lite2"
    assert report["plan"]["methods"] == ["random", "ram_apl", "herding"]
    assert len(list((out / "cells").glob("*.json.gz"))) == 12
    assert cli(argv) == 0
    assert "0 cell(s) computed, 12 from cache, 0 fit(s)" in capsys.readouterr().out
    assert json.loads((out / "report.json").read_text())["cells"] == report["cells"]


def test_evaluate_one_selection_with_subset_copy(features_file, tmp_path, capsys):
    out = tmp_path / "ev"
    assert (
        cli(
            [
                "evaluate",
                str(features_file),
                "--method",
                "moderate_ds",
                "--fraction",
                "0.4",
                "--seeds",
                "3",
                "--eval",
                "mlp",
                "--eval-param",
                "epochs=5",
                "--models",
                "a",
                "--eval-model",
                "b",
                "--out",
                str(out),
                "--copy-subset",
                str(tmp_path / "copy"),
            ]
        )
        == 0
    )
    assert "moderate_ds" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["trainer"] == "mlp" and report["config"]["trainer_params"]["epochs"] == 5
    assert report["features"]["selection_models"] == ["a"] and report["features"]["eval_model"] == "b"
    kept = sum(report["cells"][0]["budget_counts"].values())
    assert len((out / "subset.csv").read_text().strip().splitlines()) == kept + 1
    assert len(list((tmp_path / "copy").rglob("*.png"))) == kept
    assert (out / "scores.csv").is_file()


def test_evaluate_existing_selection_and_errors(features_file, tmp_path, capsys):
    assert (
        cli(
            [
                "select",
                str(features_file),
                "--method",
                "ram_apl",
                "--fraction",
                "0.3",
                "--models",
                "a,b",
                "--out",
                str(tmp_path / "sel"),
            ]
        )
        == 0
    )
    assert (
        cli(
            [
                "evaluate",
                str(features_file),
                "--selection",
                str(tmp_path / "sel" / "selection.json"),
                "--seeds",
                "3",
                "--out",
                str(tmp_path / "ev"),
            ]
        )
        == 0
    )
    cell = json.loads((tmp_path / "ev" / "report.json").read_text())["cells"][0]
    sel = json.loads((tmp_path / "sel" / "selection.json").read_text())
    assert cell["selection"]["selected"] == sel["selected"] and cell["method"] == "ram_apl"
    # the per-sample scores are recomputed (same subset), so scores.csv / subset.csv are written
    # and equal select's own
    for name in ("scores.csv", "subset.csv"):
        assert (tmp_path / "ev" / name).read_text() == (tmp_path / "sel" / name).read_text()
    assert "not written" not in capsys.readouterr().out
    # an edited selection.json (a row swapped) cannot be recomputed: evaluated as given, no CSVs
    dropped = next(i for i in range(1000) if i not in sel["selected"] and i < 42)
    sel["selected"] = sel["selected"][1:] + [dropped]
    (tmp_path / "edited.json").write_text(json.dumps(sel))
    assert (
        cli(
            [
                "evaluate",
                str(features_file),
                "--selection",
                str(tmp_path / "edited.json"),
                "--seeds",
                "3",
                "--out",
                str(tmp_path / "ev2"),
            ]
        )
        == 0
    )
    assert "scores.csv and subset.csv were not written" in capsys.readouterr().out
    assert not (tmp_path / "ev2" / "subset.csv").exists()
    cell = json.loads((tmp_path / "ev2" / "report.json").read_text())["cells"][0]
    assert cell["selection"]["selected"] == sel["selected"]
    capsys.readouterr()
    assert cli(["evaluate", str(features_file), "--out", str(tmp_path / "x")]) == 2
    assert "--fraction" in capsys.readouterr().err
    assert cli(["run", str(features_file), "--methods", "nope", "--out", str(tmp_path / "y")]) == 2
    assert cli(["run", str(features_file), "--label-noise", "1.5", "--out", str(tmp_path / "y")]) == 2
    assert cli(["run", str(features_file), "--eval-param", "C=-1", "--out", str(tmp_path / "y")]) == 2


@pytest.mark.slow
def test_run_on_an_image_folder_with_the_real_embedder(tmp_path, capsys):
    from .conftest import write_image

    root = tmp_path / "tree"
    for c in range(2):
        for i in range(6):
            write_image(root / f"class{c}" / f"{i}.png", seed=10 * c + i, size=(16, 16))
    started = time.perf_counter()
    argv = [
        "run",
        str(root),
        "--models",
        "effnet-lite0",
        "--eval-model",
        "effnet-lite0",
        "--fractions",
        "0.5",
        "--seeds",
        "3",
        "--device",
        "cpu",
        "--holdout",
        "0.34",
        "--out",
        str(tmp_path / "out"),
    ]
    assert cli(argv) == 0
    text = capsys.readouterr().out
    assert "2 cell(s) computed" in text
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["protocol"]["split"]["source"] == "hold-out" and report["protocol"]["split"]["n_test"] == 4
    assert report["features"]["eval_also_selects"] is True
    assert report["dataset"]["fingerprint"]
    assert cli(argv) == 0
    assert "0 cell(s) computed" in capsys.readouterr().out
    assert time.perf_counter() - started < 60


@pytest.mark.slow
def test_auto_is_the_default_and_says_what_it_chose(features_file, tmp_path, capsys):
    import pandas as pd

    assert (
        cli(["select", str(features_file), "--fraction", "0.3", "--models", "a", "--out", str(tmp_path / "sel")]) == 0
    )
    out = capsys.readouterr().out
    sel = json.loads((tmp_path / "sel" / "selection.json").read_text())
    assert sel["method"] == "auto"
    chosen = sel["details"]["chosen"]
    assert f"picked {chosen} for 30 %" in out
    names = [e["candidate"] for e in sel["details"]["estimates"]]
    assert names[0] == "random" and chosen in names and len(names) == 7
    scores = pd.read_csv(tmp_path / "sel" / "scores.csv", keep_default_na=False)
    assert {"suspected_mislabel", "suggested_class", "label_confidence"} <= set(scores.columns)
    # run --methods auto: a results row named auto, the chosen method recorded per cell
    assert (
        cli(
            [
                "run",
                str(features_file),
                "--methods",
                "auto",
                "--fractions",
                "0.2,0.5",
                "--seeds",
                "2",
                "--models",
                "a",
                "--out",
                str(tmp_path / "run"),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    autos = [c for c in report["cells"] if c["method"] == "auto"]
    assert len(autos) == 2
    for c in autos:
        picked = c["selection"]["details"]["chosen"]
        assert f"auto ({picked})" in text
