"""The features file: round trip, files from other tools, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import CoresetError
from core.features import FeatureSet, load_features, save_features


def test_round_trip_keeps_every_field(tmp_path):
    rng = np.random.default_rng(0)
    fs = FeatureSet(
        features={"effnet-lite0": rng.normal(size=(5, 4)), "b": rng.normal(size=(5, 2)).astype(np.float16)},
        labels=np.array(["x", "y", "x", "z", "y"]),
        paths=np.array([f"/data/{i}.png" for i in range(5)]),
        split=np.array(["train"] * 4 + ["test"]),
        meta={"dataset": {"fingerprint": "abc"}, "models": ["effnet-lite0", "b"]},
    )
    path = save_features(tmp_path / "f.npz", fs)
    back = load_features(path)
    assert back.models == ["effnet-lite0", "b"]
    for name in fs.models:
        assert back.features[name].dtype == np.float32
        np.testing.assert_array_equal(back.features[name], fs.features[name])
    assert list(back.labels) == list(fs.labels)
    assert list(back.paths) == list(fs.paths) and list(back.split) == list(fs.split)
    assert back.meta == fs.meta
    with np.load(path, allow_pickle=False) as raw:  # plain numpy can read it, no pickle
        assert set(raw.files) == {"feat_effnet-lite0", "feat_b", "labels", "paths", "split", "meta"}


def test_file_from_another_tool_with_only_features_and_integer_labels(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, feat_clip=np.ones((3, 2), dtype=np.float64), labels=np.array([0, 1, 1]))
    fs = load_features(path)
    assert fs.paths is None and fs.split is None and fs.meta == {}
    assert fs.labels.dtype.kind == "i" and list(fs.labels) == [0, 1, 1]
    assert fs.features["clip"].dtype == np.float32


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"labels": np.array([0, 1])}, "no feat_<model> arrays"),
        ({"feat_a": np.ones((2, 2))}, "no 'labels' array"),
        ({"feat_a": np.ones((3, 2)), "labels": np.array([0, 1])}, "3 rows but there are 2 labels"),
        ({"feat_a": np.ones(2), "labels": np.array([0, 1])}, "must be 2-D"),
    ],
)
def test_bad_files_name_the_problem(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(CoresetError, match=message):
        load_features(path)


def test_not_an_npz(tmp_path):
    path = tmp_path / "x.npz"
    path.write_text("hello")
    with pytest.raises(CoresetError, match="not a .npz archive"):
        load_features(path)
    with pytest.raises(CoresetError, match="does not exist"):
        load_features(tmp_path / "missing.npz")


def test_subset_selects_rows(tmp_path):
    fs = FeatureSet(
        features={"a": np.arange(8, dtype=np.float32).reshape(4, 2)},
        labels=["p", "q", "p", "q"],
        paths=["0", "1", "2", "3"],
    )
    sub = fs.subset(np.array([True, False, False, True]))
    assert list(sub.paths) == ["0", "3"] and sub.features["a"].tolist() == [[0, 1], [6, 7]]
