"""Copy or link the kept images into a folder-per-class tree; originals are never touched.

``dest/<class>/<file name>`` for every kept image. Class names are made safe for a folder
name (path separators and leading dots replaced). Two kept files with the same name in
one class get ``name_1.ext``, ``name_2.ext``, ... Each file is written atomically
(copied to a temporary name, or a temporary symlink made, then renamed over the target;
a rename replaces an old link itself, never the file it points to). The source files are
only read: a destination that contains any source image is refused.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath

import numpy as np
import pandas as pd

from ..errors import CoresetError
from ..text import display_text
from ..workspace import atomic_write_with, make_output_dir
from .tables import csv_text


def safe_name(label: str) -> str:
    """A folder name for a class label (no separators, no leading dot, not empty)."""
    name = re.sub(r"[\\/\x00-\x1f:*?\"<>|]", "_", str(label)).strip()
    name = re.sub(r"^\.+", "_", name)
    return name or "_"


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def export_subset_folder(
    paths: Sequence[str] | np.ndarray,
    labels: Sequence[str] | np.ndarray,
    dest: str | os.PathLike,
    *,
    link: bool = False,
) -> list[tuple[str, str]]:
    """Copy (or symlink, ``link=True``) ``paths`` into ``dest/<label>/``.

    Returns ``[(source, target), ...]`` in input order. Raises :class:`CoresetError` when
    ``dest`` contains a source image or a source is missing.
    """
    dest = Path(dest).expanduser().resolve()
    sources = [Path(p).resolve() for p in paths]
    for src in sources:
        if _is_within(src, dest):
            raise CoresetError(
                f"The subset folder {dest} contains the source image {src}; choose a folder outside "
                "the dataset (originals are never moved or changed)."
            )
        if not src.is_file():
            raise CoresetError(f"Cannot export {src}: the file does not exist.")
    out: list[tuple[str, str]] = []
    for src, rel in zip(sources, subset_layout([str(p) for p in sources], labels)):
        target = dest / rel
        folder = make_output_dir(target.parent)
        if link:
            tmp = folder / f".{target.name}.link.tmp"
            if tmp.exists() or tmp.is_symlink():
                tmp.unlink()
            os.symlink(src, tmp)
            os.replace(tmp, target)
        else:
            with src.open("rb") as fh:
                atomic_write_with(target, lambda out_fh: shutil.copyfileobj(fh, out_fh))
        out.append((str(src), str(target)))
    return out


def subset_layout(paths: Sequence[str], labels: Sequence[str] | np.ndarray) -> list[str]:
    """Relative target names ``<safe class>/<file name>`` for ``paths`` (module docstring rules:
    a name taken twice in one class becomes ``name_1.ext``, ``name_2.ext``, ...)."""
    used: set[str] = set()
    out: list[str] = []
    for path, label in zip(paths, labels):
        folder = safe_name(label)
        name = PurePath(str(path)).name
        stem, suffix = PurePath(name).stem, PurePath(name).suffix
        target = f"{folder}/{name}"
        k = 0
        while target in used:
            k += 1
            target = f"{folder}/{stem}_{k}{suffix}"
        used.add(target)
        out.append(target)
    return out


def subset_zip_bytes(paths: Sequence[str], labels: Sequence[str], extra: Mapping[str, bytes] | None = None) -> bytes:
    """A zip of the kept images in a folder per class (:func:`subset_layout`), plus
    ``manifest.csv`` (``path,label`` relative to the zip's top folder, so the unpacked folder
    loads as a dataset; formula-like cells escaped as ``'=x``, which the manifest loader reads
    back as ``=x``) and the ``extra`` files (name -> bytes, e.g. ``subset.csv``).

    Images are stored as they are (no recompression); a file that cannot be read is left out
    and listed in ``MISSING.txt`` with the reason. The sources are only read.
    """
    buf = io.BytesIO()
    rows, missing = [], []
    with zipfile.ZipFile(buf, "w") as zf:
        for path, label, rel in zip(paths, labels, subset_layout(paths, labels)):
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                missing.append(f"{path}\t{type(exc).__name__}: {exc.strerror or exc}")
                continue
            rel = display_text(rel)  # a zip entry name must be valid UTF-8
            zf.writestr(zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0)), data, zipfile.ZIP_STORED)
            rows.append({"path": rel, "label": display_text(str(label))})
        manifest = pd.DataFrame(rows, columns=["path", "label"])
        # formula-like cells are escaped ('=x) like every CSV of the project; the manifest loader
        # reads '=x back as =x (core.text.unescape_csv_cell), so the unpacked folder still loads
        zf.writestr("manifest.csv", csv_text(manifest), zipfile.ZIP_DEFLATED)
        for name, data in (extra or {}).items():
            zf.writestr(name, data, zipfile.ZIP_DEFLATED)
        if missing:
            zf.writestr("MISSING.txt", "\n".join(missing) + "\n", zipfile.ZIP_DEFLATED)
    return buf.getvalue()


__all__ = ["export_subset_folder", "safe_name", "subset_layout", "subset_zip_bytes"]
