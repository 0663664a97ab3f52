"""Datasets: load a labelled image dataset from a folder, a manifest, a zip or the demo.

Every loader returns a :class:`Dataset` (usable images with labels, splits and content
hashes, plus a fingerprint) and never crashes on a bad file: each problem becomes a row of
``dataset.problems``. Only a dataset with nothing usable raises :class:`DatasetError`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import DatasetError
from .archive import DEFAULT_MAX_BYTES, extract_archive, load_archive
from .folder import load_folder
from .images import IMAGE_EXTENSIONS, ImageCheck, file_identity, file_identity_bytes, inspect_image, inspect_images
from .manifest import MANIFEST_SUFFIXES, find_manifest, load_manifest
from .model import SKIPPED, SPLITS, WARNING, Dataset, Problem, compute_fingerprint
from .roots import OUTSIDE_KIND, RootGuard, make_guard, refuse_source

DEMO_NAME = "demo"


def demo_root() -> Path:
    """Folder of the built-in demo dataset (a Fashion-MNIST subset shipped in ``assets/``)."""
    root = Path(__file__).resolve().parents[2] / "assets" / "demo" / "fashion-mnist"
    if not root.is_dir():
        raise DatasetError(
            f"The demo dataset is not at {root}; run from a checkout of the repository "
            "(the images ship in assets/demo/)."
        )
    return root


def load_demo(*, progress=None) -> Dataset:
    """The built-in demo: Fashion-MNIST, 10 classes x (100 train + 20 test) 28 x 28 PNGs."""
    return load_folder(demo_root(), name=DEMO_NAME, source="demo", progress=progress)


def load_dataset(
    source: str | os.PathLike,
    *,
    workspace: str | os.PathLike | None = None,
    max_archive_bytes: int = DEFAULT_MAX_BYTES,
    progress=None,
    allowed_roots: Sequence[str | os.PathLike] | None = None,
) -> Dataset:
    """Load ``source``: ``"demo"``, a folder, a ``.csv``/``.parquet`` manifest or a ``.zip``.

    A folder with a ``manifest.csv`` (or ``manifest.parquet``) at its top is read through
    that manifest; any other folder as a folder-per-class tree.

    ``progress(done, total)`` is called while images are checked.

    ``allowed_roots``: None (the default, as the CLI uses it) reads whatever ``source`` and
    its manifest name. Given a list of folders, ``source`` must lie inside one of them and so
    must every image path read (folder entries, manifest rows, links, resolved with
    :func:`os.path.realpath`); a zip's contents are confined to its own extraction folder. A
    path outside is refused before it is looked at: one ``outside_allowed_roots`` problem
    row, with the same reason whether or not the file exists (:mod:`core.datasets.roots`).
    """
    if str(source) == DEMO_NAME:
        return load_demo(progress=progress)
    path = Path(source).expanduser()
    guard = make_guard(allowed_roots)
    refuse_source(guard, path, "dataset path")
    if not path.exists():
        raise DatasetError(f"{path} does not exist; give a folder, a .csv/.parquet manifest, a .zip or 'demo'.")
    if path.is_dir():
        manifest = find_manifest(path, allowed_roots=guard)
        if manifest is not None:
            return load_manifest(manifest, name=path.name, progress=progress, allowed_roots=guard)
        return load_folder(path, progress=progress, allowed_roots=guard)
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return load_archive(
            path, workspace=workspace, max_bytes=max_archive_bytes, progress=progress, allowed_roots=guard
        )
    if suffix in MANIFEST_SUFFIXES:
        return load_manifest(path, progress=progress, allowed_roots=guard)
    raise DatasetError(
        f"{path} is neither a folder, a manifest (.csv, .parquet) nor a zip archive; give one of those or 'demo'."
    )


__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEMO_NAME",
    "Dataset",
    "DatasetError",
    "IMAGE_EXTENSIONS",
    "ImageCheck",
    "MANIFEST_SUFFIXES",
    "OUTSIDE_KIND",
    "Problem",
    "RootGuard",
    "SKIPPED",
    "SPLITS",
    "WARNING",
    "compute_fingerprint",
    "demo_root",
    "extract_archive",
    "file_identity",
    "file_identity_bytes",
    "find_manifest",
    "inspect_image",
    "inspect_images",
    "load_archive",
    "load_dataset",
    "load_demo",
    "load_folder",
    "load_manifest",
]
