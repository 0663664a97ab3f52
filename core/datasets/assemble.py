"""Turning candidate rows (path, label, split) into a :class:`Dataset` with its report.

Every loader lists its candidates and the problems it met on the way (unsafe archive
entries, bad manifest rows, ...); :func:`assemble` checks every image, drops the unusable
ones with a problem row each, flags classes that are empty or have a single image and
files whose content appears twice, and raises :class:`DatasetError` only when nothing is
left.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import DatasetError
from .images import Progress, inspect_images
from .model import SKIPPED, WARNING, Dataset, Problem

#: Problem rows named in the message of a dataset with nothing usable.
MAX_NAMED = 5


@dataclass(frozen=True)
class Candidate:
    """A file a loader wants in the dataset; ``location`` names it in the report."""

    path: str
    label: str
    split: str
    location: str


def assemble(
    name: str,
    root: Path,
    source: str,
    candidates: list[Candidate],
    problems: list[Problem],
    *,
    declared_classes: Sequence[str] = (),
    progress: Progress | None = None,
) -> Dataset:
    """Check every candidate image and build the dataset (see the module docstring).

    ``declared_classes`` are classes the layout announces (e.g. class folders) so that a
    class whose files are all unusable, or that has none, is reported as empty.
    """
    problems = list(problems)
    checks = inspect_images([c.path for c in candidates], progress=progress)
    kept: list[tuple[Candidate, str, tuple[int, int]]] = []
    for cand, check in zip(candidates, checks):
        if check.kind is None:  # check.ok
            kept.append((cand, check.file_id, check.size))
        else:
            problems.append(Problem(cand.location, check.kind, check.reason, SKIPPED))

    counts = Counter(c.label for c, _, _ in kept)
    for label in sorted(set(declared_classes) | {c.label for c in candidates}):
        if counts[label] == 0:
            problems.append(
                Problem(
                    label,
                    "empty_class",
                    f"class {label!r} has no usable image; add images or remove the class",
                    SKIPPED,
                )
            )
    for label, n in sorted(counts.items()):
        if n == 1:
            problems.append(
                Problem(
                    label,
                    "single_image_class",
                    f"class {label!r} has a single image; its class mean is that image, so "
                    "representativeness scores say nothing about it",
                    WARNING,
                )
            )

    by_content: dict[str, list[str]] = defaultdict(list)
    for cand, file_id, _ in kept:
        by_content[file_id].append(cand.location)
    for locations in by_content.values():
        for dup in locations[1:]:
            problems.append(
                Problem(
                    dup,
                    "duplicate_content",
                    f"same bytes as {locations[0]}; both are kept, remove one if unintended",
                    WARNING,
                )
            )

    if not kept:
        found = Counter(p.kind for p in problems)
        detail = ", ".join(f"{n} {kind}" for kind, n in found.most_common()) or "no image files at all"
        skipped = [p for p in problems if p.severity == SKIPPED and p.kind != "empty_class"]
        if skipped:
            shown = "; ".join(f"{p.location}: {p.reason}" for p in skipped[:MAX_NAMED])
            more = f"; and {len(skipped) - MAX_NAMED} more" if len(skipped) > MAX_NAMED else ""
            detail += f" (left out: {shown}{more})"
        raise DatasetError(
            f"No usable image in {name} ({root}): found {len(candidates)} candidate file(s); problems: {detail}. "
            "Expected a folder per class (root/<class>/*.jpg, optionally root/train/<class> and root/test/<class>), "
            "a CSV/Parquet manifest with columns path,label[,split], or a zip of either."
        )
    return Dataset(
        name=name,
        root=root,
        source=source,
        paths=[c.path for c, _, _ in kept],
        labels=[c.label for c, _, _ in kept],
        splits=[c.split for c, _, _ in kept],
        file_ids=[f for _, f, _ in kept],
        image_sizes=[s for _, _, s in kept],
        problems=problems,
    )
