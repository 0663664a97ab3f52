"""Fashion-MNIST (Zalando, MIT) from its idx files, written out as image files.

The Debian package ``dataset-fashion-mnist`` installs the four ``*-idx*-ubyte.gz`` files
under ``/usr/share/datasets/fashion-mnist``. :func:`export_image_folder` turns a
stratified, seeded sample of them into a folder-per-class tree of 28 x 28 greyscale PNGs
(``<dest>/<split>/<class>/<split>_<index>.png``), the layout the folder loader reads. The
shipped demo dataset (``assets/demo/fashion-mnist``) and the quality benchmark are both
made this way.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import CoresetError

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES = ("t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot")
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (optionally gzipped) into a uint8 array of its stated shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise CoresetError(f"{path} is not an idx file (bad magic number).")
    dtype_code, ndim = data[2], data[3]
    if dtype_code != 0x08:
        raise CoresetError(f"{path}: only unsigned-byte idx files are supported (type code {dtype_code:#x}).")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise CoresetError(f"{path} is truncated: expected {int(np.prod(shape))} values, found {arr.size}.")
    return arr.reshape(shape)


def load_split(split: str, source: str | os.PathLike = DEBIAN_DIR) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images [N, 28, 28] uint8, labels [N] uint8)`` of the ``train`` or ``test`` split."""
    source = Path(source)
    images_name, labels_name = _FILES[split]
    if not (source / images_name).is_file():
        raise CoresetError(
            f"Fashion-MNIST files not found in {source}; install them with "
            "`apt-get install dataset-fashion-mnist` or pass the folder holding the idx files."
        )
    return read_idx(source / images_name), read_idx(source / labels_name)


def stratified_sample(labels: np.ndarray, per_class: int | None, seed: int) -> np.ndarray:
    """Sorted indices of ``per_class`` random items of every class (all when None)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if per_class is not None and per_class < len(idx):
            idx = rng.choice(idx, size=per_class, replace=False)
        chosen.append(idx)
    return np.sort(np.concatenate(chosen))


def export_image_folder(
    dest: str | os.PathLike,
    *,
    train_per_class: int | None,
    test_per_class: int | None,
    seed: int = 0,
    source: str | os.PathLike = DEBIAN_DIR,
) -> Path:
    """Write a stratified sample of Fashion-MNIST as ``dest/<split>/<class>/*.png``.

    ``*_per_class=None`` keeps the whole split. The file names carry the index in the
    original idx file, so the export is reproducible and traceable.
    """
    dest = Path(dest)
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        images, labels = load_split(split, source)
        for i in stratified_sample(labels, per_class, seed):
            folder = dest / split / CLASS_NAMES[labels[i]]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i], mode="L").save(folder / f"{split}_{i:05d}.png", optimize=True)
    return dest
