"""The workspace folder (caches, extracted archives, converted weights) and atomic writes.

The workspace defaults to the user's cache directory (``platformdirs.user_cache_dir``) and
is overridden by the ``CORESET_STUDIO_HOME`` environment variable or an explicit path.
Every file the project writes goes through :func:`atomic_write_bytes` (or a helper built on
it): the data is written to a temporary file in the same folder, flushed, fsynced and then
moved over the target with :func:`os.replace`, so a reader sees the old file or the new
one, never a half-written one.

Temporary names carry the writer's process id (:func:`temp_prefix`: ``.<name>.p<pid>.<random>``,
plus ``.tmp`` for files). A run that is killed leaves its temporary files (and an archive's
half-extracted folder) behind; :func:`clean_stale_temps` removes those that are older than
:data:`STALE_TEMP_SECONDS` and whose process is no longer running. :func:`resolve_workspace`
runs it on the workspace, its ``archives/`` and ``weights/`` folders, and the embedding cache
on each of its folders.
"""

from __future__ import annotations

import errno
import functools
import io
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # for the annotation only; output_error imports it when called
    from .errors import OutputError

ENV_VAR = "CORESET_STUDIO_HOME"

#: A temporary file or folder older than this (newest modification inside it, for a folder)
#: whose process is gone is stale and removed by :func:`clean_stale_temps`.
STALE_TEMP_SECONDS = 3600.0
#: Workspace sub-folders :func:`resolve_workspace` cleans of stale temporaries ("" = the workspace).
WORKSPACE_TEMP_FOLDERS = ("", "archives", "weights")
#: :func:`resolve_workspace` cleans one workspace at most this often per process.
_CLEAN_EVERY_S = 600.0
_last_clean: dict[Path, float] = {}

# ``.<name>.p<pid>.<8 random>[.tmp]`` (temp_prefix), and the names written before pids were
# added: ``.<name>.<8 random>.tmp`` (atomic writes) and ``.<stem>-<16 hex>.<8 random>`` folders
# (an archive's extraction, core.datasets.archive).
_TEMP_PID_RE = re.compile(r"^\..+\.p(?P<pid>\d+)\.[a-z0-9_]{8}(?:\.tmp)?$")
_TEMP_FILE_RE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
_TEMP_DIR_RE = re.compile(r"^\..+-[0-9a-f]{16}\.[a-z0-9_]{8}$")


def default_workspace() -> Path:
    """Return the workspace folder: ``$CORESET_STUDIO_HOME`` or the user cache dir."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser().resolve()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("coreset-studio", appauthor=False)).resolve()


def workspace_path(workspace: str | os.PathLike | None = None) -> Path:
    """``workspace`` (or the default) as an absolute path, without creating or touching it."""
    return Path(workspace).expanduser().resolve() if workspace is not None else default_workspace()


def resolve_workspace(workspace: str | os.PathLike | None = None) -> Path:
    """Return ``workspace`` (or the default) as an absolute path, creating it.

    Also removes the stale temporaries killed runs left in it (:data:`WORKSPACE_TEMP_FOLDERS`,
    see :func:`clean_stale_temps`; at most every ten minutes per workspace and process).
    """
    path = workspace_path(workspace)
    path.mkdir(parents=True, exist_ok=True)
    now = time.monotonic()
    last = _last_clean.get(path)
    if last is None or now - last >= _CLEAN_EVERY_S:
        _last_clean[path] = now
        for sub in WORKSPACE_TEMP_FOLDERS:
            clean_stale_temps(path / sub if sub else path)
    return path


# ----------------------------------------------------------------------------- temporaries
def temp_prefix(name: str) -> str:
    """Prefix of a temporary file or folder for ``name``: ``.<name>.p<pid>.`` (for mkstemp/mkdtemp).

    The pid lets :func:`clean_stale_temps` tell a live writer's temporary from a dead one's.
    """
    return f".{name}.p{os.getpid()}."


def pid_alive(pid: int) -> bool:
    """True when process ``pid`` runs on this machine (also when it exists but belongs to another user).

    On Windows, where ``os.kill(pid, 0)`` would end the process, only our own pid counts as
    alive: there the age of a temporary decides alone.
    """
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there; rely on age alone
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by someone else
        return True
    return True


def _temp_kind(entry: os.DirEntry) -> tuple[bool, int | None]:
    """(is a temporary, the pid in its name or None for an old-style name)."""
    m = _TEMP_PID_RE.match(entry.name)
    if m:
        return True, int(m.group("pid"))
    if entry.is_file(follow_symlinks=False) and _TEMP_FILE_RE.match(entry.name):
        return True, None
    if entry.is_dir(follow_symlinks=False) and _TEMP_DIR_RE.match(entry.name):
        return True, None
    return False, None


def _newest_mtime(entry: os.DirEntry, cutoff: float) -> float:
    """mtime of a file; for a folder the newest mtime inside it (stops at the first one after ``cutoff``)."""
    newest = entry.stat(follow_symlinks=False).st_mtime
    if newest > cutoff or not entry.is_dir(follow_symlinks=False):
        return newest
    for root, dirs, files in os.walk(entry.path):
        for name in dirs + files:
            try:
                m = os.lstat(os.path.join(root, name)).st_mtime
            except OSError:
                continue
            if m > newest:
                newest = m
                if newest > cutoff:
                    return newest
    return newest


def clean_stale_temps(
    folder: str | os.PathLike, older_than_s: float = STALE_TEMP_SECONDS, *, name: str | None = None
) -> list[Path]:
    """Remove the stale temporary files and folders killed runs left directly in ``folder``.

    A temporary is a hidden entry named as :func:`temp_prefix` makes them
    (``.<name>.p<pid>.<random>``, ``.tmp`` for files) or as earlier versions did
    (``.<name>.<random>.tmp`` files, ``.<stem>-<digest>.<random>`` archive folders). It is stale when it was
    last modified (for a folder: anything inside it) more than ``older_than_s`` seconds ago
    and the process named in it no longer runs (old-style names: age alone). ``name``
    limits the clean-up to the temporaries of that one target (for folders that are not
    ours, such as an output file's). Anything else, links included, is never touched;
    errors (a folder that does not exist, a permission) are ignored.

    Returns the paths removed.
    """
    removed: list[Path] = []
    cutoff = time.time() - older_than_s
    try:
        entries = list(os.scandir(Path(folder)))
    except OSError:
        return removed
    for entry in entries:
        if name is not None and not entry.name.startswith(f".{name}."):
            continue
        try:
            if entry.is_symlink() or not entry.name.startswith("."):
                continue
            is_temp, pid = _temp_kind(entry)
            if not is_temp:
                continue
            if pid is not None and pid_alive(pid):
                continue
            if _newest_mtime(entry, cutoff) > cutoff:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
                if os.path.lexists(entry.path):
                    continue
            else:
                os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed


_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (``Umask:`` of
    ``/proc/self/status``, Linux 4.7+); elsewhere by setting and restoring it under a lock (the
    umask is process-wide, so a thread creating a file in between would get mode 0 bits)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)  # the strictest mask while it is briefly changed
        os.umask(mask)
    return mask


def _first_existing(path: Path) -> Path | None:
    for p in (path, *path.parents):
        if os.path.lexists(p):
            return p
    return None


def output_error(path: str | os.PathLike, exc: OSError, *, folder: bool = False) -> OutputError:
    """An :class:`~core.errors.OutputError` for writing ``path`` (a file, or with ``folder`` a
    folder to create) that failed with ``exc``: the message names the path, the cause and what
    to do."""
    from .errors import OutputError

    path = Path(path)
    parent = path if folder else path.parent
    code = exc.errno
    existing = _first_existing(parent)
    if folder and existing == path and not path.is_dir():
        reason = (
            "it is an existing file, not a folder; give the path of a folder (it is created when missing), "
            "or move the file away"
        )
    elif existing is not None and not existing.is_dir():
        reason = (
            f"{existing} is a file, not a folder, so nothing can be written under it; choose an output "
            "path that is not inside a file"
        )
    elif not folder and path.is_dir():
        reason = "a folder of that name is in the way; remove it or choose another file name"
    elif code in (errno.EACCES, errno.EPERM):
        reason = (
            f"permission denied: {existing or parent} is not writable; choose another output folder "
            "or fix its permissions"
        )
    elif code == errno.EROFS:
        reason = f"the file system holding {parent} is read-only; choose an output folder elsewhere"
    elif code in (errno.ENOSPC, errno.EDQUOT):
        reason = (
            f"the disk holding {parent} is full ({exc.strerror}); free some space or choose an output "
            "folder on another disk"
        )
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
    fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(target.name), suffix=".tmp", dir=target.parent)
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
    named: dict[str, Any] = dict(arrays)  # (numpy types savez's **kwds as bool, after allow_pickle)
    return atomic_write_with(path, lambda fh: saver(fh, **named))
