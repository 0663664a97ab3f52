"""The ONNX Runtime backend (core.embedders.onnx_runtime) and JPEG draft decoding (core.embedders.jpeg_draft)."""

from __future__ import annotations

import numpy as np
import onnxruntime  # noqa: F401 - a dev dependency (make test installs it): missing, fail, never skip
import pytest
from PIL import Image

from core.cli import main
from core.embedders import create_embedder
from core.extract import embed_images
from core.features import load_features


@pytest.fixture(scope="module")
def lite0(tmp_path_factory):
    return create_embedder("effnet-lite0", workspace=tmp_path_factory.mktemp("ws"))


def test_onnx_backend_gives_torch_features_and_reuses_its_export(lite0, image_tree, tmp_path, monkeypatch):
    from core.embedders import onnx_runtime

    paths = sorted(str(p) for p in image_tree.rglob("*.png"))
    ref = embed_images(lite0, paths, device="cpu", num_workers=0)
    ort = onnx_runtime.onnx_embedder(lite0, tmp_path)
    assert ort.backend == "onnxruntime" and ort.identity == lite0.identity and ort.onnx_check <= 1e-5
    # idle ORT threads sleep rather than spin (the spinning took the decoding thread's core)
    opts = ort.onnx_session.get_session_options()
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    got = embed_images(ort, paths, device="cpu", num_workers=0)
    np.testing.assert_allclose(got.features, ref.features, atol=1e-5 * max(1.0, np.abs(ref.features).max()), rtol=0)
    # the second load reuses the cached export
    monkeypatch.setattr(onnx_runtime, "export_onnx", lambda *a: pytest.fail("exported again"))
    again = onnx_runtime.onnx_embedder(lite0, tmp_path)
    assert again.onnx_file == ort.onnx_file
    # a check it cannot pass is refused, never used silently
    monkeypatch.setattr(onnx_runtime, "ORT_TOLERANCE", 0.0)
    with pytest.raises(onnx_runtime.OnnxBackendError, match="differ from torch"):
        onnx_runtime.onnx_embedder(lite0, tmp_path)


def test_cli_backend_onnx_matches_torch(image_tree, tmp_path, capsys):
    a, b = tmp_path / "torch.npz", tmp_path / "onnx.npz"
    assert main(["embed", str(image_tree), "--models", "effnet-lite0", "--no-cache", "--out", str(a)]) == 0
    assert (
        main(
            [
                "embed",
                str(image_tree),
                "--models",
                "effnet-lite0",
                "--no-cache",
                "--backend",
                "onnx",
                "--device",
                "cpu",
                "--out",
                str(b),
            ]
        )
        == 0
    )
    x, y = load_features(a).features["effnet-lite0"], load_features(b).features["effnet-lite0"]
    np.testing.assert_allclose(y, x, atol=1e-5 * max(1.0, np.abs(x).max()), rtol=0)


def _photo(path, size=(1600, 1200), seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(size[1] // 40, size[0] // 40, 3), dtype=np.uint8)
    Image.fromarray(small).resize(size, Image.BILINEAR).save(path, quality=92)  # smooth, photo-like
    return str(path)


def test_jpeg_draft_decodes_large_photos_small_with_its_own_cache_key(lite0, tmp_path):
    from core.datasets.images import open_rgb
    from core.embedders.jpeg_draft import draft_size, with_jpeg_draft

    draft = with_jpeg_draft(lite0)
    s = draft_size(lite0)
    assert s >= lite0.input_size[1] and draft.identity != lite0.identity and draft.model is lite0.model
    jpgs = [_photo(tmp_path / f"p{k}.jpg", seed=k) for k in range(3)]
    im = open_rgb(jpgs[0], draft=draft.decode_draft)
    assert min(im.size) >= s and im.size[0] < 1600  # reduced scale, still at least the resize size
    full = embed_images(lite0, jpgs, device="cpu", num_workers=0).features
    fast = embed_images(draft, jpgs, device="cpu", num_workers=0).features
    cos = (full * fast).sum(1) / np.linalg.norm(full, axis=1) / np.linalg.norm(fast, axis=1)
    assert cos.min() > 0.98 and not np.array_equal(full, fast)
    png = str(tmp_path / "p.png")
    Image.open(jpgs[0]).save(png)  # other formats decode as before
    np.testing.assert_array_equal(
        embed_images(draft, [png], device="cpu", num_workers=0).features,
        embed_images(lite0, [png], device="cpu", num_workers=0).features,
    )
