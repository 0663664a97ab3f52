"""The workspace folder (caches, extracted archives, converted weights) and atomic writes.

The workspace defaults to the user's cache directory (``platformdirs.user_cache_dir``) and
is overridden by the ``CORESET_STUDIO_HOME`` environment variable or an explicit path.
Every file the project writes goes through :func:`atomic_write_bytes` (or a helper built on
it): the data is written to a temporary file in the same folder, flushed, fsynced and then
moved over the target with :func:`os.replace`, so a reader sees the old file or the new
one, never a half-written one.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

ENV_VAR = "CORESET_STUDIO_HOME"


def default_workspace() -> Path:
    """Return the workspace folder: ``$CORESET_STUDIO_HOME`` or the user cache dir."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser().resolve()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("coreset-studio", appauthor=False)).resolve()


def resolve_workspace(workspace: str | os.PathLike | None = None) -> Path:
    """Return ``workspace`` (or the default) as an absolute path, creating it."""
    path = Path(workspace).expanduser().resolve() if workspace is not None else default_workspace()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + os.replace)."""
    return atomic_write_with(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically. A lone surrogate (a name that was not valid UTF-8)
    is written as ``\\xNN`` (:func:`core.text.display_text`) instead of failing."""
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        from .text import display_text

        data = display_text(text).encode(encoding)
    return atomic_write_bytes(path, data)


def atomic_write_with(path: str | os.PathLike, writer: Callable[[io.BufferedWriter], object]) -> Path:
    """Call ``writer(fh)`` on a temporary binary file, then move it over ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        # mkstemp makes the file owner-only (0600); give it the mode a plain open() would.
        os.chmod(tmp_name, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            writer(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    return target


def atomic_save_npz(path: str | os.PathLike, compressed: bool = True, **arrays: np.ndarray) -> Path:
    """Save arrays to an ``.npz`` file atomically (compressed by default)."""
    saver = np.savez_compressed if compressed else np.savez
    return atomic_write_with(path, lambda fh: saver(fh, **arrays))
