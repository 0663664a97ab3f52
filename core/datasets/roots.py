"""Confining a dataset to allowed folders ("roots").

The loaders read whatever they are pointed at unless they are given ``allowed_roots``; the
app always gives them (a server folder: the app's allowed roots; an upload: its own
extraction folder). Then every path a loader is about to read (a folder entry, a manifest
row, a file or folder link, the manifest or archive itself) is checked *before* anything
about the file is looked at:

* lexically: the absolute path with ``.`` and ``..`` collapsed (no file-system access), and
* after resolving links (:func:`os.path.realpath`),

and both must lie inside one of the roots. A refused path is one ``outside_allowed_roots``
problem row whose reason does not depend on whether the file exists, so the report cannot be
used to probe the server's files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePath

from .model import SKIPPED, Problem

OUTSIDE_KIND = "outside_allowed_roots"


class RootGuard:
    """Decides whether a path lies inside ``roots`` (resolved once, at construction)."""

    def __init__(self, roots: Sequence[str | os.PathLike]) -> None:
        resolved: list[PurePath] = []
        for r in roots:
            p = PurePath(os.path.realpath(os.path.expanduser(os.fspath(r))))
            if p not in resolved:
                resolved.append(p)
        self.roots = tuple(resolved)

    def _inside(self, path: str) -> bool:
        p = PurePath(path)
        return any(p == r or r in p.parents for r in self.roots)

    def allows(self, path: str | os.PathLike) -> bool:
        """True when ``path`` lies inside a root both as written (``..`` collapsed, no file-system
        access) and with every link resolved. The lexical test comes first, so a path written
        outside the roots is refused without touching the file system at all."""
        text = os.path.abspath(os.fspath(path))  # abspath also collapses "." and ".."
        if not self._inside(text):
            return False
        return self._inside(os.path.realpath(os.fspath(path)))

    def describe(self) -> str:
        return ", ".join(str(r) for r in self.roots) or "(none)"

    def reason(self, shown: str) -> str:
        """The reason of a refused path; ``shown`` is what the user wrote (a manifest cell) or the
        entry's own name, never the resolved target, so it cannot tell whether the file exists."""
        return (
            f"{shown!r} lies outside the folders images may be read from ({self.describe()}); "
            "it was refused without being read. Keep the images (and links to them) inside those folders."
        )

    def problem(self, location: str, shown: str) -> Problem:
        return Problem(location, OUTSIDE_KIND, self.reason(shown), SKIPPED)


Roots = Sequence[str | os.PathLike] | RootGuard | None


def make_guard(allowed_roots: Roots) -> RootGuard | None:
    """None (no restriction) for None; a :class:`RootGuard` otherwise (an empty list allows nothing)."""
    if allowed_roots is None or isinstance(allowed_roots, RootGuard):
        return allowed_roots
    if isinstance(allowed_roots, (str, os.PathLike)):
        allowed_roots = [allowed_roots]
    return RootGuard(list(allowed_roots))


def refuse_source(guard: RootGuard | None, path: Path, what: str) -> None:
    """Raise :class:`~core.errors.DatasetError` when the loader's own ``path`` (a folder, manifest or
    archive) lies outside the roots; same message whether or not it exists."""
    if guard is not None and not guard.allows(path):
        from ..errors import DatasetError

        raise DatasetError(
            f"The {what} {os.path.abspath(path)} lies outside the folders this dataset may be read "
            f"from ({guard.describe()}); give a path inside them."
        )
