"""The features file: what ``coreset-studio embed`` writes and ``coreset-studio select`` reads.

Format (a compressed ``.npz``, readable with ``numpy.load(path)`` and no pickling):

==================  ==========================================================
key                 content
==================  ==========================================================
``feat_<model>``    float32 ``[N, D_model]``, raw embeddings (no normalisation),
                    one array per model, e.g. ``feat_effnet-lite0``
``labels``          ``[N]`` class labels, strings (or integers)
``paths``           ``[N]`` image paths (optional)
``split``           ``[N]`` split of each row, e.g. ``train``/``test`` (optional)
``meta``            0-d string array holding JSON provenance (optional):
                    dataset fingerprint, models, weights, versions, ...
==================  ==========================================================

Files written by other tools with only ``feat_*`` arrays and ``labels`` are accepted.
Feature arrays must be numbers within the float32 range (they are stored as float32).
Labels, paths and splits written as byte strings (numpy ``S`` arrays) are decoded: labels
and splits as UTF-8 (a row that is not valid UTF-8 is refused, naming it), paths like file
names (UTF-8, undecodable bytes kept with ``surrogateescape`` so the file still opens).
Anything else (a ``.npy`` file, a pickle, a text file, object arrays) is refused with a
message naming the file and what to write instead; nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CoresetError
from .text import display_array
from .workspace import atomic_save_npz

FEAT_PREFIX = "feat_"

#: Largest finite float32 value; features are stored (and selected on) as float32.
FLOAT32_MAX = float(np.finfo(np.float32).max)

#: What a features file must look like, for error messages.
HOW_TO_WRITE = (
    "write it with `coreset-studio embed`, or with numpy.savez(path, feat_<model>=<float array [N, D]>, "
    "labels=<array [N]>)"
)

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first entry, or an empty zip
_NPY_MAGIC = b"\x93NUMPY"


def beyond_float32(x: np.ndarray, chunk_rows: int = 4096) -> tuple[int, int, float] | None:
    """``(row, column, value)`` of the first finite value of ``x`` outside the float32 range, or None.

    Only float arrays wider than float32 can hold one; the test runs over row blocks so it
    needs no array of the full size.
    """
    x = np.asarray(x)
    if x.dtype.kind != "f" or x.dtype.itemsize <= 4 or x.size == 0:
        return None
    x2 = x.reshape(len(x), -1)
    for start in range(0, len(x2), chunk_rows):
        block = x2[start : start + chunk_rows]
        with np.errstate(invalid="ignore"):
            over = (np.abs(block) > FLOAT32_MAX) & np.isfinite(block)
        if over.any():
            r, c = np.argwhere(over)[0]
            return int(start + r), int(c), float(block[r, c])
    return None


def float32_range_message(name: str, where: tuple[int, int, float]) -> str:
    row, col, value = where
    return (
        f"Features of model {name!r} have finite values beyond the float32 range (|x| up to {FLOAT32_MAX:.3g}), "
        f"e.g. {value:.3g} at row {row}, column {col}; features are used as float32, where these would become "
        "infinite: rescale them (divide by their largest absolute value) or L2-normalise them before saving."
    )


def _decode_text_array(value: np.ndarray, attr: str) -> np.ndarray:
    """A ``U`` array from ``value``: byte strings decoded (see the module docstring), the rest ``astype(str)``."""
    arr = np.asarray(value)
    if arr.dtype.kind == "S":
        if attr == "paths":
            return np.array([os.fsdecode(b) for b in arr.tolist()], dtype=str).reshape(arr.shape)
        out = []
        for i, raw in enumerate(arr.tolist()):
            try:
                out.append(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise CoresetError(
                    f"{attr} row {i} is not UTF-8 text ({raw!r}: byte {raw[exc.start]:#04x} at position {exc.start}); "
                    f"write {attr} as text (a numpy str array) or UTF-8 bytes."
                ) from None
        return np.array(out, dtype=str).reshape(arr.shape)
    return arr.astype(str)


@dataclass
class FeatureSet:
    """Embeddings of ``N`` images from one or more models, with their labels.

    Attributes:
        features: model name -> float32 array ``[N, D]`` (raw, not normalised).
        labels: ``[N]`` labels (strings or integers).
        paths: ``[N]`` image paths, or None when unknown.
        split: ``[N]`` split names, or None when unknown (treated as all ``train``).
        meta: JSON-serialisable provenance (fingerprint, model names, weights, versions).
        digests: model -> digest of its features when known without hashing them (a
            features store's, from its chunk sha256s); not saved. Keys neighbour graphs.
    """

    features: dict[str, np.ndarray]
    labels: np.ndarray
    paths: np.ndarray | None = None
    split: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels)
        if self.labels.dtype.kind == "S":
            self.labels = _decode_text_array(self.labels, "labels")
        if self.labels.dtype.kind == "U":
            self.labels = display_array(self.labels)  # labels are names for people (see core.text)
        if self.labels.ndim != 1:
            raise CoresetError(f"labels must be 1-D, got shape {self.labels.shape}.")
        n = len(self.labels)
        if not self.features:
            raise CoresetError("A feature set needs at least one model's features (feat_<model> arrays).")
        for name, arr in list(self.features.items()):
            arr = np.asarray(arr)
            if arr.ndim != 2:
                raise CoresetError(f"Features of model {name!r} must be 2-D [N, D], got shape {arr.shape}.")
            if arr.shape[0] != n:
                raise CoresetError(
                    f"Features of model {name!r} have {arr.shape[0]} rows but there are {n} labels; "
                    "every feat_* array needs one row per label."
                )
            if arr.dtype.kind not in "biuf":
                raise CoresetError(
                    f"Features of model {name!r} are not numbers (dtype {arr.dtype}); every feat_* array must be a "
                    "float (or integer) array [N, D]: convert it with .astype(numpy.float32) before saving."
                )
            where = beyond_float32(arr)
            if where is not None:
                raise CoresetError(float32_range_message(name, where))
            self.features[name] = np.ascontiguousarray(arr, dtype=np.float32)
        for attr in ("paths", "split"):
            value = getattr(self, attr)
            if value is not None:
                value = _decode_text_array(value, attr)
                if attr == "split":
                    value = display_array(value)
                if value.shape != (n,):
                    raise CoresetError(f"{attr} has shape {value.shape} but there are {n} labels.")
                setattr(self, attr, value)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def models(self) -> list[str]:
        return list(self.features)

    def subset(self, mask_or_index: np.ndarray) -> FeatureSet:
        """Return the rows selected by a boolean mask or an index array."""
        idx = np.asarray(mask_or_index)
        return FeatureSet(
            features={k: v[idx] for k, v in self.features.items()},
            labels=self.labels[idx],
            paths=None if self.paths is None else self.paths[idx],
            split=None if self.split is None else self.split[idx],
            meta=dict(self.meta),
        )


def save_features(path: str | os.PathLike, fs: FeatureSet) -> Path:
    """Write ``fs`` to ``path`` as a compressed npz (atomically)."""
    arrays: dict[str, Any] = {f"{FEAT_PREFIX}{k}": v for k, v in fs.features.items()}  # (Any: see atomic_save_npz)
    labels = fs.labels
    arrays["labels"] = labels if labels.dtype.kind in "iu" else labels.astype(str)
    if fs.paths is not None:
        arrays["paths"] = fs.paths.astype(str)
    if fs.split is not None:
        arrays["split"] = fs.split.astype(str)
    if fs.meta:
        arrays["meta"] = np.array(json.dumps(fs.meta, sort_keys=True))
    return atomic_save_npz(path, **arrays)


def _refuse_non_npz(path: Path) -> None:
    """Raise :class:`CoresetError` unless ``path`` starts like a zip archive (what an .npz is)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise CoresetError(
            f"Features file {path} cannot be read ({exc.strerror or exc}); check its permissions."
        ) from exc
    if not head:
        raise CoresetError(f"Features file {path} is empty (0 bytes); {HOW_TO_WRITE}.")
    if head.startswith(_NPY_MAGIC):
        raise CoresetError(
            f"Features file {path} is a single .npy array, not a .npz archive of named arrays "
            f"(feat_<model>, labels, ...); {HOW_TO_WRITE}."
        )
    if not head.startswith(_ZIP_MAGIC):
        what = (
            "it looks like a Python pickle, which is never loaded"
            if head[:1] == b"\x80"
            else "it does not start like a zip archive"
        )
        raise CoresetError(f"Features file {path} is not a .npz archive ({what}); {HOW_TO_WRITE}.")


def _read_array(npz, key: str, path: Path) -> np.ndarray:
    try:
        return npz[key]
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object arrays" in str(exc).lower():
            raise CoresetError(
                f"Features file {path}: array {key!r} holds Python objects (pickled data), which are never loaded; "
                f"save it as numbers or text (e.g. labels.astype(str)); {HOW_TO_WRITE}."
            ) from None
        raise CoresetError(
            f"Features file {path}: entry {key!r} is not a numpy array ({exc}); {HOW_TO_WRITE}."
        ) from exc
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, KeyError) as exc:
        raise CoresetError(
            f"Features file {path}: entry {key!r} is damaged ({type(exc).__name__}: {exc}); write the file again."
        ) from exc


def load_features(path: str | os.PathLike) -> FeatureSet:
    """Read a features npz, or a features store folder (:mod:`core.feature_store`, memory-mapped);
    raise :class:`CoresetError` naming the file on any problem."""
    path = Path(path)
    if path.is_dir():
        from .feature_store import is_feature_store, open_feature_store

        if not is_feature_store(path):
            raise CoresetError(
                f"{path} is a folder but not a features store (no store.json); give a features "
                f".npz file or a store written by `coreset-studio embed --out NAME.store`."
            )
        return open_feature_store(path)
    if not path.is_file():
        raise CoresetError(f"Features file {path} does not exist; create it with `coreset-studio embed`.")
    _refuse_non_npz(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: _read_array(npz, k, path) for k in npz.files}
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError) as exc:
        raise CoresetError(
            f"Features file {path} is a damaged or truncated .npz archive ({type(exc).__name__}: "
            f"{exc}); write it again (e.g. with `coreset-studio embed`)."
        ) from exc
    feats = {k[len(FEAT_PREFIX) :]: v for k, v in data.items() if k.startswith(FEAT_PREFIX)}
    if not feats:
        raise CoresetError(
            f"Features file {path} has no feat_<model> arrays (found keys: {sorted(data)}); "
            "write one float array [N, D] per model named feat_<model>."
        )
    if "labels" not in data:
        raise CoresetError(f"Features file {path} has no 'labels' array (found keys: {sorted(data)}).")
    meta = {}
    if "meta" in data:
        try:
            meta = json.loads(str(data["meta"]))
        except json.JSONDecodeError:
            meta = {}
    try:
        return FeatureSet(
            features=feats, labels=data["labels"], paths=data.get("paths"), split=data.get("split"), meta=meta
        )
    except CoresetError as exc:
        raise CoresetError(f"Features file {path}: {exc}") from exc
