"""The dataset object every loader returns, and the problem report."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..text import display_text

# Splits a dataset row may have. Manifests may also write "val", "valid" or "validation"
# (all read as "val"); an empty split cell means "train".
SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {
    "": "train",
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}

# Problem kinds. "skipped" problems drop the file/row; "warning" problems keep it.
SKIPPED = "skipped"
WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    """One row of the problem report.

    Attributes:
        location: the file path, or ``<manifest> line <n>`` for a manifest row.
        kind: short machine-readable kind, e.g. ``missing_file``, ``truncated_image``.
        reason: what is wrong and what to do, for a person.
        severity: ``skipped`` (the file or row was left out) or ``warning`` (kept).
    """

    location: str
    kind: str
    reason: str
    severity: str = SKIPPED

    def __post_init__(self) -> None:
        # A name that is not valid UTF-8 (a surrogate-escaped byte) is shown as \xNN, so the
        # report can be printed and written to CSV (see core.text).
        for attr in ("location", "reason"):
            object.__setattr__(self, attr, display_text(getattr(self, attr)))


@dataclass
class Dataset:
    """A labelled image dataset with every usable image and a report of the rest.

    Attributes:
        name: a short display name (folder, manifest or archive name, or ``demo``).
        root: the folder paths are relative to (the folder, the manifest's folder, or the
            extraction folder of an archive).
        source: ``folder``, ``manifest``, ``zip`` or ``demo``.
        paths: absolute paths of the usable images, in a stable order (sorted by split,
            class, then path for folders; manifest order for manifests).
        labels: string class label of each image (a folder name that is not valid UTF-8
            shows its undecodable bytes as ``\\xNN``, see :func:`core.text.display_text`).
        splits: ``train``, ``val`` or ``test`` for each image.
        file_ids: content hash (BLAKE2b-160, hex) of each file; the embedding cache key.
        image_sizes: ``(width, height)`` in pixels of each image.
        problems: the problem report (see :class:`Problem`).
        fingerprint: SHA-256 over (relative path, label, split, content hash) of every
            usable image and over the problem rows: it changes when any file is added,
            removed or changed.
    """

    name: str
    root: Path
    source: str
    paths: list[str]
    labels: list[str]
    splits: list[str]
    file_ids: list[str]
    image_sizes: list[tuple[int, int]]
    problems: list[Problem] = field(default_factory=list)
    fingerprint: str = ""

    def __post_init__(self) -> None:
        n = len(self.paths)
        self.name = display_text(self.name)
        self.labels = [display_text(label) for label in self.labels]
        for attr in ("labels", "splits", "file_ids", "image_sizes"):
            if len(getattr(self, attr)) != n:
                raise ValueError(f"Dataset.{attr} has {len(getattr(self, attr))} items, paths has {n}.")
        if not self.fingerprint:
            self.fingerprint = compute_fingerprint(self)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def class_names(self) -> list[str]:
        """Sorted unique class labels; ``codes`` index into this list."""
        return sorted(set(self.labels))

    @property
    def codes(self) -> np.ndarray:
        """Integer class code (int64) of each image: its label's index in ``class_names``."""
        lookup = {name: i for i, name in enumerate(self.class_names)}
        return np.fromiter((lookup[label] for label in self.labels), dtype=np.int64, count=len(self.labels))

    def relative_paths(self) -> list[str]:
        """Paths relative to ``root`` where possible (POSIX separators), else absolute."""
        out = []
        for p in self.paths:
            try:
                out.append(Path(p).relative_to(self.root).as_posix())
            except ValueError:
                out.append(Path(p).as_posix())
        return out

    def split_indices(self, split: str) -> np.ndarray:
        """Indices of the images in ``split`` (``train``, ``val`` or ``test``)."""
        return np.flatnonzero(np.asarray(self.splits) == split)

    def to_frame(self) -> pd.DataFrame:
        """One row per usable image: path, label, code, split, file_id, width, height."""
        sizes = np.asarray(self.image_sizes, dtype=np.int64).reshape(-1, 2)
        return pd.DataFrame(
            {
                "path": [display_text(p) for p in self.paths],
                "label": self.labels,
                "code": self.codes,
                "split": self.splits,
                "file_id": self.file_ids,
                "width": sizes[:, 0],
                "height": sizes[:, 1],
            }
        )

    def problems_frame(self) -> pd.DataFrame:
        """The problem report as a table: location, kind, severity, reason."""
        return pd.DataFrame(
            [(p.location, p.kind, p.severity, p.reason) for p in self.problems],
            columns=["location", "kind", "severity", "reason"],
        )

    def class_counts(self) -> pd.DataFrame:
        """Images per class and split (rows: classes, columns: splits present)."""
        frame = pd.DataFrame({"label": self.labels, "split": self.splits})
        table = frame.groupby(["label", "split"]).size().unstack(fill_value=0)
        return table.reindex(columns=[s for s in SPLITS if s in table.columns])

    def summary(self) -> str:
        """One line for people: images, classes, splits, problems."""
        per_split = ", ".join(f"{int((np.asarray(self.splits) == s).sum())} {s}" for s in SPLITS if s in self.splits)
        skipped = sum(p.severity == SKIPPED for p in self.problems)
        warnings = len(self.problems) - skipped
        return (
            f"{self.name}: {len(self)} images in {len(self.class_names)} classes ({per_split}); "
            f"{skipped} skipped, {warnings} warnings"
        )


def compute_fingerprint(ds: Dataset) -> str:
    """SHA-256 hex digest of the dataset's content (see :class:`Dataset`)."""
    h = hashlib.sha256()
    rows = sorted(zip(ds.relative_paths(), ds.labels, ds.splits, ds.file_ids))
    for row in rows:
        h.update("\t".join(row).encode("utf-8", "surrogateescape") + b"\n")
    h.update(b"--problems--\n")
    root = display_text(str(ds.root))  # problem locations are display text
    for p in sorted(ds.problems, key=lambda p: (p.location, p.kind)):
        h.update(f"{p.location.replace(root, '')}\t{p.kind}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()
