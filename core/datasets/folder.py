"""Folder-per-class datasets: ``root/<class>/*.jpg`` or ``root/<split>/<class>/*.jpg``."""

from __future__ import annotations

from pathlib import Path

from .assemble import Candidate, assemble
from .images import IMAGE_EXTENSIONS, Progress
from .model import SKIPPED, SPLIT_ALIASES, WARNING, Dataset, Problem


def _visible(path: Path) -> bool:
    return not path.name.startswith(".") and path.name not in {"__MACOSX", "Thumbs.db", "desktop.ini"}


def _split_folders(root: Path) -> dict[str, Path] | None:
    """``{split: folder}`` when ``root`` holds split folders (train/test/val), else None."""
    subdirs = [d for d in root.iterdir() if d.is_dir() and _visible(d)]
    splits = {SPLIT_ALIASES.get(d.name.lower()): d for d in subdirs if d.name.lower() in SPLIT_ALIASES and d.name}
    splits.pop(None, None)
    if "train" in splits or "test" in splits:
        return splits
    return None


def _class_candidates(folder: Path, split: str, root: Path, problems: list[Problem]) -> tuple[list[Candidate], list[str]]:
    candidates: list[Candidate] = []
    classes: list[str] = []
    for entry in sorted(folder.iterdir()):
        if not _visible(entry):
            continue
        if entry.is_symlink() and not entry.exists():
            problems.append(Problem(str(entry), "missing_file", "broken link; fix or remove it", SKIPPED))
            continue
        if entry.is_file():
            problems.append(Problem(str(entry), "outside_class_folder",
                                    f"file lies directly in {folder}, not in a class folder; move it into "
                                    f"{folder}/<class>/", SKIPPED))
            continue
        label = entry.name
        classes.append(label)
        for path in sorted(p for p in entry.rglob("*") if _visible(p) and not any(
                part.startswith(".") for part in p.relative_to(entry).parts)):
            if path.is_dir():
                continue
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                problems.append(Problem(str(path), "not_an_image",
                                        f"extension {path.suffix or '(none)'!r} is not an image type; remove the file "
                                        f"or convert it ({', '.join(sorted(IMAGE_EXTENSIONS))})", SKIPPED))
                continue
            candidates.append(Candidate(str(path), label, split, str(path)))
    return candidates, classes


def load_folder(root: str | Path, *, name: str | None = None, source: str = "folder",
                progress: Progress | None = None) -> Dataset:
    """Load a folder-per-class dataset.

    Layouts: ``root/<class>/...`` (every image is ``train``), or split folders
    ``root/train/<class>/...``, ``root/test/<class>/...`` and optionally ``root/val/...``
    (also ``valid``/``validation``). Images in sub-folders of a class folder belong to
    that class. Hidden files are ignored; other non-image files are reported.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        from ..errors import DatasetError

        raise DatasetError(f"Dataset folder {root} does not exist or is not a folder.")
    problems: list[Problem] = []
    candidates: list[Candidate] = []
    classes: list[str] = []
    splits = _split_folders(root)
    if splits:
        for split, folder in sorted(splits.items()):
            found, names = _class_candidates(folder, split, root, problems)
            candidates += found
            classes += names
        for other in sorted(d for d in root.iterdir() if _visible(d) and d not in splits.values()):
            problems.append(Problem(str(other), "unknown_split",
                                    f"{other.name!r} is not a split folder (train, val, test); it was ignored",
                                    WARNING if other.is_file() else SKIPPED))
    else:
        candidates, classes = _class_candidates(root, "train", root, problems)
    return assemble(name or root.name, root, source, candidates, problems,
                    declared_classes=classes, progress=progress)
