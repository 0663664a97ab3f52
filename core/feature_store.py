"""The features store: a feature set on disk, read memory-mapped, written and grown in row chunks.

A store is a folder (``coreset-studio embed ... --out features.store``) holding

===========================  =============================================================
file                         content
===========================  =============================================================
``store.json``               format, version, ``n`` rows, per model its width and ``.npy``
                             file, the row chunks (``start``, ``stop``, rows file, and per
                             model the sha256 of that chunk's bytes), ``meta`` (provenance,
                             as in the ``.npz``)
``rows-<k>.parquet``         the rows of chunk ``k`` in dataset order: ``file_id`` (the
                             image's content hash, :func:`core.datasets.images.file_identity`,
                             empty when unknown), ``path``, ``label``, ``split``
``<model>.npy``              float32 ``[n, D]`` raw features of one model, C order, one
                             file per model holding every chunk's rows one after the other
===========================  =============================================================

Every row is keyed by its image's content hash (``file_id``) and every chunk of every feature
file by its own sha256, so a store can be checked (:func:`verify_feature_store`) and an
:func:`append_feature_store` adds only the images the store does not hold yet.

**Reading.** :func:`open_feature_store` maps each ``.npy`` read-only (``numpy.load(mmap_mode="r")``;
not copy-on-write: Linux counts a private writable mapping against its commit limit, so a
copy-on-write map of a store larger than RAM fails with ENOMEM): opening costs the labels and paths only,
and the OS pages the features in as a selector reads them, so 10M x 768 float32 (30 GB)
opens on a machine with far less RAM, and a model's features are one contiguous ``[n, D]``
array however many chunks wrote them.

**Writing.** :class:`FeatureStoreWriter` appends a chunk in three steps: the chunk's bytes
after the ``.npy``'s last row, the ``.npy`` header's row count (NumPy pads ``.npy`` headers so
that the first axis can grow in place), and last ``store.json`` (written atomically). The
manifest is the commit: a reader takes its ``n`` rows and ignores anything after them, so a
write interrupted at any point leaves the store as it was after the last finished chunk, and
the next writer cuts the unfinished tail off before it appends. :func:`save_feature_store`
writes a whole feature set chunk by chunk (:data:`CHUNK_ROWS`) into a temporary folder and
renames it into place.

:func:`core.features.load_features` opens a store as well as an ``.npz``, so ``select``,
``run`` and every caller of it (the app's loading path included) accept either. Stores of
version 1 (one ``rows.parquet``, one sha256 per file) are read too.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CoresetError
from .hashing import file_digest

FORMAT = "coreset-studio-features-store"
VERSION = 2
MANIFEST = "store.json"
ROWS_V1 = "rows.parquet"
#: Rows written (and hashed) per chunk by :func:`save_feature_store`: 65536 x 768 float32 = 192 MiB.
CHUNK_ROWS = 65536
_SAFE = re.compile(r"[^A-Za-z0-9_.\-]")
_DTYPE = np.dtype("<f4")


def is_feature_store(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder with a ``store.json``."""
    return (Path(path) / MANIFEST).is_file()


def _sha256_rows(x: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(x, dtype=_DTYPE).data.cast("B")).hexdigest()


# ----------------------------------------------------------------------------- .npy in place
def _npy_header(fh) -> tuple[tuple[int, ...], int]:
    """``(shape, header length in bytes)`` of the float32 C-order ``.npy`` open in ``fh``."""
    fh.seek(0)
    version = np.lib.format.read_magic(fh)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(fh)
    if fortran or np.dtype(dtype) != _DTYPE or len(shape) != 2:
        raise ValueError(f"holds {np.dtype(dtype)} {shape} (fortran order {fortran}), expected float32 [n, D]")
    return tuple(int(s) for s in shape), fh.tell()


def _write_npy_header(fh, rows: int, dim: int, length: int | None = None) -> None:
    """Write the header of a float32 ``[rows, dim]`` ``.npy`` at the start of ``fh``.

    NumPy pads the header so that the row count can grow to 21 digits without changing its
    length; ``length`` (the current header's) is checked, so the data never moves."""
    fh.seek(0)
    np.lib.format.write_array_header_1_0(fh, {"descr": _DTYPE.str, "fortran_order": False, "shape": (rows, dim)})
    if length is not None and fh.tell() != length:  # pragma: no cover - numpy's padding guarantees it
        raise CoresetError(f"The .npy header changed length ({length} -> {fh.tell()}); write the store again.")


def _create_npy(path: Path, dim: int) -> None:
    with open(path, "xb") as fh:
        _write_npy_header(fh, 0, dim)


# ----------------------------------------------------------------------------- manifest
def _write_manifest(path: Path, manifest: dict) -> None:
    from .workspace import atomic_write_text

    atomic_write_text(path / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True, default=str))


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


def _rows_files(manifest: dict) -> list[str]:
    if int(manifest.get("version", 1)) < 2:
        return [ROWS_V1]
    return [str(c["rows"]) for c in manifest.get("chunks", [])]


def _read_rows(path: Path, manifest: dict, columns: list[str] | None = None):
    import pandas as pd

    frames = []
    for name in _rows_files(manifest):
        try:
            frames.append(pd.read_parquet(path / name, columns=columns))
        except Exception as exc:
            raise CoresetError(
                f"Features store {path}: {name} cannot be read ({type(exc).__name__}: {exc}); write the store again."
            ) from exc
    if not frames:
        return pd.DataFrame(
            {c: pd.Series([], dtype=object) for c in (columns or ["file_id", "path", "label", "split"])}
        )
    rows = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if len(rows) != int(manifest["n"]):
        raise CoresetError(
            f"Features store {path}: the rows files hold {len(rows)} rows, the manifest says {manifest['n']}."
        )
    return rows


# ----------------------------------------------------------------------------- writing
class FeatureStoreWriter:
    """Creates a store at ``path``, or opens the store there to append to it; :meth:`append` adds row chunks.

    Args:
        path: the store folder. A new one is created (its parent too); an existing store is
            opened for appending (its models must be ``dims``' when given); an existing file
            or a folder that is not a store is refused.
        dims: model name -> feature width, for a new store (default: taken from the first
            :meth:`append`).
        meta: provenance for a new store (kept as it is by later appends).

    Every :meth:`append` is committed when it returns (see the module docstring); an
    interrupted one leaves the store as it was before it.
    """

    def __init__(
        self, path: str | os.PathLike, dims: Mapping[str, int] | None = None, meta: Mapping[str, Any] | None = None
    ) -> None:
        self.path = Path(path)
        if self.path.exists() and not is_feature_store(self.path):
            raise CoresetError(
                f"{self.path} exists and is not a features store; give --out a new folder name "
                "(e.g. features.store) or a .npz file."
            )
        if is_feature_store(self.path):
            self.manifest = _manifest(self.path)
            if int(self.manifest.get("version", 1)) < 2:
                raise CoresetError(
                    f"Features store {self.path} has version 1, which cannot be appended to; write it again "
                    "(embed ... --out) to get a version 2 store."
                )
            have = {m: int(s["dim"]) for m, s in self.manifest["models"].items()}
            if dims is not None and have and dict(dims) != have:
                raise CoresetError(
                    f"Features store {self.path} holds models {have}, not {dict(dims)}; write a new store "
                    "for another set of models."
                )
            self._repair()
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            self.manifest = {
                "format": FORMAT,
                "version": VERSION,
                "n": 0,
                "models": {},
                "chunks": [],
                "label_kind": None,
                "has_paths": True,
                "has_split": True,
                "meta": dict(meta or {}),
            }
            if dims:
                self._add_models(dims)
            _write_manifest(self.path, self.manifest)
        self._known: set[str] | None = None

    @property
    def n(self) -> int:
        """Rows committed so far."""
        return int(self.manifest["n"])

    def _add_models(self, dims: Mapping[str, int]) -> None:
        for name, d in dims.items():
            file = f"{_SAFE.sub('_', str(name))}.npy"
            if any(s["file"] == file for s in self.manifest["models"].values()):
                file = f"{_SAFE.sub('_', str(name))}-{secrets.token_hex(4)}.npy"
            _create_npy(self.path / file, int(d))
            self.manifest["models"][str(name)] = {"dim": int(d), "file": file}

    def _repair(self) -> None:
        """Cut what an interrupted append left after the committed rows (feature bytes, rows files)."""
        n = self.n
        for name, spec in self.manifest["models"].items():
            file = self.path / str(spec["file"])
            try:
                with open(file, "r+b") as fh:
                    (rows, dim), length = _npy_header(fh)
                    if dim != int(spec["dim"]) or rows < n:
                        raise ValueError(f"holds [{rows}, {dim}], the manifest says [{n}, {spec['dim']}]")
                    end = length + n * dim * _DTYPE.itemsize
                    if rows != n or os.fstat(fh.fileno()).st_size != end:
                        fh.truncate(end)
                        _write_npy_header(fh, n, dim, length)
            except (OSError, ValueError) as exc:
                raise CoresetError(
                    f"Features store {self.path}: features of {name!r} ({file.name}) cannot be appended to "
                    f"({exc}); write the store again."
                ) from exc
        listed = set(_rows_files(self.manifest))
        for stray in self.path.glob("rows-*.parquet"):
            if stray.name not in listed:
                stray.unlink(missing_ok=True)

    def known_file_ids(self) -> set[str]:
        """The content hashes of the rows in the store (read once, then kept up to date)."""
        if self._known is None:
            ids = _read_rows(self.path, self.manifest, ["file_id"])["file_id"].astype(str)
            self._known = {i for i in ids if i}
        return self._known

    def append(
        self,
        features: Mapping[str, np.ndarray],
        labels: Sequence | np.ndarray,
        *,
        paths: Sequence[str] | np.ndarray | None = None,
        split: Sequence[str] | np.ndarray | None = None,
        file_ids: Sequence[str] | np.ndarray | None = None,
        skip_known: bool = False,
    ) -> int:
        """Append one chunk of rows; returns how many rows were added.

        ``features``: model -> ``[k, D]`` (every model of the store, cast to float32);
        ``labels``, ``paths``, ``split``, ``file_ids``: ``k`` entries each (paths, split and
        file ids optional). With ``skip_known``, rows whose ``file_id`` the store holds
        already (or that repeat one earlier in the chunk) are left out.
        """
        import pandas as pd

        if not self.manifest["models"]:
            self._add_models({m: int(np.shape(x)[1]) for m, x in features.items()})
        models = self.manifest["models"]
        if set(features) != set(models):
            raise CoresetError(
                f"Features store {self.path} holds models {sorted(models)}; the rows to append have {sorted(features)}."
            )
        labels = np.asarray(labels)
        k = len(labels)
        for m, x in features.items():
            if np.shape(x) != (k, int(models[m]["dim"])):
                raise CoresetError(
                    f"Features store {self.path}: {m!r} rows to append are {np.shape(x)}, expected ({k}, {models[m]['dim']})."
                )
        for what, v in (("paths", paths), ("split", split), ("file_ids", file_ids)):
            if v is not None and len(v) != k:
                raise CoresetError(f"Features store {self.path}: {what} has {len(v)} entries for {k} rows.")
        ids = np.asarray([str(f) for f in file_ids]) if file_ids is not None else np.full(k, "", dtype=object)
        keep = np.ones(k, dtype=bool)
        if skip_known and file_ids is not None:
            known = self.known_file_ids()
            seen: set[str] = set()
            for i, f in enumerate(ids):
                if f and (f in known or f in seen):
                    keep[i] = False
                seen.add(f)
        if not keep.all():
            features = {m: np.asarray(x)[keep] for m, x in features.items()}
            labels, ids = labels[keep], ids[keep]
            paths = np.asarray(paths)[keep] if paths is not None else None
            split = np.asarray(split)[keep] if split is not None else None
        k = int(keep.sum())
        if k == 0:
            return 0

        kind = "int" if labels.dtype.kind in "iu" else "str"
        if self.manifest.get("label_kind") not in (None, kind):
            raise CoresetError(
                f"Features store {self.path} holds {self.manifest['label_kind']} labels; the rows to append have {kind} labels."
            )
        n = self.n
        # 1. the features after the last committed row, then the header's row count
        digests = {}
        for m, spec in models.items():
            x = np.ascontiguousarray(features[m], dtype=_DTYPE)
            with open(self.path / str(spec["file"]), "r+b") as fh:
                (_rows, dim), length = _npy_header(fh)
                fh.seek(length + n * dim * _DTYPE.itemsize)
                fh.write(x.data.cast("B"))
                fh.flush()
                os.fsync(fh.fileno())
                _write_npy_header(fh, n + k, dim, length)
                fh.flush()
                os.fsync(fh.fileno())
            digests[m] = _sha256_rows(x)
        # 2. the chunk's rows
        from .workspace import atomic_write_with

        rows_name = f"rows-{len(self.manifest['chunks']):05d}-{secrets.token_hex(3)}.parquet"
        frame = pd.DataFrame(
            {
                "file_id": ids.astype(str),
                "path": np.asarray(paths).astype(str) if paths is not None else np.full(k, ""),
                "label": labels if kind == "int" else labels.astype(str),
                "split": np.asarray(split).astype(str) if split is not None else np.full(k, "train"),
            }
        )
        atomic_write_with(self.path / rows_name, lambda fh: frame.to_parquet(fh, index=False))
        # 3. the manifest: the commit
        manifest = dict(self.manifest)
        manifest["chunks"] = [
            *self.manifest["chunks"],
            {"start": n, "stop": n + k, "rows": rows_name, "sha256": digests},
        ]
        manifest["n"] = n + k
        manifest["label_kind"] = kind
        first = n == 0  # a store whose first chunk has no paths (split) has none at all
        manifest["has_paths"] = paths is not None and (first or bool(self.manifest.get("has_paths", True)))
        manifest["has_split"] = split is not None and (first or bool(self.manifest.get("has_split", True)))
        _write_manifest(self.path, manifest)
        self.manifest = manifest
        if self._known is not None:
            self._known.update(i for i in ids if i)
        return k


def save_feature_store(
    path: str | os.PathLike, fs, file_ids: Sequence[str] | None = None, chunk_rows: int = CHUNK_ROWS
) -> Path:
    """Write the :class:`~core.features.FeatureSet` ``fs`` as a store folder at ``path`` (atomically).

    Written in chunks of ``chunk_rows`` rows into a temporary folder that is renamed into place,
    so ``fs``'s arrays may themselves be memory-mapped. ``file_ids``: the images' content
    hashes, one per row (optional). An existing store at ``path`` is replaced; an existing
    file or a folder that is not a store is refused.
    """
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
    try:
        writer = FeatureStoreWriter(tmp, {m: int(x.shape[1]) for m, x in fs.features.items()}, fs.meta)
        _append_in_chunks(writer, fs, file_ids, chunk_rows, skip_known=False)
        if n == 0:  # no chunk was appended to record whether there are paths and splits
            writer.manifest["has_paths"] = fs.paths is not None
            writer.manifest["has_split"] = fs.split is not None
            _write_manifest(tmp, writer.manifest)
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


def append_feature_store(path: str | os.PathLike, fs, file_ids: Sequence[str], chunk_rows: int = CHUNK_ROWS) -> int:
    """Add the rows of ``fs`` whose content hash (``file_ids``) the store at ``path`` does not hold.

    The store is created when there is none. Returns the number of rows added. The models
    (names and widths) must be the store's.
    """
    if len(file_ids) != len(fs):
        raise CoresetError(f"file_ids has {len(file_ids)} entries for {len(fs)} rows.")
    writer = FeatureStoreWriter(path, {m: int(x.shape[1]) for m, x in fs.features.items()}, fs.meta)
    return _append_in_chunks(writer, fs, file_ids, chunk_rows, skip_known=True)


def _append_in_chunks(writer: FeatureStoreWriter, fs, file_ids, chunk_rows: int, *, skip_known: bool) -> int:
    """Append the rows of the feature set ``fs`` in chunks of ``chunk_rows``; the number of rows added."""
    labels = np.asarray(fs.labels)
    n, step, added = len(fs), max(1, int(chunk_rows)), 0
    for a in range(0, n, step):
        b = min(n, a + step)
        added += writer.append(
            {m: x[a:b] for m, x in fs.features.items()},
            labels[a:b],
            paths=fs.paths[a:b] if fs.paths is not None else None,
            split=fs.split[a:b] if fs.split is not None else None,
            file_ids=list(file_ids[a:b]) if file_ids is not None else None,
            skip_known=skip_known,
        )
    return added


# ----------------------------------------------------------------------------- reading
def open_feature_store(path: str | os.PathLike):
    """The store at ``path`` as a :class:`~core.features.FeatureSet` whose features are read-only
    memory maps (``numpy.memmap``-backed ``[n, D]`` float32; writing into them raises); labels,
    paths and splits in memory."""
    from .features import FeatureSet

    path = Path(path)
    manifest = _manifest(path)
    n = int(manifest["n"])
    rows = _read_rows(path, manifest, ["path", "label", "split"])  # not file_id: store_file_ids reads it
    feats = {}
    for name, spec in manifest["models"].items():
        file = path / str(spec["file"])
        try:
            # read-only and shared: never written, and not charged to the commit limit (a
            # copy-on-write map is, and fails with ENOMEM for a store larger than RAM + swap)
            x = np.load(file, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise CoresetError(
                f"Features store {path}: features of {name!r} ({file.name}) cannot be read "
                f"({exc}); write the store again."
            ) from exc
        if x.dtype != np.float32 or x.ndim != 2 or x.shape[0] < n or x.shape[1] != int(spec["dim"]):
            raise CoresetError(
                f"Features store {path}: {file.name} holds {x.dtype} {x.shape}, expected float32 "
                f"({n}, {spec['dim']}); write the store again."
            )
        feats[name] = x[:n] if x.shape[0] > n else x  # rows after n: an append that was interrupted
    labels = rows["label"].to_numpy()
    if manifest.get("label_kind") == "int" and n:
        labels = labels.astype(np.int64)
    fs = FeatureSet(
        features=feats,
        labels=labels,
        paths=rows["path"].to_numpy().astype(str) if manifest.get("has_paths", True) else None,
        split=rows["split"].to_numpy().astype(str) if manifest.get("has_split", True) else None,
        meta=dict(manifest.get("meta") or {}),
    )
    fs.digests = store_digests(manifest)
    return fs


def store_digests(manifest: dict) -> dict[str, str]:
    """Per model, a digest of its committed features from the chunks' recorded sha256s (no
    re-hashing; a version 1 store records one sha256 per file): what keys the store's
    neighbour graphs (:mod:`core.neighbors`)."""
    out = {}
    for name, spec in manifest["models"].items():
        h = hashlib.sha256(f"store:{name}:{manifest['n']}:{spec['dim']}\n".encode())
        if int(manifest.get("version", 1)) < 2:
            h.update(str(spec.get("sha256", "")).encode())
        else:
            for c in manifest.get("chunks", []):
                h.update(f"{c['start']}:{c['stop']}:{c['sha256'][name]}\n".encode())
        out[name] = h.hexdigest()
    return out


def store_file_ids(path: str | os.PathLike) -> np.ndarray:
    """The content hash (``file_id``) of every row of the store at ``path`` (``""`` where unknown)."""
    path = Path(path)
    return _read_rows(path, _manifest(path), ["file_id"])["file_id"].to_numpy().astype(str)


def verify_feature_store(path: str | os.PathLike) -> list[str]:
    """Re-hash the features of the store chunk by chunk; the models whose bytes do not match their sha256."""
    path = Path(path)
    manifest = _manifest(path)
    if int(manifest.get("version", 1)) < 2:
        return [
            name
            for name, spec in manifest["models"].items()
            if file_digest(path / str(spec["file"]), "sha256") != spec["sha256"]
        ]
    bad = []
    for name, spec in manifest["models"].items():
        x = np.load(path / str(spec["file"]), mmap_mode="r", allow_pickle=False)
        if any(_sha256_rows(x[c["start"] : c["stop"]]) != c["sha256"][name] for c in manifest["chunks"]):
            bad.append(name)
    return bad
