"""On-disk embedding cache, keyed by (embedder identity, file identity).

Layout: ``<root>/<embedder identity>/shard-<time>-<random>.npz``; each shard is an
uncompressed ``.npz`` holding ``ids`` (``[n]`` unicode file identities), ``features``
(``[n, D]`` float32, raw) and ``checksum`` (sha256 hex of the ids and feature bytes). Shards are
append-only and written atomically (temp file + ``os.replace``), so concurrent readers see
complete files only. A ``meta.json`` next to them describes the embedder for humans.

* Lookup reads every shard of the identity folder (memoised in-process by file size and
  mtime) and returns the rows it finds; ids present in several shards take the newest.
* Shards of different widths (feature dimensions, e.g. written by another version of a
  model under the same identity) coexist: a lookup for width ``dim`` reads only the shards
  of that width and leaves the others alone.
* A shard that cannot be parsed, or whose checksum or shape does not match, is reported with a
  :class:`CacheCorruptionWarning`, deleted, and ignored: its images miss and get re-embedded
  and re-stored by the caller, i.e. the cache is rebuilt. A shard we may not read
  (permissions) is skipped, not deleted.
* When an identity folder holds more than ``max_shards`` shards they are merged into one
  per width.
* A write that fails (read-only folder, full disk) raises ``OSError`` from :meth:`store`;
  :meth:`try_store` instead warns once (:class:`CacheWriteWarning`, naming the folder, the
  error and what to do) and stops writing, so a run goes on and keeps its results.
* The temporaries a killed run left in a folder are removed the first time the cache
  touches that folder (:func:`core.workspace.clean_stale_temps`).

File identity = content hash (see :func:`core.datasets.images.file_identity`), so a changed file
misses and a renamed identical file hits.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .workspace import atomic_save_npz, atomic_write_text, clean_stale_temps, resolve_workspace, workspace_path

_IDENTITY_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


class CacheCorruptionWarning(UserWarning):
    """A cache shard was unreadable or failed its checksum; it was deleted and will be rebuilt."""


class CacheWriteWarning(UserWarning):
    """The cache could not be written (read-only folder, full disk); the run goes on without it."""


def _checksum(ids: np.ndarray, features: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(str(ids.dtype).encode() + b"|" + str(features.shape).encode() + b"|")
    h.update(np.ascontiguousarray(ids).tobytes())
    h.update(np.ascontiguousarray(features, dtype=np.float32).tobytes())
    return h.hexdigest()


def cache_root(workspace: str | os.PathLike | None = None) -> Path:
    """Folder of the embedding cache in ``workspace`` (default: the default workspace)."""
    return resolve_workspace(workspace) / "embeddings"


class EmbeddingCache:
    """Embedding cache in ``root`` (default ``<default workspace>/embeddings``).

    Args:
        root: cache folder; created on first store.
        max_shards: merge an identity's shards into one when there are more than this.
    """

    def __init__(self, root: str | os.PathLike | None = None, *, max_shards: int = 32) -> None:
        self.root = Path(root).expanduser().resolve() if root is not None else workspace_path() / "embeddings"
        self.max_shards = max_shards
        # path -> ((size, mtime_ns), ids, features)
        self._memo: dict[Path, tuple[tuple[int, int], np.ndarray, np.ndarray]] = {}
        self._cleaned: set[Path] = set()
        #: The first error :meth:`try_store` met; once set, :meth:`try_store` writes nothing.
        self.write_error: OSError | None = None

    @classmethod
    def in_workspace(cls, workspace: str | os.PathLike | None = None) -> EmbeddingCache:
        """The cache of ``workspace`` (default: the default workspace): ``<workspace>/embeddings``.

        Creates nothing: a workspace that cannot be created shows as a failed write later.
        """
        return cls(workspace_path(workspace) / "embeddings")

    # ------------------------------------------------------------------ helpers
    def folder(self, embedder_identity: str) -> Path:
        if not _IDENTITY_RE.match(embedder_identity):
            raise ValueError(f"embedder identity {embedder_identity!r} is not a safe folder name")
        folder = self.root / embedder_identity
        if folder not in self._cleaned:
            self._cleaned.add(folder)
            clean_stale_temps(folder)
        return folder

    def _shards(self, folder: Path) -> list[Path]:
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.glob("shard-*.npz") if p.is_file())

    def _drop_corrupt(self, path: Path, reason: str) -> None:
        warnings.warn(
            f"Embedding cache file {path} is corrupt ({reason}); deleting it - its images will be re-embedded.",
            CacheCorruptionWarning,
            stacklevel=3,
        )
        self._memo.pop(path, None)
        try:
            path.unlink()
        except OSError:  # gone already, or a read-only folder: it stays ignored
            pass

    def _read_shard(self, path: Path) -> tuple[np.ndarray, np.ndarray] | None:
        try:
            st = path.stat()
        except FileNotFoundError:  # merged away by another process
            return None
        key = (st.st_size, st.st_mtime_ns)
        memo = self._memo.get(path)
        if memo is not None and memo[0] == key:
            return memo[1], memo[2]
        try:
            with np.load(path, allow_pickle=False) as z:
                ids = np.asarray(z["ids"])
                feats = np.asarray(z["features"])
                checksum = str(z["checksum"])
        except (FileNotFoundError, PermissionError):  # merged away, or not ours to read: skip, keep
            return None
        except Exception as exc:  # noqa: BLE001 - BadZipFile, EOFError, KeyError, ValueError, OSError ...: drop it
            self._drop_corrupt(path, f"{type(exc).__name__}: {exc}")
            return None
        if ids.ndim != 1 or feats.ndim != 2 or len(ids) != len(feats) or feats.dtype != np.float32:
            self._drop_corrupt(path, f"bad shapes ids {ids.shape} features {feats.shape} {feats.dtype}")
            return None
        if ids.dtype.kind != "U":
            self._drop_corrupt(path, f"ids have dtype {ids.dtype}")
            return None
        if _checksum(ids, feats) != checksum:
            self._drop_corrupt(path, "checksum mismatch")
            return None
        self._memo[path] = (key, ids, feats)
        return ids, feats

    def _load_all(self, embedder_identity: str, dim: int | None = None) -> list[tuple[Path, np.ndarray, np.ndarray]]:
        """Every readable shard of an identity (oldest first); with ``dim``, only those of that width."""
        out = []
        folder = self.folder(embedder_identity)
        listing = self._shards(folder)
        for stale in [p for p in self._memo if p.parent == folder and p not in listing]:
            del self._memo[stale]
        for path in listing:
            got = self._read_shard(path)
            if got is None:
                continue
            ids, feats = got
            if dim is not None and feats.shape[1] != dim:
                continue  # another width: not corrupt, just not this lookup's
            out.append((path, ids, feats))
        return out

    # ------------------------------------------------------------------ API
    def lookup(
        self, embedder_identity: str, file_ids: Sequence[str], dim: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (found mask ``[N]`` bool, features ``[N, D]`` float32 with NaN rows where missing).

        ``dim``: read only the shards of that width (``D == dim``); others are left alone.
        Without it, the width of the newest shard. ``D`` is 0 when nothing of that width is
        cached for this identity.
        """
        file_ids = [str(f) for f in file_ids]
        shards = self._load_all(embedder_identity, dim)
        if shards and dim is None:
            dim = shards[-1][2].shape[1]
            shards = [s for s in shards if s[2].shape[1] == dim]
        n = len(file_ids)
        if not shards:
            return np.zeros(n, dtype=bool), np.full((n, 0), np.nan, dtype=np.float32)
        index: dict[str, tuple[int, int]] = {}
        for s, (_, ids, _) in enumerate(shards):  # later (newer) shards overwrite
            for row, fid in enumerate(ids.tolist()):
                index[fid] = (s, row)
        assert dim is not None  # given, or the newest shard's width (above)
        found = np.zeros(n, dtype=bool)
        feats = np.full((n, dim), np.nan, dtype=np.float32)
        for i, fid in enumerate(file_ids):
            hit = index.get(fid)
            if hit is not None:
                found[i] = True
                feats[i] = shards[hit[0]][2][hit[1]]
        return found, feats

    def store(
        self, embedder_identity: str, file_ids: Sequence[str], features: np.ndarray, *, meta: dict | None = None
    ) -> None:
        """Append rows (``file_ids[i]`` -> ``features[i]``) as one new shard, atomically.

        ``meta`` (optional, JSON-serialisable) is written once as ``meta.json``.
        """
        ids = np.asarray([str(f) for f in file_ids])
        if ids.dtype.kind != "U":
            ids = ids.astype(str)
        feats = np.ascontiguousarray(features, dtype=np.float32)
        if feats.ndim != 2 or len(feats) != len(ids):
            raise ValueError(f"features must be [N, D] with N = {len(ids)} ids, got {feats.shape}")
        if len(ids) == 0:
            return
        if not np.isfinite(feats).all():
            raise ValueError("refusing to cache non-finite features")
        folder = self.folder(embedder_identity)
        folder.mkdir(parents=True, exist_ok=True)
        if meta is not None and not (folder / "meta.json").exists():
            atomic_write_text(folder / "meta.json", json.dumps(meta, indent=2, sort_keys=True, default=str))
        self._write_shard(folder, ids, feats)
        shards = self._shards(folder)
        if len(shards) > self.max_shards:
            self.compact(embedder_identity)

    def try_store(
        self, embedder_identity: str, file_ids: Sequence[str], features: np.ndarray, *, meta: dict | None = None
    ) -> bool:
        """:meth:`store`, but a failed write (``OSError``) warns once and disables further writes.

        The :class:`CacheWriteWarning` names the cache folder, the error and what to do.
        Returns True when the rows were stored.
        """
        if self.write_error is not None:
            return False
        try:
            self.store(embedder_identity, file_ids, features, meta=meta)
        except OSError as exc:
            self.write_error = exc
            warnings.warn(CacheWriteWarning(cache_write_message(self.root, exc)), stacklevel=2)
            return False
        return True

    def _write_shard(self, folder: Path, ids: np.ndarray, feats: np.ndarray) -> Path:
        name = f"shard-{time.time_ns():020d}-{secrets.token_hex(4)}.npz"
        path = folder / name
        atomic_save_npz(path, compressed=False, ids=ids, features=feats, checksum=np.asarray(_checksum(ids, feats)))
        return path

    def compact(self, embedder_identity: str) -> None:
        """Merge all shards of an identity into one per width (newest row wins for repeated ids)."""
        folder = self.folder(embedder_identity)
        shards = self._load_all(embedder_identity)
        widths = sorted({feats.shape[1] for _, _, feats in shards})
        for width in widths:
            group = [s for s in shards if s[2].shape[1] == width]
            if len(group) <= 1:
                continue
            merged: dict[str, np.ndarray] = {}
            for _, ids, feats in group:
                for row, fid in enumerate(ids.tolist()):
                    merged[fid] = feats[row]
            ids = np.asarray(list(merged.keys()))
            feats = np.stack(list(merged.values())).astype(np.float32, copy=False)
            self._write_shard(folder, ids, feats)
            for path, _, _ in group:
                self._memo.pop(path, None)
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass

    def count(self, embedder_identity: str, dim: int | None = None) -> int:
        """Number of distinct file identities cached for an embedder identity (of width ``dim``)."""
        ids: set[str] = set()
        for _, i, _ in self._load_all(embedder_identity, dim):
            ids.update(i.tolist())
        return len(ids)

    def clear(self, embedder_identity: str | None = None) -> None:
        """Delete the cache of one embedder identity (or all of them)."""
        import shutil

        target = self.folder(embedder_identity) if embedder_identity else self.root
        self._memo.clear()
        self._cleaned.clear()
        shutil.rmtree(target, ignore_errors=True)


def cache_write_message(root: Path, exc: OSError) -> str:
    """What a failed cache write tells the user: the folder, the error and what to do."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    where = f" ({exc.filename})" if exc.filename else ""
    return (
        f"Cannot write the embedding cache in {root}: {reason}{where}. Going on without caching: "
        "this run's embeddings are still computed and written to its output, but the next run "
        "computes them again. Make the folder writable or free some disk space, or choose a "
        "writable cache folder with --workspace DIR (or $CORESET_STUDIO_HOME), or pass --no-cache."
    )
