"""Extraction engine: batching, order, bad images, progress, cancel, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.cache import EmbeddingCache
from core.errors import CoresetError
from core.extract import ExtractionCancelled, ExtractionResult, embed_images, file_identity
from tests._embed_helpers import fake_embedder, make_images, save_tiny_timm


def _bad_files(folder: Path, good_jpeg: str) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    garbage = folder / "garbage.jpg"
    garbage.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg" * 5)
    text = folder / "notes.png"
    text.write_text("hello")
    truncated = folder / "truncated.jpg"
    data = Path(good_jpeg).read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    empty = folder / "empty.png"
    empty.write_bytes(b"")
    return [str(garbage), str(text), str(truncated), str(empty), str(folder / "missing.png")]


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory):
    from core.embedders import create_embedder

    path = save_tiny_timm(tmp_path_factory.mktemp("w") / "test_vit.safetensors")
    return create_embedder("timm:test_vit", weights=path)


@pytest.mark.parametrize("workers", [0, 2])
def test_bad_images_are_skipped_and_reported_never_fatal(tmp_path, workers):
    good = make_images(tmp_path / "good", 10, size=(64, 48), fmt="jpg")
    bad = _bad_files(tmp_path / "bad", good[0])
    paths = good[:4] + bad[:2] + good[4:] + bad[2:]
    emb = fake_embedder()
    res = embed_images(emb, paths, batch_size=3, num_workers=workers)
    assert isinstance(res, ExtractionResult)
    assert res.features.shape == (len(paths), emb.dim) and res.features.dtype == np.float32
    expected_ok = np.array([p in good for p in paths])
    assert np.array_equal(res.ok, expected_ok)
    assert np.isnan(res.features[~res.ok]).all() and np.isfinite(res.features[res.ok]).all()
    reported = {p for p, _ in res.problems}
    assert reported == set(bad)
    assert all(reason for _, reason in res.problems)
    assert res.n_computed == len(good) and res.n_cached == 0
    assert res.device == "cpu" and res.precision == "fp32"


@pytest.mark.slow
def test_rows_follow_input_order_with_workers(tmp_path, tiny_vit):
    paths = make_images(tmp_path, 70)
    res = embed_images(tiny_vit, paths, batch_size=8, num_workers=2)
    xs = torch.stack([tiny_vit.transform(Image.open(p).convert("RGB")) for p in paths])
    direct = tiny_vit.embed_batch(xs).numpy()
    assert res.ok.all()
    np.testing.assert_allclose(res.features, direct, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_deterministic_and_batch_size_independent(tmp_path, tiny_vit):
    paths = make_images(tmp_path, 32)
    a = embed_images(tiny_vit, paths, batch_size=32, num_workers=0)
    b = embed_images(tiny_vit, paths, batch_size=32, num_workers=0)
    assert np.array_equal(a.features, b.features)  # bitwise on CPU
    one = embed_images(tiny_vit, paths, batch_size=1, num_workers=0)
    np.testing.assert_allclose(one.features, a.features, atol=1e-4, rtol=0)


def test_progress_reports_cached_first_then_every_batch(tmp_path):
    paths = make_images(tmp_path, 10)
    emb = fake_embedder()
    cache = EmbeddingCache(tmp_path / "cache")
    embed_images(emb, paths[:4], cache=cache, num_workers=0)
    calls = []
    res = embed_images(emb, paths, cache=cache, batch_size=2, num_workers=0, progress=lambda d, t: calls.append((d, t)))
    assert calls[0] == (4, 10)
    assert calls[-1] == (10, 10)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert len(calls) == 1 + 3  # 6 new images in batches of 2
    assert res.n_cached == 4 and res.n_computed == 6


def test_cancel_stops_early_and_keeps_computed_rows(tmp_path):
    paths = make_images(tmp_path, 12)
    emb = fake_embedder()
    cache = EmbeddingCache(tmp_path / "cache")
    polls = {"n": 0}

    def cancel():
        polls["n"] += 1
        return polls["n"] > 2  # allow two batches

    with pytest.raises(ExtractionCancelled) as info:
        embed_images(emb, paths, cache=cache, batch_size=3, num_workers=0, cancel=cancel)
    assert isinstance(info.value, CoresetError)
    partial = info.value.partial
    assert partial.ok.sum() == 6 and partial.n_computed == 6
    assert "cancelled" in str(info.value)
    res = embed_images(emb, paths, cache=cache, batch_size=3, num_workers=0)
    assert res.n_cached == 6 and res.n_computed == 6 and res.ok.all()


def test_identical_files_are_embedded_once(tmp_path):
    paths = make_images(tmp_path, 3)
    copy = tmp_path / "copy_of_0.png"
    copy.write_bytes(Path(paths[0]).read_bytes())
    emb = fake_embedder()
    res = embed_images(emb, paths + [str(copy)], cache=EmbeddingCache(tmp_path / "c"), num_workers=0)
    assert res.n_computed == 3 and res.ok.all()
    assert emb.model.seen == 3
    assert np.array_equal(res.features[0], res.features[3])


def test_file_identity_is_a_content_hash(tmp_path):
    a = make_images(tmp_path / "a", 2)
    b = tmp_path / "renamed.png"
    b.write_bytes(Path(a[0]).read_bytes())
    assert file_identity(a[0]) == file_identity(b)
    assert file_identity(a[0]) != file_identity(a[1])
    assert len(file_identity(a[0])) == 40
    with pytest.raises(OSError):
        file_identity(tmp_path / "nope")


def test_argument_errors_are_clear(tmp_path):
    paths = make_images(tmp_path, 2)
    emb = fake_embedder()
    with pytest.raises(CoresetError, match="precision"):
        embed_images(emb, paths, precision="fp8")
    with pytest.raises(CoresetError, match="file_ids"):
        embed_images(emb, paths, file_ids=["x"])
    with pytest.raises(CoresetError, match="batch_size"):
        embed_images(emb, paths, batch_size=0)


def test_bf16_on_cpu_is_cached_under_its_own_key(tmp_path):
    paths = make_images(tmp_path, 4)
    emb = fake_embedder()
    cache = EmbeddingCache(tmp_path / "c")
    fp32 = embed_images(emb, paths, cache=cache, num_workers=0)
    bf16 = embed_images(emb, paths, cache=cache, num_workers=0, precision="bf16")
    assert bf16.precision == "bf16" and bf16.n_computed == 4 and bf16.cache_key != fp32.cache_key
    assert bf16.features.dtype == np.float32
    np.testing.assert_allclose(bf16.features, fp32.features, rtol=0.05, atol=0.05)


def test_empty_input(tmp_path):
    res = embed_images(fake_embedder(), [], cache=EmbeddingCache(tmp_path / "c"))
    assert res.features.shape == (0, 6) and res.ok.shape == (0,) and res.problems == []
