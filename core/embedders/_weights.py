"""Where weights come from: local files, the Hugging Face cache, or (when reachable) the hub.

Nothing here blocks for long without a network: the cache is inspected first, offline mode
(``HF_HUB_OFFLINE=1``) is honoured, and before any download a 3-second TCP probe of the hub
decides whether trying is worth it (huggingface_hub itself would retry for ~25 s).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from ..errors import CoresetError, WeightsUnavailableError
from ..hashing import file_digest

WEIGHTS_HELP = "pass a local file: `--weights PATH` (a .safetensors/.bin/.pth state dict)"

_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 hex digest of a file's bytes (memoised in-process by path, size and mtime)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    hit = _SHA_MEMO.get(key)
    if hit is not None:
        return hit
    digest = file_digest(p, "sha256")
    _SHA_MEMO[key] = digest
    return digest


STATE_DICT_HELP = (
    "pass a .safetensors, .bin or .pth state dict saved from this model's architecture "
    "(e.g. torch.save(model.state_dict(), PATH)) with --weights"
)


def _not_a_state_dict(p: Path) -> str | None:
    """Why ``p`` cannot be a state dict, from its first bytes (None when it may be one).

    A safetensors file starts with its 8-byte little-endian header length and a JSON header
    (``{``); a torch.save file is a zip (``PK``) or, in the old format, a pickle (``\\x80``).
    """
    size = p.stat().st_size
    if size == 0:
        return "it is empty (0 bytes)"
    with open(p, "rb") as fh:
        head = fh.read(9)
    if len(head) == 9 and head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= size:
        return None  # safetensors
    if p.suffix.lower() == ".safetensors":
        return "it does not start with a safetensors header"
    if head.startswith(b"PK") or head[:1] == b"\x80":
        return None  # torch.save: zip or legacy pickle
    return "it is neither a safetensors file nor a torch.save file (zip or pickle)"


def load_error_text(exc: BaseException) -> str:
    """A short reason for a state dict that failed to load, without torch's advice to load it
    unsafely (``weights_only=False`` can run arbitrary code)."""
    text = str(exc)
    if "weights_only" in text or "Unpickl" in type(exc).__name__:
        return (
            "it holds pickled Python objects besides tensors, which are never loaded (torch.load with "
            "weights_only=True); save only the state dict"
        )
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first[:300]}" if first else type(exc).__name__


def local_weights(path: str | os.PathLike, model_label: str) -> tuple[Path, str]:
    """Check a user-given weights file; return (path, weights identity ``sha256:<hex>``).

    A missing path, a folder and a file that cannot be a state dict (empty, text, not
    safetensors / torch.save) are each a :class:`CoresetError` saying which."""
    p = Path(path).expanduser()
    if not p.exists():
        raise CoresetError(f"Weights file {str(p)!r} for model {model_label!r} does not exist; {STATE_DICT_HELP}.")
    if not p.is_file():
        raise CoresetError(
            f"Weights path {str(p)!r} for model {model_label!r} is a folder, not a file; {STATE_DICT_HELP}."
        )
    try:
        why = _not_a_state_dict(p)
    except OSError as exc:
        raise CoresetError(
            f"Weights file {str(p)!r} for model {model_label!r} cannot be read "
            f"({exc.strerror or exc}); check its permissions."
        ) from exc
    if why:
        raise CoresetError(
            f"Weights file {str(p)!r} for model {model_label!r} exists but is not a state dict "
            f"({why}); {STATE_DICT_HELP}."
        )
    return p.resolve(), "sha256:" + file_sha256(p)


def hf_cache_dir() -> str:
    """The Hugging Face hub cache folder, read from the environment at call time."""
    env = os.environ
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(var):
            return os.path.expanduser(env[var])
    if env.get("HF_HOME"):
        return os.path.join(os.path.expanduser(env["HF_HOME"]), "hub")
    xdg = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "huggingface", "hub")


def hf_offline() -> bool:
    """True when Hugging Face offline mode is on (env read at call time)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # noqa: BLE001 - pragma: no cover; an old or broken huggingface_hub: not offline
        return False


def split_revision(repo_id: str) -> tuple[str, str | None]:
    if "@" in repo_id:
        repo, rev = repo_id.split("@", 1)
        return repo, rev or None
    return repo_id, None


def find_cached_hf(repo_id: str, filenames: list[str], revision: str | None = None) -> tuple[Path, str] | None:
    """Return (path, weights identity) of the first of ``filenames`` in the HF cache, or None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return None
    cache_dir = hf_cache_dir()
    for fname in filenames:
        try:
            hit = try_to_load_from_cache(repo_id, fname, cache_dir=cache_dir, revision=revision)
        except Exception:  # noqa: BLE001 - a cache lookup that fails is a miss: try the next name
            continue
        if isinstance(hit, str) and os.path.isfile(hit):
            p = Path(hit)
            commit = p.parent.name if p.parent.parent.name == "snapshots" else (revision or "main")
            return p, f"hf:{repo_id}@{commit}/{fname}"
    return None


def hub_reachable(timeout: float = 3.0) -> bool:
    """Quick TCP probe of the hub endpoint (True when a proxy is configured: let it try)."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (443 if parsed.scheme != "http" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def unavailable_message(model_label: str, repo_id: str, download_cmd: str, reason: str) -> str:
    return (
        f"Model {model_label!r} needs weights from the Hugging Face Hub ({repo_id}) and none are cached here "
        f"({hf_cache_dir()}) {reason}. Download them on a machine with internet: `{download_cmd}` and copy "
        f"~/.cache/huggingface to this machine (or point HF_HOME at the copy), or {WEIGHTS_HELP}."
    )


def fetch_hf_weights(model_label: str, repo_id: str, filenames: list[str], download_cmd: str) -> tuple[Path, str]:
    """Find hub weights in the cache or download them; raise WeightsUnavailableError fast otherwise.

    ``repo_id`` may carry a revision as ``repo@rev``. Returns (local path, weights identity).
    """
    repo, rev = split_revision(repo_id)
    cached = find_cached_hf(repo, filenames, rev)
    if cached is not None:
        return cached
    if hf_offline():
        raise WeightsUnavailableError(
            unavailable_message(model_label, repo, download_cmd, "and offline mode is on (HF_HUB_OFFLINE)")
        )
    if not hub_reachable():
        raise WeightsUnavailableError(
            unavailable_message(model_label, repo, download_cmd, "and the hub cannot be reached")
        )
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:  # pragma: no cover
        raise WeightsUnavailableError(
            unavailable_message(model_label, repo, download_cmd, "and huggingface_hub is not installed")
        ) from exc
    last: Exception | None = None
    for fname in filenames:
        try:
            path = hf_hub_download(repo, fname, revision=rev, cache_dir=hf_cache_dir())
        except Exception as exc:  # noqa: BLE001 - EntryNotFound -> try the next name; anything else is reported
            last = exc
            continue
        found = find_cached_hf(repo, [fname], rev)
        if found is not None:
            return found
        return Path(path), f"hf:{repo}@{rev or 'main'}/{fname}"
    raise WeightsUnavailableError(
        unavailable_message(
            model_label, repo, download_cmd, f"and the download failed ({type(last).__name__}: {str(last)[:200]})"
        )
    )


def hf_status(repo_id: str, filenames: list[str]) -> str:
    """ "cached" or "needs download" (no network)."""
    repo, rev = split_revision(repo_id)
    return "cached" if find_cached_hf(repo, filenames, rev) is not None else "needs download"
