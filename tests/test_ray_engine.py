"""The Ray Data engine (core.ray_engine) on a local Ray cluster of 2 CPUs started here, against the local engine."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from core.cache import EmbeddingCache
from core.cli import main
from core.extract import embed_images
from core.features import load_features

from ._embed_helpers import fake_embedder, make_images


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray cluster (2 CPUs) for the module; the engine joins it instead of starting its own."""
    import ray  # a dev dependency (make test installs it): missing, the tests fail, never skip

    from core.ray_engine import _connect

    if ray.is_initialized():
        ray.shutdown()
    assert _connect(ray, None, 2) is True
    assert ray.cluster_resources().get("CPU") == 2
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_cli_ray_engine_matches_the_local_engine_row_for_row(ray_cluster, image_tree, tmp_path, capsys):
    """effnet-lite0 on 2 actors: the same features (1e-5), paths, labels, splits and order; a corrupt image
    is skipped and reported by both engines."""
    broken = image_tree / "dog" / "dog1.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    local_out, ray_out = tmp_path / "local.npz", tmp_path / "ray.npz"
    assert main(["embed", str(image_tree), "--models", "effnet-lite0", "--no-cache", "--out", str(local_out)]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "embed",
                str(image_tree),
                "--models",
                "effnet-lite0",
                "--engine",
                "ray",
                "--workers",
                "2",
                "--batch-size",
                "2",
                "--out",
                str(ray_out),
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "dog1.png" in err  # reported, not fatal
    local, dist = load_features(local_out), load_features(ray_out)
    assert len(dist) == 8 and str(broken) not in list(dist.paths)
    assert list(dist.paths) == list(local.paths)
    assert list(dist.labels) == list(local.labels) and list(dist.split) == list(local.split)
    np.testing.assert_allclose(dist.features["effnet-lite0"], local.features["effnet-lite0"], atol=1e-5, rtol=0)
    # the Ray run wrote the shared cache: the local engine now computes nothing
    cached = main(["embed", str(image_tree), "--models", "effnet-lite0", "--out", str(tmp_path / "again.npz")])
    assert cached == 0 and "0 computed, 8 from cache" in capsys.readouterr().err


def test_interrupted_ray_run_resumes_without_recomputing_finished_rows(ray_cluster, tmp_path):
    n = 24
    paths = make_images(tmp_path / "img", n)
    cache = EmbeddingCache(tmp_path / "cache")
    calls = []

    def progress(done, total):
        calls.append(done)
        if len(calls) == 3:  # the cached count, then two batches
            raise KeyboardInterrupt

    from core.ray_engine import embed_images_ray

    emb = fake_embedder()
    with pytest.raises(KeyboardInterrupt):
        embed_images_ray(emb, fake_embedder, paths, batch_size=3, cache=cache, progress=progress)
    kept = cache.count(emb.identity)
    assert kept == calls[-1] and 0 < kept < n  # exactly the rows the driver had received
    again = embed_images_ray(
        fake_embedder(), fake_embedder, paths, batch_size=3, workers=2, cache=EmbeddingCache(tmp_path / "cache")
    )
    assert (again.n_cached, again.n_computed) == (kept, n - kept)
    reference = embed_images(fake_embedder(), paths, batch_size=3, num_workers=0)
    np.testing.assert_allclose(again.features, reference.features, atol=1e-5, rtol=0)
    assert again.ok.all()


def test_engine_ray_without_ray_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    code = main(["embed", str(tmp_path / "no-such-folder"), "--engine", "ray", "--out", str(tmp_path / "f.npz")])
    err = capsys.readouterr().err
    assert code == 2
    assert "pip install 'coreset-studio[ray]'" in err
    assert "no-such-folder" not in err  # it failed at once, before loading the dataset
    assert not (tmp_path / "f.npz").exists()


def test_ray_flags_need_the_ray_engine(tmp_path, capsys):
    code = main(["embed", "demo", "--workers", "2", "--out", str(tmp_path / "f.npz")])
    assert code == 2 and "--engine ray" in capsys.readouterr().err
    import ray  # noqa: F401 - a dev dependency: missing, this fails loudly

    code = main(["embed", "demo", "--engine", "ray", "--device", "cuda", "--out", str(tmp_path / "f.npz")])
    assert code == 2 and "--gpus-per-worker" in capsys.readouterr().err
    assert not (tmp_path / "f.npz").exists()
