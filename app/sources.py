"""Where the app's datasets come from: the folder roots the server may read, server paths,
uploaded zips and manifests, the demo (no Streamlit here; the Data page calls these)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from core.datasets import Dataset, load_dataset, load_demo, load_manifest
from core.datasets.archive import dataset_root, extract_archive
from core.errors import CoresetError, DatasetError
from core.workspace import atomic_write_bytes, resolve_workspace

ROOTS_ENV = "CORESET_STUDIO_ROOTS"


# --------------------------------------------------------------------------- folder roots
def allowed_roots(
    workspace: str | os.PathLike | None = None, configured: Sequence[str | os.PathLike] | None = None
) -> list[Path]:
    """Folders the Data page may read from, first found of: ``$CORESET_STUDIO_ROOTS``
    (os.pathsep-separated); ``configured`` (the ``roots`` list of ``[coreset_studio]`` in
    ``.streamlit/secrets.toml``); the working directory and the workspace."""
    env = os.environ.get(ROOTS_ENV, "").strip()
    if env:
        roots = [Path(p).expanduser() for p in env.split(os.pathsep) if p.strip()]
    elif configured:
        roots = [Path(str(p)).expanduser() for p in configured if str(p).strip()]
    else:
        roots = [Path.cwd(), resolve_workspace(workspace)]
    out: list[Path] = []
    for r in roots:
        r = r.resolve()
        if r not in out:
            out.append(r)
    return out


def check_server_path(text: str, roots: Sequence[Path]) -> Path:
    """The resolved path if it lies inside one of ``roots``; else a :class:`CoresetError`
    naming the allowed roots. Symlinks are resolved first, so a link cannot escape."""
    text = (text or "").strip()
    if not text:
        raise CoresetError("Type the path of a dataset folder (or a manifest .csv / .zip) on the server.")
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    path = path.resolve()
    if not any(path == r or r in path.parents for r in roots):
        names = ", ".join(str(r) for r in roots)
        raise CoresetError(
            f"{path} is outside the folders this app may read. Allowed: {names}. "
            f"Move the data under one of them, or restart the app with {ROOTS_ENV}=<folder> "
            f"(several joined by '{os.pathsep}')."
        )
    if not path.exists():
        raise DatasetError(
            f"{path} does not exist; give a folder, a .csv/.parquet manifest or a .zip inside "
            f"{', '.join(str(r) for r in roots)}."
        )
    return path


def load_server_path(text: str, roots: Sequence[Path], workspace=None, progress=None) -> Dataset:
    """Load a folder, manifest or zip on the server. Every image path it leads to (folder
    entries, manifest rows, links) must lie inside ``roots`` too: one outside is refused before
    it is read (an ``outside_allowed_roots`` row that does not say whether the file exists);
    a zip's contents are confined to its own extraction folder."""
    return load_dataset(
        check_server_path(text, roots), workspace=workspace, progress=progress, allowed_roots=list(roots)
    )


def save_upload(data: bytes, name: str, workspace=None) -> Path:
    """Store uploaded bytes in ``<workspace>/uploads/<sha>/<name>`` (content-addressed)."""
    digest = hashlib.sha256(data).hexdigest()[:16]
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(name).name) or "upload"
    path = resolve_workspace(workspace) / "uploads" / digest / safe
    if not path.exists():
        atomic_write_bytes(path, data)
    return path


def load_uploaded_zip(data: bytes, name: str, workspace=None, progress=None) -> Dataset:
    """An uploaded zip; only files inside its own extraction folder are read (a manifest in it
    naming server paths gets an ``outside_allowed_roots`` row for each)."""
    if not data:
        raise DatasetError(f"The uploaded file {name} is empty; upload a zip with one folder per class.")
    path = save_upload(data, name if name.lower().endswith(".zip") else name + ".zip", workspace)
    return load_dataset(path, workspace=workspace, progress=progress, allowed_roots=[path.parent])


def load_uploaded_manifest(
    csv_data: bytes, csv_name: str, zip_data: bytes, zip_name: str, workspace=None, progress=None
) -> Dataset:
    """A CSV manifest (``path,label[,split]``, paths relative to the zip's top) plus a zip of its images.
    Only paths inside the zip's extraction folder are read: a row naming any other server path
    gets an ``outside_allowed_roots`` row that does not say whether the file exists."""
    if not csv_data:
        raise DatasetError(f"The manifest {csv_name} is empty; it needs the columns path,label[,split].")
    zip_path = save_upload(zip_data, zip_name, workspace)
    folder, problems = extract_archive(zip_path, workspace=workspace)
    digest = hashlib.sha256(csv_data).hexdigest()[:12]
    candidates = [folder] + ([dataset_root(folder)] if dataset_root(folder) != folder else [])
    last: Exception | None = None
    best: Dataset | None = None
    for base in candidates:
        manifest = base / f".manifest-{digest}.csv"
        atomic_write_bytes(manifest, csv_data)
        try:
            ds = load_manifest(manifest, name=Path(csv_name).stem, allowed_roots=[folder])
        except DatasetError as exc:
            last = exc
            continue
        if best is None or len(ds) > len(best):
            best = ds
    if best is None:
        raise DatasetError(f"None of the manifest's images were found in {zip_name}: {last}") from last
    best.problems = problems + best.problems
    return best


def load_demo_dataset(progress=None) -> Dataset:
    return load_demo(progress=progress)


__all__ = [
    "ROOTS_ENV",
    "allowed_roots",
    "check_server_path",
    "load_demo_dataset",
    "load_server_path",
    "load_uploaded_manifest",
    "load_uploaded_zip",
    "save_upload",
]
