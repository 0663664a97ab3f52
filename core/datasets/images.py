"""Checking image files: content hash, format, size limit, full decode."""

from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

from PIL import Image, UnidentifiedImageError

# Extensions the folder loader considers images; anything else in a class folder is
# reported as a non-image file. Manifests may name any file: its content decides.
IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm",
})

Progress = Callable[[int, int], None]


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
    h = hashlib.blake2b(digest_size=FILE_ID_DIGEST_BYTES)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def inspect_image(path: str | os.PathLike) -> ImageCheck:
    """Read ``path`` once: hash it, identify it, check the pixel limit, decode it fully.

    Kinds of failure: ``missing_file``, ``unreadable_file`` (I/O error), ``empty_file``,
    ``not_an_image``, ``image_too_large`` (width x height above ``PIL.Image.MAX_IMAGE_PIXELS``),
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
        return ImageCheck(path, kind="unreadable_file", reason=f"cannot be read ({exc.strerror or exc}); check its permissions")
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
                    path, file_id, (width, height), "image_too_large",
                    f"{width} x {height} pixels is above the limit of {limit:,} pixels (PIL.Image.MAX_IMAGE_PIXELS); "
                    "downscale the image",
                )
            if img.format == "JPEG":
                img.draft("RGB", (64, 64))
            img.load()
    except UnidentifiedImageError:
        return ImageCheck(path, file_id, kind="not_an_image",
                          reason="not an image file PIL can read; remove it or convert it to JPEG/PNG")
    except Image.DecompressionBombError as exc:
        return ImageCheck(path, file_id, kind="image_too_large", reason=f"{exc}; downscale the image")
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        text = str(exc)
        if "truncated" in text.lower() or isinstance(exc, EOFError):
            return ImageCheck(path, file_id, (width, height), "truncated_image",
                              f"image data is truncated ({text}); re-copy or re-export the file")
        return ImageCheck(path, file_id, (width, height), "corrupt_image",
                          f"image cannot be decoded ({text}); re-export the file")
    return ImageCheck(path, file_id, (width, height))


def inspect_images(paths: Sequence[str], *, progress: Progress | None = None,
                   max_workers: int | None = None) -> list[ImageCheck]:
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
