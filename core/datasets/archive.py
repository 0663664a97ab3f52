"""Zip archives: extracted safely into the workspace, then read as a folder or manifest.

Safety rules (each rejected entry is one problem row, the others are extracted):
absolute names (``/x``, ``C:\\x``), names with a ``..`` component, and symbolic links are
refused. The total uncompressed size is capped (``max_bytes``, default 4 GiB); the cap is
checked on the sizes the archive declares and again on the bytes actually written, so a
lying header cannot fill the disk. Extraction goes to a temporary folder that is renamed
into place when complete, keyed by the archive's content hash, so a second load reuses it.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from ..errors import DatasetError
from ..workspace import resolve_workspace
from .folder import _visible, load_folder
from .images import Progress
from .manifest import find_manifest, load_manifest
from .model import SKIPPED, Dataset, Problem, compute_fingerprint
from .roots import Roots, make_guard, refuse_source

DEFAULT_MAX_BYTES = 4 * 1024**3
_CHUNK = 1 << 20


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


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


def extract_archive(archive: str | Path, *, workspace: str | Path | None = None,
                    max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[Path, list[Problem]]:
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
            infos = zf.infolist()
            safe = []
            for info in infos:
                reason = unsafe_reason(info)
                if reason:
                    problems.append(Problem(f"{archive}:{info.filename}", "unsafe_archive_entry", reason, SKIPPED))
                elif not info.is_dir():
                    safe.append(info)
            declared = sum(i.file_size for i in safe)
            if declared > max_bytes:
                raise DatasetError(
                    f"Archive {archive} would unpack to {declared / 1e9:.2f} GB, above the cap of "
                    f"{max_bytes / 1e9:.2f} GB; unpack it yourself and load the folder, or raise the cap "
                    "(max_bytes / --max-archive-bytes).")
            if (target / ".complete").is_file():
                return target, problems
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
            try:
                written = 0
                for info in safe:
                    out = tmp.joinpath(*PurePosixPath(info.filename.replace("\\", "/")).parts)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    try:
                        with zf.open(info) as src, open(out, "wb") as dst:
                            for block in iter(lambda: src.read(_CHUNK), b""):
                                written += len(block)
                                if written > max_bytes:
                                    raise DatasetError(
                                        f"Archive {archive} unpacks to more than the cap of {max_bytes / 1e9:.2f} GB "
                                        "(its declared sizes are wrong); refused.")
                                dst.write(block)
                    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
                        out.unlink(missing_ok=True)
                        problems.append(Problem(f"{archive}:{info.filename}", "corrupt_archive_entry",
                                                f"cannot be extracted ({exc}); re-create the archive", SKIPPED))
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


def load_archive(archive: str | Path, *, workspace: str | Path | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
                 progress: Progress | None = None, allowed_roots: Roots = None) -> Dataset:
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
    if manifest is not None:
        ds = load_manifest(manifest, name=archive.name, source="zip", progress=progress, allowed_roots=inner)
    else:
        ds = load_folder(root, name=archive.name, source="zip", progress=progress, allowed_roots=inner)
    ds.problems = problems + ds.problems
    ds.fingerprint = compute_fingerprint(ds)
    return ds
