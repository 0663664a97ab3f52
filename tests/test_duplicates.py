"""Near-duplicate groups (:mod:`core.duplicates`): union-find against a slow reference, the
criterion against a brute-force computation of it, the groups' fields on synthetic features
with known duplicates and byte copies, real copies (re-encoded, resized, byte copies in a
features store) embedded with ``effnet-lite0``, and ``select`` / ``evaluate --selection``
with ``--dedup``."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.cli import main
from core.duplicates import (
    DEFAULT_THRESHOLD,
    RADIUS_FLOOR,
    RADIUS_RANK,
    duplicates_frame,
    near_duplicates,
    neighbourhood_radius,
    union_groups,
)
from core.errors import CoresetError
from core.features import FeatureSet, save_features
from core.neighbors import build_graph


# --------------------------------------------------------------------------- references
def slow_components(n: int, edges) -> list[int]:
    """The obvious union-find: each row's component labelled by its smallest row."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for a, b in edges:
        ra, rb = find(int(a)), find(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return [find(i) for i in range(n)]


def partition(labels) -> set[frozenset[int]]:
    """The groups (two or more rows) of a labelling; ``-1`` = no group."""
    out: dict[int, set[int]] = {}
    for i, g in enumerate(labels):
        if g >= 0:
            out.setdefault(int(g), set()).add(i)
    return {frozenset(s) for s in out.values() if len(s) > 1}


def brute_force_groups(features: dict[str, np.ndarray], threshold: float, file_ids=None) -> set[frozenset[int]]:
    """The module docstring's criterion computed over every pair, with no graph."""
    n = len(next(iter(features.values())))
    ok = np.ones((n, n), dtype=bool)
    for x in features.values():
        u = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
        cos = u @ u.T
        others = np.sort(np.where(np.eye(n, dtype=bool), -np.inf, cos), axis=1)[:, ::-1]
        radius = 1.0 - others[:, RADIUS_RANK - 1]
        scale = np.maximum(np.maximum(radius[:, None], radius[None, :]), RADIUS_FLOOR * np.median(radius))
        ok &= 1.0 - (1.0 - cos) / scale >= threshold
    edges = [(i, j) for i in range(n) for j in range(i + 1, n) if ok[i, j]]
    if file_ids is not None:
        edges += [(i, j) for i in range(n) for j in range(i + 1, n) if file_ids[i] and file_ids[i] == file_ids[j]]
    return partition(slow_components(n, edges) if edges else [-1] * n)


def graphs_of(features: dict[str, np.ndarray], k: int | None = None):
    return {m: build_graph(x, k if k is not None else len(x) - 1) for m, x in features.items()}


# --------------------------------------------------------------------------- union-find
@pytest.mark.parametrize("seed", range(25))
def test_union_groups_matches_a_slow_union_find(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 80))
    e = int(rng.integers(0, 2 * n))
    edges = rng.integers(0, n, size=(e, 2))  # self loops and repeated edges included
    got = union_groups(n, edges)
    assert got.dtype == np.int64 and got.shape == (n,)
    assert got.tolist() == slow_components(n, edges.tolist())


def test_union_groups_long_chains_and_no_edges():
    rng = np.random.default_rng(0)
    n = 3000
    order = rng.permutation(n)  # one path visiting every row in a random order, edges shuffled
    edges = np.stack([order[:-1], order[1:]], axis=1)[rng.permutation(n - 1)]
    assert (union_groups(n, edges) == 0).all()
    # two interleaved chains (even rows, odd rows), listed from the far end
    edges = np.array([(i, i + 2) for i in range(n - 3, -1, -1)])
    assert union_groups(n, edges).tolist() == [i % 2 for i in range(n)]
    assert union_groups(5, np.zeros((0, 2), dtype=np.int64)).tolist() == [0, 1, 2, 3, 4]
    assert union_groups(0, np.zeros((0, 2), dtype=np.int64)).tolist() == []


# --------------------------------------------------------------------------- criterion
def planted(n: int = 40, d: int = 48, seed: int = 0) -> dict[str, np.ndarray]:
    """Random rows, a few of them copies of others at noise levels from tiny to large (so a
    threshold splits them), in two models with independent noise."""
    rng = np.random.default_rng(seed)
    out = {}
    for m in ("a", "b"):
        x = rng.normal(size=(n, d))
        for j, (src, sigma) in enumerate(
            [(0, 0.05), (1, 0.2), (2, 0.5), (3, 0.8), (4, 1.1), (5, 1.4), (6, 1.8), (7, 2.5)]
        ):
            x[20 + j] = x[src] + sigma * rng.normal(size=d)
        x[30] = x[20] + 0.05 * rng.normal(size=d)  # a chain 0 ~ 20 ~ 30
        out[m] = x.astype(np.float32)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_groups_follow_the_criterion_computed_over_every_pair(seed):
    feats = planted(seed=seed)
    graphs = graphs_of(feats)
    found_any, missed_some = False, False
    for t in (0.1, 0.2, DEFAULT_THRESHOLD, 0.6, 0.8, 0.95, 1.0):  # (at 0 the radius itself is a tie)
        expected = brute_force_groups(feats, t)
        assert partition(near_duplicates(feats, graphs, threshold=t).group) == expected, t
        if t == DEFAULT_THRESHOLD:
            found_any = any(len(g) > 1 for g in expected)
            missed_some = not any({7, 27} <= g for g in expected)
    assert found_any and missed_some  # the default threshold splits the planted copies


def test_candidates_come_from_the_graph_and_every_model_must_agree():
    feats = planted()
    # a duplicate in model "a" only is not one
    feats["a"][35] = feats["a"][34] + 0.01
    groups = near_duplicates(feats, graphs_of(feats))
    assert groups.group[34] == -1 and groups.group[35] == -1
    assert groups.group[0] >= 0 and groups.group[0] == groups.group[20] == groups.group[30]
    # with the default K-nearest graph (K = 30 >= N - 1 here) the result is the same
    assert (near_duplicates(feats, {m: build_graph(x) for m, x in feats.items()}).group == groups.group).all()


def test_a_burst_larger_than_the_radius_rank_stays_one_group():
    """Twelve near-identical rows: each one's RADIUS_RANK-th neighbour is another copy, so
    only the radius floor (half the median radius) keeps them together."""
    rng = np.random.default_rng(1)
    feats = {m: rng.normal(size=(60, 64)).astype(np.float32) for m in ("a", "b")}
    for x in feats.values():
        x[40:52] = x[40] + 0.02 * rng.normal(size=(12, 64))
    groups = near_duplicates(feats, graphs_of(feats, 30))
    assert partition(groups.group) == {frozenset(range(40, 52))}
    radius, floor = neighbourhood_radius(build_graph(feats["a"], 30))
    assert radius[40:52].max() < floor < np.median(radius)  # the burst's own radii are tiny


def test_neighbourhood_radius_reads_the_graph():
    x = np.random.default_rng(2).normal(size=(12, 16)).astype(np.float32)
    graph = build_graph(x, 30)  # K is cut to N - 1 = 11
    radius, floor = neighbourhood_radius(graph)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    cos = np.sort(np.where(np.eye(12, dtype=bool), -np.inf, u @ u.T), axis=1)[:, ::-1]
    np.testing.assert_allclose(radius, 1 - cos[:, RADIUS_RANK - 1], atol=1e-6)
    assert floor == pytest.approx(RADIUS_FLOOR * np.median(radius), rel=1e-6)
    # a graph with fewer neighbours than the rank: the farthest one it holds
    small, _ = neighbourhood_radius(build_graph(x[:3], 30))
    cos3 = u[:3] @ u[:3].T
    farthest = [min(cos3[i, j] for j in range(3) if j != i) for i in range(3)]
    np.testing.assert_allclose(small, 1 - np.array(farthest), atol=1e-6)


def test_bad_inputs_are_refused():
    feats = planted()
    graphs = graphs_of(feats)
    for t in (-0.1, 1.5):
        with pytest.raises(CoresetError, match=r"\[0, 1\]"):
            near_duplicates(feats, graphs, threshold=t)
    with pytest.raises(CoresetError, match="'b'"):
        near_duplicates(feats, {"a": graphs["a"]})
    with pytest.raises(CoresetError, match="file_ids"):
        near_duplicates(feats, graphs, file_ids=["x"] * 3)
    with pytest.raises(CoresetError, match="rows"):
        near_duplicates({"a": feats["a"][:10], "b": feats["b"][:10]}, graphs)


# --------------------------------------------------------------------------- groups' fields
def known_duplicates():
    """30 random rows in two models; duplicates {0, 3}, {7, 10, 11} (7 nearest the centre, then
    11, then 10), byte copies
    {20, 25} (different features, same file id); 13 ~ 14 in model "a" only; rows 28 and 29
    have no file id (two unknowns are not the same file)."""
    rng = np.random.default_rng(0)
    feats = {}
    for m in ("a", "b"):
        x = rng.normal(size=(30, 48))
        x[3] = x[0] + 0.01 * rng.normal(size=48)
        e = 0.03 * rng.normal(size=48)
        x[10], x[11] = x[7] + 2 * e, x[7] - e  # 11 nearer the centre than 10
        feats[m] = x.astype(np.float32)
    feats["a"][14] = feats["a"][13] + 0.01
    ids = [f"file{i}" for i in range(30)]
    ids[25] = ids[20]
    ids[28] = ids[29] = ""
    return feats, ids


def unit(x):
    x = x.astype(np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_groups_representatives_scores_and_similarities():
    feats, ids = known_duplicates()
    g = near_duplicates(feats, graphs_of(feats), file_ids=ids)
    expected = np.full(30, -1)
    expected[[0, 3]], expected[[7, 10, 11]], expected[[20, 25]] = 0, 1, 2  # ids in order of first rows
    assert g.group.tolist() == expected.tolist()
    assert g.n_groups == 3 and g.n_duplicates == 4
    assert np.flatnonzero(g.representative).tolist() == [0, 7, 20]  # a pair: its first row; 7: the centre
    assert np.flatnonzero(g.exact).tolist() == [20, 25]
    assert g.threshold == DEFAULT_THRESHOLD and g.models == ["a", "b"]
    # score: cosine to the group's centre (normalised mean of the normalised rows), mean over models
    for members in ([0, 3], [7, 10, 11], [20, 25]):
        per_model = []
        for m in "ab":
            u = unit(feats[m][members])
            centre = u.mean(0) / np.linalg.norm(u.mean(0))
            per_model.append(u @ centre)
        want = np.mean(per_model, axis=0)
        np.testing.assert_allclose(g.score[members], want, atol=1e-5)
        # similarity: the lowest cosine over the models to the representative
        rep = members[0]
        low = np.min([unit(feats[m][members]) @ unit(feats[m][[rep]])[0] for m in "ab"], axis=0)
        np.testing.assert_allclose(g.similarity[members[1:]], low[1:], atol=1e-5)
        assert g.similarity[rep] == 1.0
    assert np.isnan(g.score[g.group < 0]).all() and np.isnan(g.similarity[g.group < 0]).all()
    assert g.summary() == {
        "threshold": DEFAULT_THRESHOLD,
        "criterion": g.summary()["criterion"],
        "models": ["a", "b"],
        "groups": 3,
        "rows_in_groups": 7,
        "duplicates": 4,
        "exact_copies": 2,
    }
    assert f"neighbour {RADIUS_RANK}" in g.summary()["criterion"]
    # without the file ids the byte copies (different features here) are not a group
    assert partition(near_duplicates(feats, graphs_of(feats)).group) == {frozenset({0, 3}), frozenset({7, 10, 11})}


@pytest.mark.parametrize("seed", range(40))
def test_a_pair_is_represented_by_its_first_row(seed):
    """The two members of a pair are equally close to its centre; float rounding must not
    decide which one is kept."""
    rng = np.random.default_rng(seed)
    feats = {m: rng.normal(size=(20, 48)).astype(np.float32) for m in ("a", "b")}
    for x in feats.values():
        x[9] = x[4] + 0.01 * rng.normal(size=48)
    g = near_duplicates(feats, graphs_of(feats))
    assert partition(g.group) == {frozenset({4, 9})}
    assert g.representative[4] and not g.representative[9]
    assert g.keep_one()[4] and not g.keep_one()[9]


def test_keep_one_leaks_and_columns():
    feats, ids = known_duplicates()
    g = near_duplicates(feats, graphs_of(feats), file_ids=ids)
    assert np.flatnonzero(~g.keep_one()).tolist() == [3, 10, 11, 25]
    # a pool without the representative 7 keeps the better-scoring of 10 and 11 (11, not the
    # lower row), and nothing outside the pool
    pool = np.ones(30, dtype=bool)
    pool[[7, 0, 29]] = False
    kept = g.keep_one(pool)
    assert g.score[7] > g.score[11] > g.score[10]
    assert np.flatnonzero(pool & ~kept).tolist() == [10, 25]
    assert not kept[[7, 0, 29]].any() and kept[3]  # 3 is the only pool member of {0, 3}
    assert g.keep_one(np.zeros(30, dtype=bool)).sum() == 0
    # leaks: groups with members on both sides of the pool
    first_ten = np.arange(30) < 10
    assert g.leaks(first_ten) == 1  # {7 | 10, 11}; {0, 3} inside, {20, 25} outside
    assert g.leaks(first_ten | (np.arange(30) == 20)) == 2  # and {20 | 25}
    assert g.leaks(np.arange(30) < 21) == 1  # {20 | 25} only
    assert g.leaks(np.ones(30, dtype=bool)) == 0
    cols = g.columns()
    assert cols["duplicate_group"].tolist() == g.group.tolist()
    of = np.full(30, -1)
    of[3], of[10], of[11], of[25] = 0, 7, 7, 20
    assert cols["duplicate_of"].tolist() == of.tolist()


def test_duplicates_frame_lists_each_group_representative_first():
    feats, ids = known_duplicates()
    g = near_duplicates(feats, graphs_of(feats), file_ids=ids)
    labels = np.array([f"c{i % 3}" for i in range(30)])
    paths = np.array([f"/data/img{i}.png" for i in range(30)])
    split = np.where(np.arange(30) == 25, "test", "train")
    frame = duplicates_frame(g, labels, paths, split)
    assert list(frame.columns) == [
        "group",
        "index",
        "path",
        "label",
        "split",
        "representative",
        "similarity",
        "exact_copy",
    ]
    assert frame["index"].tolist() == [0, 3, 7, 10, 11, 20, 25]
    assert frame["group"].tolist() == [0, 0, 1, 1, 1, 2, 2]
    assert frame["representative"].tolist() == [True, False, True, False, False, True, False]
    assert frame["exact_copy"].tolist() == [False] * 5 + [True, True]
    assert frame["path"].tolist()[0] == "/data/img0.png" and frame["label"].tolist()[1] == "c0"
    assert frame["split"].tolist()[-1] == "test"
    assert frame["similarity"].tolist()[0] == 1.0 and 0.9 < frame["similarity"].tolist()[1] < 1.0
    # no paths given: empty path cells; no groups: an empty table with the same columns
    assert (duplicates_frame(g)["path"] == "").all()
    none = near_duplicates(feats, graphs_of(feats), threshold=1.0)
    assert none.n_groups == 0 and len(duplicates_frame(none)) == 0


# --------------------------------------------------------------------------- real copies, real embedder
#: scikit-image's bundled sample photographs (no download), each a different scene.
SAMPLES = [
    "astronaut",
    "camera",
    "coffee",
    "chelsea",
    "rocket",
    "horse",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "colorwheel",
    "moon",
    "page",
    "text",
    "coins",
    "clock",
    "logo",
    "grass",
    "gravel",
    "brick",
    "cell",
]


def copies_tree(root: Path) -> dict[str, str]:
    """20 photos (longer side 256 px) in two class folders; JPEG quality-70 copies of the first
    7, copies resized to 60 % of the next 7, byte copies of the next 4. Returns copy -> source
    (file stems)."""
    from PIL import Image
    from skimage import data

    source_of = {}
    for i, name in enumerate(SAMPLES):
        im = Image.fromarray(getattr(data, name)()).convert("RGB")
        im.thumbnail((256, 256))
        path = root / f"class{i % 2}" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        im.save(path)
        if i < 7:
            im.save(path.with_name(f"{name}_q70.jpg"), quality=70)
            source_of[f"{name}_q70"] = name
        elif i < 14:
            im.resize((round(im.width * 0.6), round(im.height * 0.6)), Image.Resampling.BICUBIC).save(
                path.with_name(f"{name}_small.png")
            )
            source_of[f"{name}_small"] = name
        elif i < 18:
            shutil.copyfile(path, path.with_name(f"{name}_copy.png"))
            source_of[f"{name}_copy"] = name
    return source_of


@pytest.mark.slow
def test_real_copies_are_grouped_with_their_sources(tmp_path, capsys):
    from core.curation import curation
    from core.features import load_features

    source_of = copies_tree(tmp_path / "photos")
    store = tmp_path / "photos.store"
    assert main(["embed", str(tmp_path / "photos"), "--models", "effnet-lite0", "--out", str(store)]) == 0
    fs = load_features(store)
    stems = [Path(p).stem for p in fs.paths]
    assert len(stems) == 38
    _, groups = curation(fs, ["effnet-lite0"], store)  # as select does: the store's file ids
    row = {s: i for i, s in enumerate(stems)}
    want = {frozenset({row[c], row[s]}) for c, s in source_of.items()}
    assert partition(groups.group) == want  # every copy with its source, no two photos together
    exact = {stems[i] for i in np.flatnonzero(groups.exact)}
    byte_copies = {c for c in source_of if c.endswith("_copy")}
    assert exact == byte_copies | {source_of[c] for c in byte_copies}
    # select on the store: duplicates.csv names the groups and the byte copies
    out = tmp_path / "sel"
    capsys.readouterr()
    assert main(["select", str(store), "--method", "random", "--fraction", "0.5", "--dedup", "--out", str(out)]) == 0
    assert "18 near-duplicate group(s) (18 image(s) beyond one per group)" in capsys.readouterr().out
    dup = pd.read_csv(out / "duplicates.csv")
    assert len(dup) == 36 and dup["exact_copy"].sum() == 8
    assert set(pd.read_csv(out / "scores.csv")["index"]) == set(np.flatnonzero(groups.keep_one()))


# --------------------------------------------------------------------------- CLI
@pytest.fixture
def dup_features(tmp_path):
    """Gaussian classes (3 x 14 train, 3 x 4 test, 32-d; models a, b and the evaluation model
    effnet-lite2) with planted duplicates: {0, 1}, {4, 5, 6} in train, {10 (train), 42 (test)}."""
    from .test_evaluation_data import blobs

    fs = blobs((14, 14, 14), dim=32, test_per_class=4, paths_root=tmp_path / "images")
    rng = np.random.default_rng(5)
    for x in fs.features.values():
        x[1] = x[0] + 0.001 * rng.normal(size=32)
        x[5], x[6] = x[4] + 0.001 * rng.normal(size=32), x[4] + 0.001 * rng.normal(size=32)
        x[42] = x[10] + 0.001 * rng.normal(size=32)
    assert fs.split[42] == "test" and fs.labels[42] == fs.labels[10] and (fs.split[:42] == "train").all()
    return save_features(tmp_path / "features.npz", FeatureSet(fs.features, fs.labels, fs.paths, fs.split, fs.meta))


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_select_dedup_drops_the_non_representatives_and_evaluate_recomputes_it(dup_features, tmp_path, capsys):
    common = ["--method", "herding", "--fraction", "0.5", "--models", "a,b"]
    assert main(["select", str(dup_features), *common, "--out", str(tmp_path / "all")]) == 0
    assert main(["select", str(dup_features), *common, "--dedup", "--out", str(tmp_path / "sel")]) == 0
    err = capsys.readouterr().err
    assert "warning: 1 near-duplicate group(s) have images both in the pool and outside it" in err
    dup = read_csv(tmp_path / "sel" / "duplicates.csv")
    groups: dict[str, list[int]] = {}
    for r in dup:
        groups.setdefault(r["group"], []).append(int(r["index"]))
    assert sorted(sorted(g) for g in groups.values()) == [[0, 1], [4, 5, 6], [10, 42]]
    assert all(dup[i]["representative"] == "True" for i in (0, 2, 5))  # each group's first line
    reps = {int(r["index"]) for r in dup if r["representative"] == "True"}
    assert 0 in reps and next(r["split"] for r in dup if r["index"] == "42") == "test"
    dropped = {0, 1, 4, 5, 6} - reps
    assert len(dropped) == 3
    # the pool: every train row (0-41) less the non-representatives; without --dedup all of them
    pool = {int(r["index"]) for r in read_csv(tmp_path / "sel" / "scores.csv")}
    assert pool == set(range(42)) - dropped
    everything = read_csv(tmp_path / "all" / "scores.csv")
    assert {int(r["index"]) for r in everything} == set(range(42))
    by_row = {int(r["index"]): r for r in everything}
    assert by_row[1]["duplicate_of"] == "0" and by_row[0]["duplicate_of"] == "-1"
    assert by_row[10]["duplicate_group"] != "-1" and by_row[2]["duplicate_group"] == "-1"
    sel = json.loads((tmp_path / "sel" / "selection.json").read_text())
    d = sel["duplicates"]
    assert (d["dedup"], d["dropped_by_dedup"], d["groups_across_pool"]) == (True, 3, 1)
    assert (d["groups"], d["rows_in_groups"], d["duplicates"], d["threshold"]) == (3, 7, 4, DEFAULT_THRESHOLD)
    assert not set(sel["selected"]) & dropped
    assert json.loads((tmp_path / "all" / "selection.json").read_text())["duplicates"]["dedup"] is False
    # evaluate --selection recomputes the same table (same pool, same duplicate handling)
    assert (
        main(
            [
                "evaluate",
                str(dup_features),
                "--selection",
                str(tmp_path / "sel" / "selection.json"),
                "--seeds",
                "2",
                "--out",
                str(tmp_path / "ev"),
            ]
        )
        == 0
    )
    for name in ("scores.csv", "subset.csv"):
        assert (tmp_path / "ev" / name).read_text() == (tmp_path / "sel" / name).read_text()
    assert "not written" not in capsys.readouterr().out


def test_select_refuses_a_threshold_outside_0_1(dup_features, tmp_path, capsys):
    argv = ["select", str(dup_features), "--method", "random", "--fraction", "0.5", "--duplicate-threshold", "1.5"]
    assert main([*argv, "--out", str(tmp_path / "x")]) == 2
    assert "[0, 1]" in capsys.readouterr().err and not (tmp_path / "x").exists()
