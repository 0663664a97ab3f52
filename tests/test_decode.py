"""Decoding images to 8-bit RGB (open_rgb): every PIL mode, EXIF orientation, the same decoder
for embeddings and thumbnails, extreme aspect ratios, and the cache key's decoding version."""

from __future__ import annotations

import base64
import hashlib
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from core.datasets import images as images_module
from core.datasets import load_folder
from core.datasets.images import MAX_ASPECT_RATIO, ExtremeAspectRatioError, open_rgb

from .conftest import write_image


def rgb_array(img: Image.Image) -> np.ndarray:
    assert img.mode == "RGB"
    arr = np.asarray(img)
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
    return arr


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(np.float64), b.ravel().astype(np.float64))[0, 1])


def grey_of(arr: np.ndarray) -> np.ndarray:
    assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all()
    return arr[..., 0]


# ---------------------------------------------------------------- high bit depth


def test_16_bit_png_gradient_uses_the_full_range(tmp_path):
    src = np.tile(np.linspace(0, 65535, 256).round().astype(np.uint16), (16, 1))
    path = tmp_path / "g16.png"
    Image.fromarray(src).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I")  # PIL opens it as a 16-bit mode
    grey = grey_of(rgb_array(open_rgb(path)))
    assert grey.min() == 0 and grey.max() == 255  # not blank (a plain convert("RGB") clips to white)
    assert corr(grey, src) > 0.999
    assert np.abs(grey.astype(int) - src / 257.0).max() <= 0.5 + 1e-9  # value / 257, rounded


def test_mode_i_images_in_and_out_of_the_16_bit_range():
    ramp = np.arange(64, dtype=np.int32).reshape(8, 8)
    in_range = Image.fromarray(ramp * 1000)  # 0 .. 63,000: read as 16-bit values
    grey = grey_of(rgb_array(open_rgb(in_range)))
    assert np.abs(grey - ramp * 1000 / 257.0).max() <= 0.5 + 1e-9
    signed = Image.fromarray(ramp * 5000 - 100_000)  # negative and above 65535: min-max scaled
    grey = grey_of(rgb_array(open_rgb(signed)))
    assert grey.min() == 0 and grey.max() == 255 and corr(grey, ramp) > 0.999


def test_float_tiff_in_0_1_is_scaled_by_255(tmp_path):
    src = np.tile(np.linspace(0.0, 1.0, 128, dtype=np.float32), (8, 1))
    path = tmp_path / "f.tif"
    Image.fromarray(src, mode="F").save(path)
    with Image.open(path) as im:
        assert im.mode == "F"
    grey = grey_of(rgb_array(open_rgb(path)))
    assert np.abs(grey - src * 255.0).max() <= 0.5 + 1e-4
    assert grey.min() == 0 and grey.max() == 255


def test_float_tiff_outside_0_1_is_min_max_scaled(tmp_path):
    src = np.tile(np.linspace(-50.0, 1000.0, 128, dtype=np.float32), (8, 1))
    src[0, 0] = np.nan
    path = tmp_path / "f.tif"
    Image.fromarray(src, mode="F").save(path)
    grey = grey_of(rgb_array(open_rgb(path)))
    assert grey[1].min() == 0 and grey[1].max() == 255
    assert corr(grey[1:], src[1:]) > 0.999
    assert grey[0, 0] == 0  # NaN reads as the minimum


# ---------------------------------------------------------------- colour modes and alpha


def test_cmyk_decodes_to_rgb(tmp_path):
    path = tmp_path / "c.tif"
    img = Image.new("CMYK", (6, 4), (255, 0, 0, 0))  # cyan
    img.paste((0, 0, 0, 255), (3, 0, 6, 4))  # black on the right
    img.save(path)
    arr = rgb_array(open_rgb(path))
    assert (arr[:, :3] == (0, 255, 255)).all() and (arr[:, 3:] == (0, 0, 0)).all()


def test_palette_with_a_transparent_index_is_composited_on_white(tmp_path):
    path = tmp_path / "p.png"
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
    img.paste(1, (0, 0, 2, 4))  # left half red, right half index 0 (black, transparent)
    img.save(path, transparency=0)
    arr = rgb_array(open_rgb(path))
    assert (arr[:, :2] == (255, 0, 0)).all()
    assert (arr[:, 2:] == (255, 255, 255)).all()  # convert("RGB") would give black


@pytest.mark.parametrize("mode", ["LA", "RGBA"])
def test_alpha_images_are_composited_on_white(tmp_path, mode):
    black = (0, 0) if mode == "LA" else (0, 0, 0, 0)
    img = Image.new(mode, (6, 2), black)  # black, fully transparent
    img.paste((0, 255) if mode == "LA" else (0, 0, 0, 255), (0, 0, 2, 2))  # opaque black
    img.paste((0, 128) if mode == "LA" else (0, 0, 0, 128), (2, 0, 4, 2))  # half transparent black
    path = tmp_path / "a.png"
    img.save(path)
    arr = rgb_array(open_rgb(path))
    assert (arr[:, :2] == 0).all()
    assert (np.abs(arr[:, 2:4].astype(int) - 127) <= 1).all()
    assert (arr[:, 4:] == 255).all()


@pytest.mark.parametrize("mode", ["L", "1", "RGB"])
def test_plain_modes_still_decode(tmp_path, mode):
    path = write_image(tmp_path / "x.png", seed=3, mode="L" if mode != "RGB" else "RGB")
    with Image.open(path) as im:
        expected = np.asarray(im.convert(mode).convert("RGB"))
    source = Image.open(path).convert(mode)
    assert (rgb_array(open_rgb(source)) == expected).all()


# ---------------------------------------------------------------- EXIF orientation


def oriented_png(path, orientation: int = 6) -> np.ndarray:
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :10] = (255, 0, 0)  # a red band on the left
    arr[:5, :, 1] = 200  # a green band at the top
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(arr).save(path, exif=exif)
    return arr


def test_exif_orientation_6_is_applied(tmp_path):
    arr = oriented_png(tmp_path / "o.png", 6)
    out = rgb_array(open_rgb(tmp_path / "o.png"))
    assert out.shape == (40, 20, 3)
    assert (out == np.rot90(arr, k=-1)).all()  # orientation 6: rotate 90 degrees clockwise to view


def test_thumbnails_decode_like_embeddings(tmp_path):
    """Thumbnails go through open_rgb: a 16-bit image is not blank, EXIF orientation is applied,
    and the pixels are open_rgb's."""
    from core.export.html import thumbnail_data_uri

    def thumb(path, **kw) -> np.ndarray:
        uri = thumbnail_data_uri(str(path), 64, "png", **kw)
        assert uri is not None
        with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as im:
            return np.asarray(im.convert("RGB"))

    src = np.tile(np.linspace(0, 65535, 32).round().astype(np.uint16), (8, 1))
    Image.fromarray(src).save(tmp_path / "g16.png")
    t = thumb(tmp_path / "g16.png")
    assert corr(t[..., 0], src) > 0.99 and t.min() == 0 and t.max() == 255

    arr = oriented_png(tmp_path / "o.png", 6)
    t = thumb(tmp_path / "o.png")
    assert t.shape == (40, 20, 3) and (t == np.rot90(arr, k=-1)).all()
    assert thumb(tmp_path / "o.png", square=True).shape == (20, 20, 3)


def test_the_embedding_loader_decodes_with_open_rgb(tmp_path):
    from core.extract import _ImageFiles

    src = np.tile(np.linspace(0, 65535, 48).round().astype(np.uint16), (8, 1))
    Image.fromarray(src).save(tmp_path / "g16.png")
    oriented_png(tmp_path / "o.png", 6)

    def to_tensor(img):
        return torch.from_numpy(np.array(img)).permute(2, 0, 1)

    files = _ImageFiles([str(tmp_path / "g16.png"), str(tmp_path / "o.png")], to_tensor)
    for i, name in enumerate(("g16.png", "o.png")):
        j, x, reason = files[i]
        assert reason is None and j == i
        assert (x.permute(1, 2, 0).numpy() == rgb_array(open_rgb(tmp_path / name))).all()
    _, x, _ = files[0]
    assert x.min() == 0 and x.max() == 255  # not the blank white a plain convert gives
    _, x, _ = files[1]
    assert tuple(x.shape) == (3, 40, 20)  # rotated


# ---------------------------------------------------------------- extreme aspect ratios


def test_extreme_aspect_ratio_is_refused_when_loading_and_decoding(tmp_path):
    root = tmp_path / "r"
    for i in range(2):
        write_image(root / "a" / f"{i}.png", seed=i)
    write_image(root / "a" / "edge.png", seed=5, size=(2 * MAX_ASPECT_RATIO, 2))  # exactly the limit: kept
    write_image(root / "a" / "wide.png", seed=6, size=(4000, 1))
    write_image(root / "a" / "tall.png", seed=7, size=(2, 2 * MAX_ASPECT_RATIO + 2), mode="L")
    ds = load_folder(root)
    refused = {p.location.rsplit("/", 1)[-1]: p for p in ds.problems if p.kind == "extreme_aspect_ratio"}
    assert sorted(refused) == ["tall.png", "wide.png"]
    assert all(p.severity == "skipped" for p in refused.values())
    assert "4000 x 1" in refused["wide.png"].reason
    assert sorted(p.rsplit("/", 1)[-1] for p in ds.paths) == ["0.png", "1.png", "edge.png"]
    with pytest.raises(ExtremeAspectRatioError, match="wide.png"):
        open_rgb(root / "a" / "wide.png")


def test_embedding_an_extreme_image_is_a_reported_problem_not_a_huge_resize(tmp_path):
    from core.extract import _ImageFiles

    calls = []
    write_image(tmp_path / "wide.png", seed=1, size=(4000, 1))
    _, x, reason = _ImageFiles([str(tmp_path / "wide.png")], lambda img: calls.append(img.size))[0]
    assert x is None and calls == []  # the transform (the resize) never ran
    assert "ExtremeAspectRatioError" in reason and "4000 x 1" in reason


# ---------------------------------------------------------------- the cache key


def test_embedder_identity_carries_the_decoding_version(monkeypatch):
    from core.embedders.base import IDENTITY_VERSION, _jsonable, make_identity

    args = ("effnet-lite0", "sha256:abc", {"input_size": (3, 224, 224), "mean": (0.5, 0.5, 0.5)}, "pooled")
    now = make_identity(*args)
    # the identity before the decoding version was part of it (same payload without "decode")
    old_payload = json.dumps(
        {
            "v": IDENTITY_VERSION,
            "name": args[0],
            "weights": args[1],
            "preprocess": _jsonable(args[2]),
            "output": args[3],
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    assert now != hashlib.sha256(old_payload.encode()).hexdigest()
    monkeypatch.setattr(images_module, "DECODE_VERSION", images_module.DECODE_VERSION + 1)
    assert make_identity(*args) != now
    monkeypatch.undo()
    assert make_identity(*args) == now
