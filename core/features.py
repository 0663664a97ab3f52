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
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import CoresetError
from .workspace import atomic_save_npz

FEAT_PREFIX = "feat_"


@dataclass
class FeatureSet:
    """Embeddings of ``N`` images from one or more models, with their labels.

    Attributes:
        features: model name -> float32 array ``[N, D]`` (raw, not normalised).
        labels: ``[N]`` labels (strings or integers).
        paths: ``[N]`` image paths, or None when unknown.
        split: ``[N]`` split names, or None when unknown (treated as all ``train``).
        meta: JSON-serialisable provenance (fingerprint, model names, weights, versions).
    """

    features: dict[str, np.ndarray]
    labels: np.ndarray
    paths: np.ndarray | None = None
    split: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels)
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
            self.features[name] = np.ascontiguousarray(arr, dtype=np.float32)
        for attr in ("paths", "split"):
            value = getattr(self, attr)
            if value is not None:
                value = np.asarray(value).astype(str)
                if value.shape != (n,):
                    raise CoresetError(f"{attr} has shape {value.shape} but there are {n} labels.")
                setattr(self, attr, value)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def models(self) -> list[str]:
        return list(self.features)

    def subset(self, mask_or_index: np.ndarray) -> "FeatureSet":
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
    arrays: dict[str, np.ndarray] = {f"{FEAT_PREFIX}{k}": v for k, v in fs.features.items()}
    labels = fs.labels
    arrays["labels"] = labels if labels.dtype.kind in "iu" else labels.astype(str)
    if fs.paths is not None:
        arrays["paths"] = fs.paths.astype(str)
    if fs.split is not None:
        arrays["split"] = fs.split.astype(str)
    if fs.meta:
        arrays["meta"] = np.array(json.dumps(fs.meta, sort_keys=True))
    return atomic_save_npz(path, **arrays)


def load_features(path: str | os.PathLike) -> FeatureSet:
    """Read a features npz; raise :class:`CoresetError` naming the file on any problem."""
    path = Path(path)
    if not path.is_file():
        raise CoresetError(f"Features file {path} does not exist; create it with `coreset-studio embed`.")
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise CoresetError(f"Features file {path} is not a readable .npz file ({exc}).") from exc
    feats = {k[len(FEAT_PREFIX):]: v for k, v in data.items() if k.startswith(FEAT_PREFIX)}
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
            features=feats,
            labels=data["labels"],
            paths=data.get("paths"),
            split=data.get("split"),
            meta=meta,
        )
    except CoresetError as exc:
        raise CoresetError(f"Features file {path}: {exc}") from exc
