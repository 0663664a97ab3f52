"""Folder-per-class datasets: ``root/<class>/*.jpg`` or ``root/<split>/<class>/*.jpg``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .assemble import Candidate, assemble
from .images import IMAGE_EXTENSIONS, Progress
from .model import SKIPPED, SPLIT_ALIASES, WARNING, Dataset, Problem
from .roots import RootGuard, Roots, make_guard, refuse_source


def _visible(path: Path) -> bool:
    return not path.name.startswith(".") and path.name not in {"__MACOSX", "Thumbs.db", "desktop.ini"}


def _unlisted(folder: Path, exc: OSError) -> Problem:
    """The problem row of a folder that cannot be listed (permissions, I/O error)."""
    what = "check its permissions" if isinstance(exc, PermissionError) else "check the disk"
    return Problem(
        str(folder),
        "unreadable_file",
        f"folder cannot be listed ({exc.strerror or exc}); its images were left out: {what}",
        SKIPPED,
    )


def _list(folder: Path, problems: list[Problem]) -> list[Path]:
    """The entries of ``folder`` (sorted); one ``unreadable_file`` row and none when it cannot be listed."""
    try:
        return sorted(folder.iterdir())
    except OSError as exc:
        problems.append(_unlisted(folder, exc))
        return []


def _below(folder: Path, problems: list[Problem] | None = None) -> list[Path]:
    """Every path under ``folder``, sorted, skipping hidden names at any depth; folder links are
    listed but not followed, and no link target is looked at (``Path.rglob`` stats them). A
    folder that cannot be listed adds an ``unreadable_file`` row to ``problems``."""
    out: list[Path] = []
    stack = [folder]
    while stack:
        here = stack.pop()
        try:
            with os.scandir(here) as it:
                entries = list(it)
        except OSError as exc:
            if problems is not None:
                problems.append(_unlisted(here, exc))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            out.append(path)
            if entry.is_dir(follow_symlinks=False):
                stack.append(path)
    return sorted(out)


def _allowed(path: Path, guard: RootGuard | None) -> bool:
    return guard is None or guard.allows(path)


def _split_folders(
    root: Path, guard: RootGuard | None = None, entries: list[Path] | None = None
) -> dict[str, Path] | None:
    """``{split: folder}`` when ``root`` holds split folders (train/test/val), else None.
    Entries outside the roots are never looked at (they are reported by the caller)."""
    entries = sorted(root.iterdir()) if entries is None else entries
    subdirs = [d for d in entries if _visible(d) and _allowed(d, guard) and d.is_dir()]
    splits = {SPLIT_ALIASES[d.name.lower()]: d for d in subdirs if d.name.lower() in SPLIT_ALIASES and d.name}
    if "train" in splits or "test" in splits:
        return splits
    return None


def _class_candidates(
    folder: Path, split: str, root: Path, problems: list[Problem], guard: RootGuard | None = None
) -> tuple[list[Candidate], list[str]]:
    candidates: list[Candidate] = []
    classes: list[str] = []
    for entry in _list(folder, problems):
        if not _visible(entry):
            continue
        if guard is not None and not guard.allows(entry):  # before anything is asked about the entry's target
            problems.append(guard.problem(str(entry), entry.name))
            continue
        if entry.is_symlink() and not entry.exists():
            problems.append(Problem(str(entry), "missing_file", "broken link; fix or remove it", SKIPPED))
            continue
        if entry.is_file():
            problems.append(
                Problem(
                    str(entry),
                    "outside_class_folder",
                    f"file lies directly in {folder}, not in a class folder; move it into {folder}/<class>/",
                    SKIPPED,
                )
            )
            continue
        label = entry.name
        classes.append(label)
        for path in (p for p in _below(entry, problems) if _visible(p)):
            if guard is not None and not guard.allows(path):  # a file or folder link out of the roots
                problems.append(guard.problem(str(path), path.name))
                continue
            if path.is_dir():
                continue
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                problems.append(
                    Problem(
                        str(path),
                        "not_an_image",
                        f"extension {path.suffix or '(none)'!r} is not an image type; remove the file "
                        f"or convert it ({', '.join(sorted(IMAGE_EXTENSIONS))})",
                        SKIPPED,
                    )
                )
                continue
            candidates.append(Candidate(str(path), label, split, str(path)))
    return candidates, classes


def load_folder(
    root: str | Path,
    *,
    name: str | None = None,
    source: str = "folder",
    progress: Progress | None = None,
    allowed_roots: Roots = None,
    prior_problems: Sequence[Problem] = (),
) -> Dataset:
    """Load a folder-per-class dataset.

    Layouts: ``root/<class>/...`` (every image is ``train``), or split folders
    ``root/train/<class>/...``, ``root/test/<class>/...`` and optionally ``root/val/...``
    (also ``valid``/``validation``). Images in sub-folders of a class folder belong to
    that class. Hidden files are ignored; other non-image files are reported.

    ``allowed_roots``: when given, the folder and every entry in it (a link is judged by its
    target) must lie inside one of these folders; an entry outside is one
    ``outside_allowed_roots`` problem, decided before the entry is looked at (see
    :mod:`core.datasets.roots`). None (the default) reads everything.

    A folder that cannot be listed (permissions) is one ``unreadable_file`` row with the
    system's reason; the rest is read. ``prior_problems`` (e.g. an archive's refused entries)
    start the report.
    """
    guard = make_guard(allowed_roots)
    refuse_source(guard, Path(root).expanduser(), "dataset folder")
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        from ..errors import DatasetError

        raise DatasetError(f"Dataset folder {root} does not exist or is not a folder.")
    problems: list[Problem] = list(prior_problems)
    candidates: list[Candidate] = []
    classes: list[str] = []
    try:
        top = sorted(root.iterdir())
    except OSError as exc:
        from ..errors import DatasetError

        raise DatasetError(
            f"Dataset folder {root} cannot be listed ({exc.strerror or exc}); check its permissions."
        ) from exc
    splits = _split_folders(root, guard, top)
    if splits:
        for split, folder in sorted(splits.items()):
            found, names = _class_candidates(folder, split, root, problems, guard)
            candidates += found
            classes += names
        for other in (d for d in top if _visible(d) and d not in splits.values()):
            if guard is not None and not guard.allows(other):
                problems.append(guard.problem(str(other), other.name))
                continue
            problems.append(
                Problem(
                    str(other),
                    "unknown_split",
                    f"{other.name!r} is not a split folder (train, val, test); it was ignored",
                    WARNING if other.is_file() else SKIPPED,
                )
            )
    else:
        candidates, classes = _class_candidates(root, "train", root, problems, guard)
    return assemble(name or root.name, root, source, candidates, problems, declared_classes=classes, progress=progress)
