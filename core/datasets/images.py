"""Image files: checking them (content hash, format, size limits, full decode) and decoding
them to 8-bit RGB (:func:`open_rgb`, the one decoder of embeddings and thumbnails)."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..hashing import file_digest

# Extensions the folder loader considers images; anything else in a class folder is
# reported as a non-image file. Manifests may name any file: its content decides.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)

Progress = Callable[[int, int], None]

#: Version of :func:`open_rgb`'s decoding. It is part of every embedder identity, i.e. of the
#: embedding-cache key: bump it whenever the pixels open_rgb returns change for some image,
#: so features cached from the old decoding are not reused. v1: ``Image.convert("RGB")``;
#: v2: 16-bit/float scaling, alpha on white, EXIF orientation.
DECODE_VERSION = 2

#: Images whose long side is more than this many times the short side are refused
#: (``extreme_aspect_ratio``): resizing the short side to a model's 224-256 px would make the
#: long side, and the memory, explode (4000 x 1 px -> 1,024,000 x 256 px, ~0.8 GB).
MAX_ASPECT_RATIO = 50

_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_ORIENTATION = 0x0112  # the EXIF Orientation tag


def aspect_ratio_reason(size: tuple[int, int]) -> str | None:
    """Why an image of ``size`` (width, height) is refused for its shape, or None."""
    width, height = size
    if min(width, height) <= 0 or max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        return (
            f"{width} x {height} pixels: the long side is more than {MAX_ASPECT_RATIO} times the short side, "
            "too elongated to resize for a model (it would take gigabytes); crop or split the image"
        )
    return None


class ExtremeAspectRatioError(ValueError):
    """Raised by :func:`open_rgb` for an image refused by :func:`aspect_ratio_reason`."""


def _scaled_to_uint8(im: Image.Image) -> Image.Image:
    """An ``I;16*``, ``I`` or ``F`` image as 8-bit ``L`` (see :func:`open_rgb`)."""
    arr = np.asarray(im)
    if im.mode.startswith("I;16") or (im.mode == "I" and arr.size and arr.min() >= 0 and arr.max() <= 65535):
        out = np.rint(arr.astype(np.float64) / 257.0)
    else:
        arr = arr.astype(np.float64)
        finite = np.isfinite(arr)
        if not finite.any():
            return Image.new("L", im.size, 0)
        lo, hi = float(arr[finite].min()), float(arr[finite].max())
        arr = np.nan_to_num(arr, nan=lo, posinf=hi, neginf=lo)
        if im.mode == "F" and lo >= 0.0 and hi <= 1.0:
            out = np.rint(arr * 255.0)
        elif hi > lo:
            out = np.rint((arr - lo) * (255.0 / (hi - lo)))
        else:
            out = np.zeros_like(arr)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), mode="L")


def open_rgb(source: str | os.PathLike | Image.Image, *, draft: tuple[int, int] | None = None) -> Image.Image:
    """Decode an image to an 8-bit RGB :class:`PIL.Image.Image`, upright; the one decoder of
    the project (embeddings, fine-tuning, thumbnails).

    ``source`` is a path or an image already opened with :func:`PIL.Image.open` (then it is
    converted, not closed). ``draft=(w, h)``: JPEGs are decoded at a reduced scale that is
    still at least that size (faster thumbnails).

    Conversion by mode:

    * ``I;16`` (16-bit PNG/TIFF): ``round(value / 257)``, the full 16-bit range onto 0..255;
      ``I`` (32-bit integer) the same when its values lie within 0..65535, else min-max
      scaled onto 0..255;
    * ``F`` (float TIFF): ``round(value * 255)`` when all values lie within [0, 1], else
      min-max scaled onto 0..255 (NaN as the minimum, infinities clipped; a constant image is
      black); the grey result is copied into R, G and B;
    * alpha (``RGBA``, ``LA``, ``PA``, or a ``transparency`` colour, e.g. a palette image with
      a transparent index): composited onto white;
    * ``P``, ``CMYK``, ``L``, ``1``, ``YCbCr``, ...: PIL's own conversion to RGB.

    The EXIF orientation is applied (:func:`PIL.ImageOps.exif_transpose`). An image whose
    long side is more than :data:`MAX_ASPECT_RATIO` times its short side raises
    :class:`ExtremeAspectRatioError` before it is decoded. Other failures raise what PIL
    raises (``OSError``, ...). Changing any of this must bump :data:`DECODE_VERSION`.
    """
    if not isinstance(source, Image.Image):
        with Image.open(source) as im:
            return open_rgb(im, draft=draft)
    im = source
    reason = aspect_ratio_reason(im.size)
    if reason:
        raise ExtremeAspectRatioError(f"{getattr(im, 'filename', '') or 'image'}: {reason}")
    if draft is not None and im.format == "JPEG":
        im.draft("RGB", draft)
    im.load()
    try:
        orientation = im.getexif().get(_ORIENTATION, 1)
        if orientation in range(2, 9):  # 1 (or none): already upright, no copy needed
            im = ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - damaged EXIF: keep the pixels as stored
        pass
    mode = im.mode
    if mode.startswith("I") or mode == "F":
        return _scaled_to_uint8(im).convert("RGB")
    if mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode == "RGB":
        return im.copy() if im is source else im
    return im.convert("RGB")


@dataclass(frozen=True)
class ImageCheck:
    """Result of :func:`inspect_image`: ``kind`` is None for a usable image."""

    path: str
    file_id: str = ""
    size: tuple[int, int] = (0, 0)
    kind: str | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.kind is None


#: Digest size of the content hash (bytes); hex identities are twice as long.
FILE_ID_DIGEST_BYTES = 20


def file_identity_bytes(data: bytes) -> str:
    """Content hash of a file's bytes: BLAKE2b-160, hex (40 characters).

    This is the one file identity of the project: dataset fingerprints and the embedding
    cache both key on it, so the same bytes hit the cache wherever the file lives.
    """
    return hashlib.blake2b(data, digest_size=FILE_ID_DIGEST_BYTES).hexdigest()


def file_identity(path: str | os.PathLike) -> str:
    """:func:`file_identity_bytes` of a file, read in 1 MiB blocks; OSError if unreadable."""
    return file_digest(path, "blake2b", digest_size=FILE_ID_DIGEST_BYTES)


def inspect_image(path: str | os.PathLike) -> ImageCheck:
    """Read ``path`` once: hash it, identify it, check the pixel limit, decode it fully.

    Kinds of failure: ``missing_file``, ``unreadable_file`` (I/O error), ``empty_file``,
    ``not_an_image``, ``image_too_large`` (width x height above ``PIL.Image.MAX_IMAGE_PIXELS``),
    ``extreme_aspect_ratio`` (long side above :data:`MAX_ASPECT_RATIO` times the short side),
    ``truncated_image`` and ``corrupt_image`` (decoding failed). JPEGs are decoded in
    draft mode (DCT scaling to about 64 px), which still reads every byte of the scan, so a
    truncated file is caught at a fraction of the cost of a full decode.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return ImageCheck(path, kind="missing_file", reason="file does not exist; fix the path or restore the file")
    except IsADirectoryError:
        return ImageCheck(path, kind="not_an_image", reason="is a folder, not an image file")
    except OSError as exc:
        return ImageCheck(
            path, kind="unreadable_file", reason=f"cannot be read ({exc.strerror or exc}); check its permissions"
        )
    if not data:
        return ImageCheck(path, kind="empty_file", reason="file is empty (0 bytes); remove or replace it")
    file_id = file_identity_bytes(data)
    limit = Image.MAX_IMAGE_PIXELS
    width = height = 0
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if limit is not None and width * height > limit:
                return ImageCheck(
                    path,
                    file_id,
                    (width, height),
                    "image_too_large",
                    f"{width} x {height} pixels is above the limit of {limit:,} pixels (PIL.Image.MAX_IMAGE_PIXELS); "
                    "downscale the image",
                )
            shape = aspect_ratio_reason((width, height))
            if shape:
                return ImageCheck(path, file_id, (width, height), "extreme_aspect_ratio", shape)
            if img.format == "JPEG":
                img.draft("RGB", (64, 64))
            img.load()
    except UnidentifiedImageError:
        return ImageCheck(
            path,
            file_id,
            kind="not_an_image",
            reason="not an image file PIL can read; remove it or convert it to JPEG/PNG",
        )
    except Image.DecompressionBombError as exc:
        return ImageCheck(path, file_id, kind="image_too_large", reason=f"{exc}; downscale the image")
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        text = str(exc)
        if "truncated" in text.lower() or isinstance(exc, EOFError):
            return ImageCheck(
                path,
                file_id,
                (width, height),
                "truncated_image",
                f"image data is truncated ({text}); re-copy or re-export the file",
            )
        return ImageCheck(
            path, file_id, (width, height), "corrupt_image", f"image cannot be decoded ({text}); re-export the file"
        )
    return ImageCheck(path, file_id, (width, height))


def inspect_images(
    paths: Sequence[str], *, progress: Progress | None = None, max_workers: int | None = None
) -> list[ImageCheck]:
    """:func:`inspect_image` over many paths in a thread pool (decoders release the GIL).

    Results come back in the order of ``paths``; ``progress(done, total)`` is called as
    files finish.
    """
    total = len(paths)
    if progress:
        progress(0, total)
    if total == 0:
        return []
    workers = max_workers or min(8, (os.cpu_count() or 1) * 2)
    results: list[ImageCheck] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, check in enumerate(pool.map(inspect_image, paths, chunksize=16), start=1):
            results.append(check)
            if progress and (i == total or i % 64 == 0):
                progress(i, total)
    return results
