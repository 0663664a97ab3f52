"""The features store (core.feature_store): writing, memory-mapped reading, selection on it."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from core.cli import main
from core.errors import CoresetError
from core.feature_store import open_feature_store, save_feature_store, store_file_ids, verify_feature_store
from core.features import FeatureSet, load_features, save_features
from core.selection import list_selectors, run_selection


def _feature_set(n: int = 300, seed: int = 0) -> FeatureSet:
    rng = np.random.default_rng(seed)
    labels = np.array(["ant", "bee", "cat"])[rng.integers(0, 3, n)]
    return FeatureSet(
        features={"m1": rng.normal(size=(n, 12)).astype(np.float32), "m2": rng.normal(size=(n, 5)).astype(np.float32)},
        labels=labels,
        paths=np.array([f"img/{i:04d}.png" for i in range(n)]),
        split=np.where(rng.random(n) < 0.8, "train", "test"),
        meta={"dataset": {"name": "toy"}},
    )


def _mapped(x: np.ndarray) -> bool:
    """True when ``x``'s memory belongs to a file mapping (its innermost base is an ``mmap.mmap``)."""
    import mmap

    base = x
    while getattr(base, "base", None) is not None:
        base = base.base
    return isinstance(base, mmap.mmap)


def test_store_round_trip_is_memory_mapped_and_keyed_by_content(tmp_path):
    fs = _feature_set()
    ids = [f"hash{i:04d}" for i in range(len(fs))]
    path = save_feature_store(tmp_path / "f.store", fs, file_ids=ids, chunk_rows=7)  # many chunks
    got = open_feature_store(path)
    for m in fs.models:
        x = got.features[m]
        assert _mapped(x) and x.dtype == np.float32
        np.testing.assert_array_equal(x, fs.features[m])
    with pytest.raises(ValueError, match="read-only"):  # a read-only map: the file keeps its values
        got.features["m1"][0] = 99.0
    assert list(got.labels) == list(fs.labels) and list(got.paths) == list(fs.paths)
    assert list(got.split) == list(fs.split) and got.meta == fs.meta
    assert list(store_file_ids(path)) == ids
    manifest = json.loads((path / "store.json").read_text())
    assert manifest["n"] == len(fs) and set(manifest["models"]) == {"m1", "m2"}
    assert verify_feature_store(path) == []
    # a feature file changed on disk is found by its content hash
    f = path / manifest["models"]["m2"]["file"]
    raw = bytearray(f.read_bytes())
    raw[-1] ^= 0xFF
    f.write_bytes(bytes(raw))
    assert verify_feature_store(path) == ["m2"]


def test_store_is_replaced_atomically_and_never_overwrites_other_folders(tmp_path):
    path = save_feature_store(tmp_path / "f.store", _feature_set(seed=1))
    save_feature_store(path, _feature_set(seed=2))
    np.testing.assert_array_equal(load_features(path).features["m1"], _feature_set(seed=2).features["m1"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.store"]  # no temporaries left
    other = tmp_path / "photos"
    other.mkdir()
    with pytest.raises(CoresetError, match="not a features store"):
        save_feature_store(other, _feature_set())
    with pytest.raises(CoresetError, match="not a features store"):
        load_features(other)


@pytest.mark.parametrize(
    "method, budget",
    [(m, "paper") for m in list_selectors()] + [(m, "difficulty") for m in ("ram_apl", "random", "moderate_ds")],
)
def test_selection_on_the_memory_mapped_store_equals_selection_in_memory(tmp_path, method, budget):
    fs = _feature_set()
    mapped = open_feature_store(save_feature_store(tmp_path / "f.store", fs))
    assert _mapped(mapped.features["m1"])
    kw = {"budget": budget, "seed": 3, "device": "cpu", "label_issues": True}
    a = run_selection(method, fs.features, fs.labels, 0.3, **kw)
    b = run_selection(method, mapped.features, mapped.labels, 0.3, **kw)
    np.testing.assert_array_equal(a.selected, b.selected)
    pd.testing.assert_frame_equal(a.table, b.table)


def test_select_cli_reads_a_store_like_the_npz(tmp_path):
    fs = _feature_set()
    npz = save_features(tmp_path / "f.npz", fs)
    store = save_feature_store(tmp_path / "f.store", fs)
    for src, out in ((npz, "a"), (store, "b")):
        assert main(["select", str(src), "--method", "ram_apl", "--fraction", "0.2", "--out", str(tmp_path / out)]) == 0
    a, b = (pd.read_csv(tmp_path / o / "subset.csv") for o in "ab")
    pd.testing.assert_frame_equal(a, b)
    assert len(a) > 0


def test_embed_cli_writes_a_store(image_tree, tmp_path, fake_app_model):
    out = tmp_path / "feat.store"
    assert main(["embed", str(image_tree), "--models", fake_app_model, "--out", str(out)]) == 0
    npz = tmp_path / "feat.npz"
    assert main(["embed", str(image_tree), "--models", fake_app_model, "--out", str(npz)]) == 0
    a, b = load_features(out), load_features(npz)
    np.testing.assert_array_equal(a.features[fake_app_model], b.features[fake_app_model])
    assert list(a.paths) == list(b.paths) and list(a.labels) == list(b.labels)
    from core.datasets import load_folder

    ds = load_folder(image_tree)
    assert list(store_file_ids(out)) == [ds.file_ids[ds.paths.index(p)] for p in a.paths]


def test_a_store_grows_by_appending_only_the_images_it_does_not_hold(tmp_path):
    from core.feature_store import FeatureStoreWriter, append_feature_store

    fs = _feature_set()
    ids = [f"hash{i:04d}" for i in range(len(fs))]
    path = tmp_path / "f.store"
    w = FeatureStoreWriter(path, {"m1": 12, "m2": 5}, fs.meta)
    assert (
        w.append(
            {m: x[:200] for m, x in fs.features.items()},
            fs.labels[:200],
            paths=fs.paths[:200],
            split=fs.split[:200],
            file_ids=ids[:200],
        )
        == 200
    )
    # the whole set again, in chunks: only the 100 new images are added, after the others
    assert append_feature_store(path, fs, ids, chunk_rows=64) == 100
    assert append_feature_store(path, fs, ids) == 0
    got = open_feature_store(path)
    assert _mapped(got.features["m1"]) and got.features["m1"].shape == (300, 12)
    for m in fs.models:
        np.testing.assert_array_equal(got.features[m], fs.features[m])
    assert list(got.labels) == list(fs.labels) and list(got.paths) == list(fs.paths)
    assert list(store_file_ids(path)) == ids and verify_feature_store(path) == []
    manifest = json.loads((path / "store.json").read_text())
    assert [c["stop"] for c in manifest["chunks"]] == [
        200,
        256,
        300,
    ]  # rows 200-255 of the 64-row chunk 192-255, then 256-299
    # what does not fit the store is refused, naming the store
    with pytest.raises(CoresetError, match="holds models"):
        FeatureStoreWriter(path, {"m1": 12})
    with pytest.raises(CoresetError, match="labels"):
        FeatureStoreWriter(path).append({"m1": np.zeros((1, 12)), "m2": np.zeros((1, 5))}, np.array([3]))
    with pytest.raises(CoresetError, match=r"\(1, 12\)"):
        FeatureStoreWriter(path).append({"m1": np.zeros((1, 11)), "m2": np.zeros((1, 5))}, np.array(["ant"]))


@pytest.mark.parametrize("fail_at", ["rows", "manifest"])
def test_an_interrupted_append_leaves_the_store_as_it_was_and_the_next_one_repairs_it(tmp_path, monkeypatch, fail_at):
    from core import feature_store
    from core.feature_store import FeatureStoreWriter

    fs = _feature_set(n=120)
    ids = [f"h{i}" for i in range(120)]
    path = save_feature_store(tmp_path / "f.store", _head(fs, 80), file_ids=ids[:80])
    size = (path / "m1.npy").stat().st_size

    def boom(*a, **k):
        raise OSError("disk full")

    if fail_at == "rows":
        import core.workspace

        monkeypatch.setattr(core.workspace, "atomic_write_with", boom)
    else:
        monkeypatch.setattr(feature_store, "_write_manifest", boom)
    with pytest.raises(OSError, match="disk full"):
        FeatureStoreWriter(path).append(
            {m: x[80:] for m, x in fs.features.items()},
            fs.labels[80:],
            paths=fs.paths[80:],
            split=fs.split[80:],
            file_ids=ids[80:],
        )
    monkeypatch.undo()
    assert (path / "m1.npy").stat().st_size > size  # the features were written, never committed
    assert len(list(path.glob("rows-*.parquet"))) == (2 if fail_at == "manifest" else 1)
    got = open_feature_store(path)  # the manifest's 80 rows, nothing after them
    assert len(got) == 80 and got.features["m1"].shape == (80, 12)
    np.testing.assert_array_equal(got.features["m1"], fs.features["m1"][:80])
    assert verify_feature_store(path) == []
    w = FeatureStoreWriter(path)  # cuts the uncommitted tail (and a rows file of it) off
    assert (path / "m1.npy").stat().st_size == size and len(list(path.glob("rows-*.parquet"))) == 1
    assert (
        w.append(
            {m: x[80:] for m, x in fs.features.items()},
            fs.labels[80:],
            paths=fs.paths[80:],
            split=fs.split[80:],
            file_ids=ids[80:],
        )
        == 40
    )
    got = open_feature_store(path)
    np.testing.assert_array_equal(got.features["m2"], fs.features["m2"])
    assert list(got.labels) == list(fs.labels) and verify_feature_store(path) == []


def _head(fs: FeatureSet, k: int) -> FeatureSet:
    return FeatureSet(
        features={m: x[:k] for m, x in fs.features.items()},
        labels=fs.labels[:k],
        paths=fs.paths[:k],
        split=fs.split[:k],
        meta=fs.meta,
    )


def test_a_version_1_store_is_still_read_and_verified(tmp_path):
    import hashlib

    fs = _feature_set(n=50)
    path = tmp_path / "old.store"
    path.mkdir()
    models = {}
    for m, x in fs.features.items():
        np.save(path / f"{m}-x.npy", x)
        models[m] = {
            "dim": x.shape[1],
            "file": f"{m}-x.npy",
            "sha256": hashlib.sha256((path / f"{m}-x.npy").read_bytes()).hexdigest(),
        }
    pd.DataFrame({"file_id": [""] * 50, "path": fs.paths, "label": fs.labels, "split": fs.split}).to_parquet(
        path / "rows.parquet"
    )
    (path / "store.json").write_text(
        json.dumps({"format": "coreset-studio-features-store", "version": 1, "n": 50, "models": models, "meta": {}})
    )
    got = open_feature_store(path)
    np.testing.assert_array_equal(got.features["m1"], fs.features["m1"])
    assert list(got.labels) == list(fs.labels) and verify_feature_store(path) == []
    from core.feature_store import FeatureStoreWriter

    with pytest.raises(CoresetError, match="version 1"):
        FeatureStoreWriter(path)


def test_embed_cli_appends_to_a_store_only_the_images_it_does_not_hold(image_tree, tmp_path, fake_app_model):
    import shutil

    files = sorted(p for p in image_tree.rglob("*.png"))
    part = tmp_path / "part"
    for f in files[::2]:  # every other image, same class folders
        (part / f.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, part / f.parent.name / f.name)
    store, npz = tmp_path / "s.store", tmp_path / "all.npz"
    assert main(["embed", str(part), "--models", fake_app_model, "--out", str(store), "--append"]) == 0
    assert main(["embed", str(image_tree), "--models", fake_app_model, "--out", str(store), "--append"]) == 0
    assert main(["embed", str(image_tree), "--models", fake_app_model, "--out", str(npz)]) == 0
    got, full = load_features(store), load_features(npz)
    n_part = len(files[::2])
    assert len(got) == len(full) == len(files) and verify_feature_store(store) == []
    assert all(p.startswith(str(part)) for p in got.paths[:n_part])  # the first part kept its rows
    by_path = {p: i for i, p in enumerate(full.paths)}
    rest = [by_path[p] for p in got.paths[n_part:]]
    assert sorted(got.paths[n_part:]) == sorted(str(f) for f in files[1::2])
    np.testing.assert_array_equal(got.features[fake_app_model][n_part:], full.features[fake_app_model][rest])
    assert main(["embed", str(image_tree), "--models", fake_app_model, "--out", str(npz), "--append"]) == 2


def test_a_store_larger_than_the_machines_memory_opens_and_is_read(tmp_path):
    """A copy-on-write map of a file larger than RAM + swap fails with ENOMEM under Linux's
    overcommit rules (found at 10M x 768 on a 23.5 GiB machine); the read-only map does not.
    The store's feature file here is sparse: 4x this machine's memory, almost no disk."""
    import os

    from core.feature_store import _write_npy_header

    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    dim = 1 << 20  # 4 MiB a row
    n = int(4 * ram // (4 * dim)) + 1
    path = tmp_path / "huge.store"
    path.mkdir()
    with open(path / "m.npy", "wb") as fh:
        _write_npy_header(fh, n, dim)
        header = fh.tell()
        fh.truncate(header + n * dim * 4)  # sparse: reads as zeros
    with open(path / "m.npy", "r+b") as fh:
        fh.seek(header + (n - 1) * dim * 4)
        fh.write(np.arange(dim, dtype="<f4").tobytes())  # the last row
    pd.DataFrame(
        {
            "file_id": [""] * n,
            "path": [f"{i}.png" for i in range(n)],
            "label": ["a", "b"] * (n // 2) + ["a"] * (n % 2),
            "split": ["train"] * n,
        }
    ).to_parquet(path / "rows-00000.parquet")
    manifest = {
        "format": "coreset-studio-features-store",
        "version": 2,
        "n": n,
        "label_kind": "str",
        "models": {"m": {"dim": dim, "file": "m.npy"}},
        "chunks": [{"start": 0, "stop": n, "rows": "rows-00000.parquet", "sha256": {"m": ""}}],
        "meta": {},
    }
    (path / "store.json").write_text(json.dumps(manifest))
    got = open_feature_store(path)
    x = got.features["m"]
    assert x.shape == (n, dim) and x.nbytes > 3 * ram and _mapped(x) and not x.flags.writeable
    np.testing.assert_array_equal(x[-1, :5], np.arange(5, dtype=np.float32))
    assert float(x[n // 2, ::4096].sum()) == 0.0


def test_scattered_rows_of_a_store_are_gathered_under_random_access_advice(tmp_path):
    from core import mapped

    fs = _feature_set(n=400)
    x_mapped = open_feature_store(save_feature_store(tmp_path / "f.store", fs)).features["m1"]
    rows = np.arange(3, 400, 37)  # 11 scattered rows: under 1/8 of them
    seen = []
    real = mapped.random_access

    def spy(x):
        seen.append(mapped.file_map(x) is not None)
        return real(x)

    import unittest.mock

    with unittest.mock.patch.object(mapped, "random_access", spy):
        np.testing.assert_array_equal(mapped.gather_rows(x_mapped, rows), fs.features["m1"][rows])
        np.testing.assert_array_equal(mapped.gather_rows(fs.features["m1"], rows), fs.features["m1"][rows])
        np.testing.assert_array_equal(mapped.gather_rows(x_mapped, np.arange(0, 400, 2)), fs.features["m1"][::2])
    assert seen == [True]  # only the scattered gather from the mapping: not in memory, not a dense one
    with mapped.random_access(x_mapped), mapped.random_access(x_mapped[10:]):  # nested, one mapping
        assert list(mapped._RANDOM_USERS.values()) == [2]
    assert mapped._RANDOM_USERS == {}  # the last to leave restores the normal advice
    with mapped.random_access(fs.features["m1"]):
        assert mapped._RANDOM_USERS == {}  # an array in memory: nothing to advise


def _mapping_rss_kib(path) -> int:
    """Resident KiB of this process's mappings of ``path`` (/proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as fh:
        for line in fh:
            head = line.split()
            if head and "-" in head[0] and len(head) >= 5:
                inside = line.rstrip().endswith(str(path))
            elif inside and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs Linux /proc/self/smaps")
def test_release_pages_takes_rows_read_out_of_the_resident_memory(tmp_path):
    from core.mapped import release_pages

    x = np.arange(4096 * 1024, dtype=np.float32).reshape(4096, 1024)  # 16 MiB
    fs = FeatureSet({"m1": x}, np.zeros(4096, dtype=np.int64))
    store = save_feature_store(tmp_path / "f.store", fs)
    mm = open_feature_store(store).features["m1"]
    path = (store / "m1.npy").resolve()
    assert float(mm[:, 0].sum()) == float(x[:, 0].sum())  # every row's page touched
    before = _mapping_rss_kib(path)
    assert before >= 15 * 1024
    release_pages(mm, 0, 2048)  # the first half (the kernel may unmap in folios of up to 2 MiB)
    half = _mapping_rss_kib(path)
    assert before - half >= 7 * 1024 and half >= 4 * 1024
    release_pages(mm, 0, 4096)
    assert _mapping_rss_kib(path) <= 64  # at most the page with the header
    np.testing.assert_array_equal(mm[100], x[100])  # still readable: the pages come back on reading
    release_pages(x, 0, 4096)  # an array in memory: nothing happens
    assert x[5, 5] == 5 * 1024 + 5
    assert float(mm[:, 0].sum()) == float(x[:, 0].sum()) and _mapping_rss_kib(path) >= 15 * 1024
    from core.mapped import gather_rows

    rows = np.arange(0, 4096, 64)  # a sparse gather: read, then its pages handed back
    release_pages(mm, 0, 4096)
    np.testing.assert_array_equal(gather_rows(mm, rows), x[rows])
    assert _mapping_rss_kib(path) <= 256
