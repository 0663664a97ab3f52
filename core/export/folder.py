"""Copy or link the kept images into a folder-per-class tree; originals are never touched.

``dest/<class>/<file name>`` for every kept image. Class names are made safe for a folder
name (path separators and leading dots replaced). Two kept files with the same name in
one class get ``name_1.ext``, ``name_2.ext``, ... Each file is written atomically
(copied to a temporary name, or a temporary symlink made, then renamed over the target;
a rename replaces an old link itself, never the file it points to). The source files are
only read: a destination that contains any source image is refused.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Sequence

from ..errors import CoresetError
from ..workspace import atomic_write_with


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


def export_subset_folder(paths: Sequence[str], labels: Sequence[str], dest: str | os.PathLike, *,
                         link: bool = False) -> list[tuple[str, str]]:
    """Copy (or symlink, ``link=True``) ``paths`` into ``dest/<label>/``.

    Returns ``[(source, target), ...]`` in input order. Raises :class:`CoresetError` when
    ``dest`` contains a source image or a source is missing.
    """
    dest = Path(dest).expanduser().resolve()
    sources = [Path(p).resolve() for p in paths]
    for src in sources:
        if _is_within(src, dest):
            raise CoresetError(f"The subset folder {dest} contains the source image {src}; choose a folder outside "
                               "the dataset (originals are never moved or changed).")
        if not src.is_file():
            raise CoresetError(f"Cannot export {src}: the file does not exist.")
    used: set[Path] = set()
    out: list[tuple[str, str]] = []
    for src, label in zip(sources, labels):
        folder = dest / safe_name(label)
        stem, suffix = src.stem, src.suffix
        target = folder / src.name
        k = 0
        while target in used:
            k += 1
            target = folder / f"{stem}_{k}{suffix}"
        used.add(target)
        folder.mkdir(parents=True, exist_ok=True)
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


__all__ = ["export_subset_folder", "safe_name"]
