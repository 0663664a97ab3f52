"""Zip archives: extracted safely into the workspace, then read as a folder or manifest.

Safety rules (each rejected entry is one problem row, the others are extracted):
absolute names (``/x``, ``C:\\x``), names with a ``..`` component, and symbolic links are
refused (``unsafe_archive_entry``). Entries that cannot be written as they are get a
``bad_archive_entry`` row and are skipped, the rest of the archive is extracted: a name
component above 255 bytes (the usual file-system limit), a file whose name is also a folder
of other entries (``x`` and ``x/y.jpg``: the file is skipped, the folder kept), a name
listed twice (the first entry is used), or any other name the file system refuses. The total uncompressed size is capped (``max_bytes``, default 4 GiB); the cap is
checked on the sizes the archive declares and again on the bytes actually written, so a
lying header cannot fill the disk. Extraction goes to a temporary folder that is renamed
into place when complete, keyed by the archive's content hash, so a second load reuses it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from ..errors import DatasetError
from ..hashing import file_digest
from ..workspace import resolve_workspace, temp_prefix
from .folder import _visible, load_folder
from .images import Progress
from .manifest import find_manifest, load_manifest
from .model import SKIPPED, Dataset, Problem
from .roots import Roots, make_guard, refuse_source

DEFAULT_MAX_BYTES = 4 * 1024**3
_CHUNK = 1 << 20

#: Longest name component (bytes) and relative path (bytes) extracted; longer ones are skipped
#: (``bad_archive_entry``). 255 is the limit of ext4, XFS, btrfs, APFS and NTFS; the path cap
#: leaves room under Linux's PATH_MAX (4096) for the workspace folder in front.
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 3072
BAD_ENTRY = "bad_archive_entry"


def _sha256(path: Path) -> str:
    return file_digest(path, "sha256")


def unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    """Why an archive entry must not be extracted, or None when it is safe."""
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "absolute path in the archive; refused (it could write outside the extraction folder)"
    if ".." in PurePosixPath(name).parts:
        return "'..' in the path; refused (it could write outside the extraction folder)"
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "symbolic link in the archive; refused (links could point outside the extraction folder)"
    return None


def _parts(info: zipfile.ZipInfo) -> tuple[str, ...]:
    return PurePosixPath(info.filename.replace("\\", "/")).parts


def _name_too_long(parts: tuple[str, ...]) -> str | None:
    for part in parts:
        size = len(part.encode("utf-8", "surrogateescape"))
        if size > MAX_NAME_BYTES:
            return (
                f"a name in the path is {size} bytes long, above the file-system limit of {MAX_NAME_BYTES}; "
                "skipped (shorten the name and re-create the archive)"
            )
    size = len("/".join(parts).encode("utf-8", "surrogateescape"))
    if size > MAX_PATH_BYTES:
        return (
            f"the path is {size} bytes long, above the limit of {MAX_PATH_BYTES}; skipped "
            "(shorten the folder names and re-create the archive)"
        )
    return None


def plan_entries(archive: Path, infos: list[zipfile.ZipInfo]) -> tuple[list[zipfile.ZipInfo], list[Problem]]:
    """The file entries to extract and a problem row for each entry left out (module docstring)."""
    problems: list[Problem] = []
    files: list[tuple[zipfile.ZipInfo, tuple[str, ...]]] = []
    for info in infos:
        location = f"{archive}:{info.filename}"
        reason = unsafe_reason(info)
        if reason:
            problems.append(Problem(location, "unsafe_archive_entry", reason, SKIPPED))
            continue
        parts = _parts(info)
        if not parts:
            continue
        too_long = _name_too_long(parts)
        if too_long:
            problems.append(Problem(location, BAD_ENTRY, too_long, SKIPPED))
            continue
        if not info.is_dir():
            files.append((info, parts))
    folders = {parts[:k] for _, parts in files for k in range(1, len(parts))}
    seen: set[tuple[str, ...]] = set()
    safe: list[zipfile.ZipInfo] = []
    for info, parts in files:
        location = f"{archive}:{info.filename}"
        if parts in folders:
            problems.append(
                Problem(
                    location,
                    BAD_ENTRY,
                    f"the archive holds both a file and a folder named {'/'.join(parts)!r}; the file "
                    "was skipped and the folder's entries kept (rename one and re-create the archive)",
                    SKIPPED,
                )
            )
        elif parts in seen:
            problems.append(
                Problem(
                    location,
                    BAD_ENTRY,
                    "the name is listed twice in the archive; the first entry was used (remove the "
                    "duplicate and re-create the archive)",
                    SKIPPED,
                )
            )
        else:
            seen.add(parts)
            safe.append(info)
    return safe, problems


def extract_archive(
    archive: str | Path, *, workspace: str | os.PathLike | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[Path, list[Problem]]:
    """Extract ``archive`` safely (see the module docstring); return (folder, problems)."""
    archive = Path(archive).expanduser().resolve()
    if not archive.is_file():
        raise DatasetError(f"Archive {archive} does not exist.")
    if not zipfile.is_zipfile(archive):
        raise DatasetError(f"{archive} is not a zip archive (or it is damaged); re-create it with `zip -r`.")
    digest = _sha256(archive)[:16]
    target = resolve_workspace(workspace) / "archives" / f"{archive.stem}-{digest}"
    problems: list[Problem] = []
    try:
        with zipfile.ZipFile(archive) as zf:
            safe, problems = plan_entries(archive, zf.infolist())
            declared = sum(i.file_size for i in safe)
            if declared > max_bytes:
                raise DatasetError(
                    f"Archive {archive} would unpack to {declared / 1e9:.2f} GB, above the cap of "
                    f"{max_bytes / 1e9:.2f} GB; unpack it yourself and load the folder, or raise the cap "
                    "(max_bytes / --max-archive-bytes)."
                )
            if (target / ".complete").is_file():
                return target, problems
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(target.name), dir=target.parent))
            try:
                written = 0
                for info in safe:
                    out = tmp.joinpath(*_parts(info))
                    try:
                        out.parent.mkdir(parents=True, exist_ok=True)
                        with zf.open(info) as src, open(out, "wb") as dst:
                            for block in iter(lambda: src.read(_CHUNK), b""):
                                written += len(block)
                                if written > max_bytes:
                                    raise DatasetError(
                                        f"Archive {archive} unpacks to more than the cap of {max_bytes / 1e9:.2f} GB "
                                        "(its declared sizes are wrong); refused."
                                    )
                                dst.write(block)
                    except (
                        zipfile.BadZipFile,
                        zipfile.LargeZipFile,
                        zlib.error,
                        EOFError,
                        RuntimeError,
                        NotImplementedError,
                    ) as exc:  # damaged data, encrypted, unknown compression
                        with contextlib.suppress(OSError):
                            out.unlink(missing_ok=True)
                        problems.append(
                            Problem(
                                f"{archive}:{info.filename}",
                                "corrupt_archive_entry",
                                f"cannot be extracted ({exc}); re-create the archive",
                                SKIPPED,
                            )
                        )
                    except OSError as exc:
                        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                            raise DatasetError(
                                f"Cannot extract {archive}: the disk holding the workspace ({target.parent}) is full "
                                f"({exc.strerror}); free some space, or give another --workspace."
                            ) from exc
                        with contextlib.suppress(OSError):
                            out.unlink(missing_ok=True)
                        problems.append(
                            Problem(
                                f"{archive}:{info.filename}",
                                BAD_ENTRY,
                                f"cannot be written here ({exc.strerror or exc}); skipped (rename the "
                                "entry and re-create the archive)",
                                SKIPPED,
                            )
                        )
                (tmp / ".complete").write_text(archive.name)
                if target.exists():
                    shutil.rmtree(target)
                tmp.rename(target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    except zipfile.BadZipFile as exc:
        raise DatasetError(f"{archive} is a damaged zip archive ({exc}); re-create it.") from exc
    return target, problems


def dataset_root(folder: Path) -> Path:
    """Descend through a lone top-level folder (the usual ``zip -r name.zip name/``).

    Stops at a lone folder that holds no sub-folder and no manifest: that is a class folder.
    """
    while True:
        entries = [e for e in folder.iterdir() if _visible(e)]
        if len(entries) != 1 or not entries[0].is_dir():
            return folder
        inner = [e for e in entries[0].iterdir() if _visible(e)]
        if not any(e.is_dir() for e in inner) and find_manifest(entries[0], any_name=True) is None:
            return folder
        folder = entries[0]


def load_archive(
    archive: str | Path,
    *,
    workspace: str | os.PathLike | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: Progress | None = None,
    allowed_roots: Roots = None,
) -> Dataset:
    """Load a zip of a folder-per-class tree or of a manifest and its images.

    ``allowed_roots``: when given, the archive must lie inside one of them, and what it holds
    is confined to its own extraction folder: a manifest inside naming any path outside that
    folder (even one inside ``allowed_roots``) gets an ``outside_allowed_roots`` row for it.
    """
    guard = make_guard(allowed_roots)
    refuse_source(guard, Path(archive).expanduser(), "archive")
    archive = Path(archive).expanduser().resolve()
    folder, problems = extract_archive(archive, workspace=workspace, max_bytes=max_bytes)
    inner = None if guard is None else make_guard([folder])
    root = dataset_root(folder)
    manifest = find_manifest(root, any_name=True, allowed_roots=inner)
    # the archive's own problem rows go in first, so that an archive with nothing usable
    # names the entries it refused
    if manifest is not None:
        return load_manifest(
            manifest, name=archive.name, source="zip", progress=progress, allowed_roots=inner, prior_problems=problems
        )
    return load_folder(
        root, name=archive.name, source="zip", progress=progress, allowed_roots=inner, prior_problems=problems
    )
