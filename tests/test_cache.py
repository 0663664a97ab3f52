"""Embedding cache: hit, incremental add, changed file, corrupt/truncated shard, atomicity."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from core.cache import CacheCorruptionWarning, EmbeddingCache
from core.extract import embed_images
from tests._embed_helpers import fake_embedder, make_images

IDENT = "a" * 64


def _shards(cache: EmbeddingCache, key: str) -> list[Path]:
    return sorted(cache.folder(key).glob("shard-*.npz"))


def test_second_run_is_a_pure_lookup(tmp_path):
    paths = make_images(tmp_path / "img", 12)
    emb = fake_embedder()
    cache = EmbeddingCache(tmp_path / "cache")
    first = embed_images(emb, paths, cache=cache, num_workers=0)
    assert (first.n_computed, first.n_cached) == (12, 0)
    seen = emb.model.seen
    second = embed_images(emb, paths, cache=cache, num_workers=0)
    assert (second.n_computed, second.n_cached) == (0, 12)
    assert emb.model.seen == seen  # the model never ran
    assert np.array_equal(first.features, second.features)
    # a fresh cache object (new process) reads the same files
    third = embed_images(emb, paths, cache=EmbeddingCache(tmp_path / "cache"), num_workers=0)
    assert third.n_cached == 12 and np.array_equal(third.features, first.features)


def test_adding_images_embeds_only_the_new_ones(tmp_path):
    emb = fake_embedder()
    cache = EmbeddingCache(tmp_path / "cache")
    old = make_images(tmp_path / "img", 8)
    embed_images(emb, old, cache=cache, num_workers=0)
    new = make_images(tmp_path / "img", 3, start=100)
    seen = emb.model.seen
    res = embed_images(emb, old + new, cache=cache, num_workers=0)
    assert (res.n_cached, res.n_computed) == (8, 3)
    assert emb.model.seen - seen == 3
    assert res.ok.all()


def test_changed_file_misses_renamed_file_hits(tmp_path):
    emb = fake_embedder()
    cache = EmbeddingCache(tmp_path / "cache")
    paths = make_images(tmp_path / "img", 5)
    before = embed_images(emb, paths, cache=cache, num_workers=0)
    # overwrite image 2 with the content of a different image
    Path(paths[2]).write_bytes(Path(make_images(tmp_path / "other", 1, start=50)[0]).read_bytes())
    renamed = tmp_path / "img" / "renamed.png"
    os.replace(paths[4], renamed)
    paths[4] = str(renamed)
    after = embed_images(emb, paths, cache=cache, num_workers=0)
    assert (after.n_cached, after.n_computed) == (4, 1)
    assert not np.allclose(after.features[2], before.features[2])
    assert np.array_equal(after.features[4], before.features[4])


def test_other_embedder_identity_misses(tmp_path):
    paths = make_images(tmp_path / "img", 4)
    cache = EmbeddingCache(tmp_path / "cache")
    a = fake_embedder(weights_id="w1")
    b = fake_embedder(weights_id="w2")
    assert a.identity != b.identity
    embed_images(a, paths, cache=cache, num_workers=0)
    res = embed_images(b, paths, cache=cache, num_workers=0)
    assert res.n_cached == 0 and res.n_computed == 4


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip_feature_byte", "empty"])
def test_corrupt_cache_file_is_detected_and_rebuilt(tmp_path, damage):
    paths = make_images(tmp_path / "img", 6)
    emb = fake_embedder()
    cache = EmbeddingCache(tmp_path / "cache")
    ref = embed_images(emb, paths, cache=cache, num_workers=0)
    (shard,) = _shards(cache, ref.cache_key)
    data = shard.read_bytes()
    if damage == "truncate":
        shard.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        shard.write_bytes(b"not an npz at all" * 10)
    elif damage == "empty":
        shard.write_bytes(b"")
    else:  # valid zip, but one float changed: only the checksum can tell
        with np.load(shard) as z:
            ids, feats, checksum = z["ids"], z["features"].copy(), z["checksum"]
        feats[3, 1] += 1.0
        np.savez(shard, ids=ids, features=feats, checksum=checksum)
    fresh = EmbeddingCache(tmp_path / "cache")
    with pytest.warns(CacheCorruptionWarning, match="corrupt"):
        res = embed_images(emb, paths, cache=fresh, num_workers=0)
    assert (res.n_cached, res.n_computed) == (0, 6)
    assert np.array_equal(res.features, ref.features)
    again = embed_images(emb, paths, cache=EmbeddingCache(tmp_path / "cache"), num_workers=0)
    assert again.n_cached == 6  # rebuilt


def test_lookup_and_store_units(tmp_path):
    cache = EmbeddingCache(tmp_path)
    found, feats = cache.lookup(IDENT, ["x", "y"])
    assert found.tolist() == [False, False] and feats.shape == (2, 0)
    cache.store(IDENT, ["x", "z"], np.array([[1, 2], [3, 4]], dtype=np.float64))
    found, feats = cache.lookup(IDENT, ["z", "y", "x"])
    assert found.tolist() == [True, False, True]
    assert feats.dtype == np.float32 and feats.shape == (3, 2)
    assert feats[0].tolist() == [3, 4] and np.isnan(feats[1]).all() and feats[2].tolist() == [1, 2]
    cache.store(IDENT, ["x"], np.array([[9, 9]], dtype=np.float32))  # newer row wins
    assert cache.lookup(IDENT, ["x"])[1][0].tolist() == [9, 9]
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temp files
    with pytest.raises(ValueError):
        cache.store(IDENT, ["a"], np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError):
        cache.store("../escape", ["a"], np.ones((1, 2)))


def test_compaction_bounds_shard_count_and_keeps_rows(tmp_path):
    cache = EmbeddingCache(tmp_path, max_shards=4)
    for k in range(10):
        cache.store(IDENT, [f"id{k}"], np.full((1, 3), k, dtype=np.float32))
    assert len(_shards(cache, IDENT)) <= 4
    found, feats = EmbeddingCache(tmp_path).lookup(IDENT, [f"id{k}" for k in range(10)])
    assert found.all() and feats[:, 0].tolist() == list(range(10))
    assert cache.count(IDENT) == 10


def test_default_root_is_the_workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("CORESET_STUDIO_HOME", str(tmp_path / "ws"))
    assert EmbeddingCache().root == (tmp_path / "ws" / "embeddings").resolve()


def test_cache_meta_describes_the_embedder(tmp_path):
    import json

    emb = fake_embedder()
    cache = EmbeddingCache(tmp_path / "cache")
    res = embed_images(emb, make_images(tmp_path / "img", 2), cache=cache, num_workers=0)
    meta = json.loads((cache.folder(res.cache_key) / "meta.json").read_text())
    assert meta["identity"] == emb.identity and meta["dim"] == 6 and meta["weights"] == "fake-weights"
