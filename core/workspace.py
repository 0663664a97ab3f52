"""The workspace folder (caches, extracted archives, converted weights) and atomic writes.

The workspace defaults to the user's cache directory (``platformdirs.user_cache_dir``) and
is overridden by the ``CORESET_STUDIO_HOME`` environment variable or an explicit path.
Every file the project writes goes through :func:`atomic_write_bytes` (or a helper built on
it): the data is written to a temporary file in the same folder, flushed, fsynced and then
moved over the target with :func:`os.replace`, so a reader sees the old file or the new
one, never a half-written one.
"""

from __future__ import annotations

import errno
import functools
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


def _first_existing(path: Path) -> Path | None:
    for p in (path, *path.parents):
        if os.path.lexists(p):
            return p
    return None


def output_error(path: str | os.PathLike, exc: OSError, *, folder: bool = False) -> "OutputError":
    """An :class:`~core.errors.OutputError` for writing ``path`` (a file, or with ``folder`` a
    folder to create) that failed with ``exc``: the message names the path, the cause and what
    to do."""
    from .errors import OutputError

    path = Path(path)
    parent = path if folder else path.parent
    code = exc.errno
    existing = _first_existing(parent)
    if folder and existing == path and not path.is_dir():
        reason = ("it is an existing file, not a folder; give the path of a folder (it is created when missing), "
                  "or move the file away")
    elif existing is not None and not existing.is_dir():
        reason = (f"{existing} is a file, not a folder, so nothing can be written under it; choose an output "
                  "path that is not inside a file")
    elif not folder and path.is_dir():
        reason = "a folder of that name is in the way; remove it or choose another file name"
    elif code in (errno.EACCES, errno.EPERM):
        reason = (f"permission denied: {existing or parent} is not writable; choose another output folder "
                  "or fix its permissions")
    elif code == errno.EROFS:
        reason = f"the file system holding {parent} is read-only; choose an output folder elsewhere"
    elif code in (errno.ENOSPC, errno.EDQUOT):
        reason = (f"the disk holding {parent} is full ({exc.strerror}); free some space or choose an output "
                  "folder on another disk")
    elif code == errno.ENAMETOOLONG:
        reason = "the name is too long for the file system; choose a shorter path"
    else:
        reason = f"{exc.strerror or exc}; check the path and its permissions"
    err = OutputError(f"Cannot write {path}: {reason}.")
    err.errno = code  # (strerror and filename would change str(err))
    return err


def check_output_dir(path: str | os.PathLike) -> Path:
    """Raise :class:`~core.errors.OutputError` when the output folder ``path`` can certainly not
    be created or written (a file of that name, a file above it); creates nothing. Commands
    call it before their work, so a bad ``--out`` fails at once instead of after it."""
    out = Path(path)
    existing = _first_existing(out)
    if existing is not None and not existing.is_dir():
        code = errno.EEXIST if existing == out else errno.ENOTDIR
        raise output_error(out, OSError(code, os.strerror(code)), folder=True)
    return out


def make_output_dir(path: str | os.PathLike) -> Path:
    """Create the output folder ``path`` (and its parents) unless it exists; an
    :class:`~core.errors.OutputError` naming it when it cannot be (a file of that name, a
    file above it, no permission, a read-only or full disk)."""
    out = Path(path)
    if os.path.lexists(out) and not out.is_dir():
        raise output_error(out, FileExistsError(errno.EEXIST, "File exists"), folder=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(out, exc, folder=True) from exc
    return out


def _output_errors(fn):
    """Decorate a writer of ``path``: an ``OSError`` while writing becomes an
    :class:`~core.errors.OutputError` (see :func:`output_error`); ``path`` is left as it was."""
    @functools.wraps(fn)
    def wrapper(path, *args, **kwargs):
        from .errors import OutputError

        try:
            return fn(path, *args, **kwargs)
        except OutputError:
            raise
        except OSError as exc:
            raise output_error(path, exc) from exc

    return wrapper


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


@_output_errors
def atomic_write_with(path: str | os.PathLike, writer: Callable[[io.BufferedWriter], object]) -> Path:
    """Call ``writer(fh)`` on a temporary binary file, then move it over ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched. An
    ``OSError`` (no permission, a full disk, a file where a folder should be, a folder
    named ``path``) is raised as :class:`~core.errors.OutputError` naming ``path`` and what
    to do.
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
