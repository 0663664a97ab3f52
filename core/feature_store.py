"""The features store: a feature set on disk that is read memory-mapped, for features beyond memory.

A store is a folder (``coreset-studio embed ... --out features.store``) holding

==========================  ==============================================================
file                        content
==========================  ==============================================================
``store.json``              format, version, ``n`` rows, per model its width, ``.npy`` file
                            and that file's sha256; ``meta`` (provenance, as in the ``.npz``)
``rows.parquet``            one row per image in dataset order: ``file_id`` (the image's
                            content hash, :func:`core.datasets.images.file_identity`, empty
                            when unknown), ``path``, ``label``, ``split``
``<model>-<sha16>.npy``     float32 ``[n, D]`` raw features of one model, C order, one file
                            per model named by the first 16 hex digits of its content hash
==========================  ==============================================================

Every row is keyed by its image's content hash (``file_id``) and every feature file by its
own content hash, so a store can be checked (:func:`verify_feature_store`) and two stores
with the same features share file names. :func:`open_feature_store` maps the ``.npy`` files
copy-on-write (``numpy.load(mmap_mode="c")``: never written back): opening costs the labels and paths only, and the
features are paged in by the OS as the selectors read them, so 10M x 768 float32 (30 GB)
opens on a machine with far less RAM. :func:`save_feature_store` writes the features in
row chunks (:data:`CHUNK_ROWS`) through a memory map, and the whole folder atomically
(a temporary folder renamed into place).

:func:`core.features.load_features` opens a store as well as an ``.npz``, so ``select``,
``run`` and every caller of it (the app's loading path included) accept either.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import CoresetError

FORMAT = "coreset-studio-features-store"
VERSION = 1
MANIFEST = "store.json"
ROWS = "rows.parquet"
#: Rows written (and hashed) per step: 65536 x 768 float32 = 192 MiB at most in flight.
CHUNK_ROWS = 65536
_SAFE = re.compile(r"[^A-Za-z0-9_.\-]")


def is_feature_store(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder with a ``store.json``."""
    return (Path(path) / MANIFEST).is_file()


def _file_sha256(path: Path, block: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


def save_feature_store(
    path: str | os.PathLike, fs, file_ids: Sequence[str] | None = None, chunk_rows: int = CHUNK_ROWS
) -> Path:
    """Write the :class:`~core.features.FeatureSet` ``fs`` as a store folder at ``path`` (atomically).

    ``file_ids``: the images' content hashes, one per row (optional). An existing store at
    ``path`` is replaced; an existing file or a folder that is not a store is refused.
    """
    import pandas as pd

    path = Path(path)
    if path.exists() and not is_feature_store(path):
        raise CoresetError(
            f"{path} exists and is not a features store; give --out a new folder name "
            "(e.g. features.store) or a .npz file."
        )
    n = len(fs)
    if file_ids is not None and len(file_ids) != n:
        raise CoresetError(f"file_ids has {len(file_ids)} entries for {n} rows.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        models = {}
        for name, x in fs.features.items():
            d = int(x.shape[1])
            staging = tmp / f"{_SAFE.sub('_', name)}.npy.part"
            out = np.lib.format.open_memmap(staging, mode="w+", dtype=np.float32, shape=(n, d))
            for start in range(0, n, max(1, int(chunk_rows))):
                out[start : start + chunk_rows] = np.asarray(x[start : start + chunk_rows], dtype=np.float32)
            out.flush()
            del out
            digest = _file_sha256(staging)
            final = f"{_SAFE.sub('_', name)}-{digest[:16]}.npy"
            os.replace(staging, tmp / final)
            models[name] = {"dim": d, "file": final, "sha256": digest}
        labels = np.asarray(fs.labels)
        rows = pd.DataFrame(
            {
                "file_id": [str(f) for f in file_ids] if file_ids is not None else [""] * n,
                "path": fs.paths.astype(str) if fs.paths is not None else [""] * n,
                "label": labels if labels.dtype.kind in "iu" else labels.astype(str),
                "split": fs.split.astype(str) if fs.split is not None else ["train"] * n,
            }
        )
        rows.to_parquet(tmp / ROWS, index=False)
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "n": n,
            "models": models,
            "has_paths": fs.paths is not None,
            "has_split": fs.split is not None,
            "meta": fs.meta or {},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        if path.exists():  # an older store: move it aside, put the new one in place, drop the old one
            old = path.parent / f".{path.name}.old-{secrets.token_hex(4)}"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _manifest(path: Path) -> dict:
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CoresetError(f"Features store {path}: {MANIFEST} cannot be read ({exc}); write the store again.") from exc
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("models"), dict):
        raise CoresetError(f"Features store {path}: {MANIFEST} is not a Coreset Studio features store manifest.")
    if int(manifest.get("version", 0)) > VERSION:
        raise CoresetError(
            f"Features store {path} has version {manifest['version']}, newer than this "
            f"Coreset Studio reads ({VERSION}); upgrade coreset-studio."
        )
    return manifest


def open_feature_store(path: str | os.PathLike):
    """The store at ``path`` as a :class:`~core.features.FeatureSet` whose features are copy-on-write
    memory maps (the file is never changed) (``numpy.memmap``-backed ``[n, D]`` float32); labels, paths and splits in memory."""
    import pandas as pd

    from .features import FeatureSet

    path = Path(path)
    manifest = _manifest(path)
    n = int(manifest["n"])
    try:
        rows = pd.read_parquet(path / ROWS)
    except Exception as exc:
        raise CoresetError(
            f"Features store {path}: {ROWS} cannot be read ({type(exc).__name__}: {exc}); write the store again."
        ) from exc
    if len(rows) != n:
        raise CoresetError(f"Features store {path}: {ROWS} has {len(rows)} rows, the manifest says {n}.")
    feats = {}
    for name, spec in manifest["models"].items():
        file = path / str(spec["file"])
        try:
            # copy-on-write: the file is never changed, and torch.from_numpy gets a writable array
            x = np.load(file, mmap_mode="c", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise CoresetError(
                f"Features store {path}: features of {name!r} ({file.name}) cannot be read "
                f"({exc}); write the store again."
            ) from exc
        if x.dtype != np.float32 or x.shape != (n, int(spec["dim"])) or not x.flags.c_contiguous:
            raise CoresetError(
                f"Features store {path}: {file.name} holds {x.dtype} {x.shape}, expected float32 "
                f"({n}, {spec['dim']}); write the store again."
            )
        feats[name] = x
    fs = FeatureSet(
        features=feats,
        labels=rows["label"].to_numpy(),
        paths=rows["path"].to_numpy().astype(str) if manifest.get("has_paths", True) else None,
        split=rows["split"].to_numpy().astype(str) if manifest.get("has_split", True) else None,
        meta=dict(manifest.get("meta") or {}),
    )
    return fs


def store_file_ids(path: str | os.PathLike) -> np.ndarray:
    """The content hash (``file_id``) of every row of the store at ``path`` (``""`` where unknown)."""
    import pandas as pd

    return pd.read_parquet(Path(path) / ROWS, columns=["file_id"])["file_id"].to_numpy().astype(str)


def verify_feature_store(path: str | os.PathLike) -> list[str]:
    """Re-hash every feature file of the store; the models whose file does not match its sha256."""
    path = Path(path)
    manifest = _manifest(path)
    return [
        name for name, spec in manifest["models"].items() if _file_sha256(path / str(spec["file"])) != spec["sha256"]
    ]
