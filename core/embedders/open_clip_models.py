"""open_clip-backed embedders: CLIP ViT-L/14 and ViT-B/32 (OpenAI), SigLIP B/16, EVA02-CLIP B/16,
and any open_clip architecture + pretrained tag (pass-through).

The feature is the projected image embedding, ``model.encode_image(x)`` *without* its
normalisation (open_clip's ``encode_image(normalize=False)``, i.e. ``model.visual(x)``), of
dimension ``embed_dim``. Only the image tower is kept in memory.

Weights load through one path: ``open_clip.create_model_and_transforms(arch,
pretrained=<local file>)``, where the file is the user's ``weights=`` file or the Hugging
Face cache's copy of the tag's weights. The tag's own preprocessing (mean, std,
interpolation, resize mode) and its QuickGELU flag are passed explicitly, because open_clip
only applies them by itself when given the tag name.
"""

from __future__ import annotations

import os

import torch

from ..errors import CoresetError
from ._weights import fetch_hf_weights, hf_status, load_error_text, local_weights
from .base import Embedder

OPEN_CLIP_OUTPUT = "open_clip projected image embedding: encode_image(x, normalize=False)"


class OpenClipImageEncoder(torch.nn.Module):
    """The image tower of an open_clip model: ``forward(x) == clip.encode_image(x)`` (unnormalised)."""

    def __init__(self, visual: torch.nn.Module) -> None:
        super().__init__()
        self.visual = visual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.visual(x)
        if isinstance(out, (tuple, list)):  # some towers return (pooled, tokens)
            out = out[0]
        return out


def _pretrained_cfg(arch: str, tag: str) -> dict:
    import open_clip

    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise CoresetError(
            f"open_clip has no pretrained tag {tag!r} for architecture {arch!r}; known tags: {tags or 'none'}. "
            "Pick one of them or pass --weights PATH."
        )
    return cfg


def open_clip_hub_files(arch: str, tag: str) -> tuple[str | None, list[str]]:
    """(hf repo id or None, candidate filenames) of an open_clip architecture + tag."""
    cfg = _pretrained_cfg(arch, tag)
    hub = cfg.get("hf_hub", "")
    if not hub:
        return None, []
    # open_clip's convention: "org/repo/" (default file name) or "org/repo/filename"
    repo, fname = (hub[:-1], "") if hub.endswith("/") else os.path.split(hub)
    if not fname or fname == "open_clip_pytorch_model.bin":
        files = ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    elif fname.endswith((".bin", ".pth")):
        files = [fname[:-4] + ".safetensors", fname]
    else:
        files = [fname]
    return repo, files


def open_clip_download_cmd(arch: str, tag: str) -> str:
    return f"python -c \"import open_clip; open_clip.create_model('{arch}', pretrained='{tag}')\""


def open_clip_weights_status(arch: str, tag: str) -> str:
    repo, files = open_clip_hub_files(arch, tag)
    if repo is None:
        return "needs download"
    return hf_status(repo, files)


def _check_arch(arch: str) -> None:
    import open_clip

    if arch not in open_clip.list_models():
        raise CoresetError(
            f"Unknown open_clip architecture {arch!r}; use one of open_clip.list_models() "
            "(e.g. ViT-B-32), optionally with a tag: open_clip:ViT-B-32:openai."
        )


def build_open_clip_embedder(
    name: str, arch: str, tag: str | None = None, *, weights: str | os.PathLike | None = None
) -> Embedder:
    """Create an open_clip model with real weights and wrap its image tower as an Embedder.

    Args:
        name: registry name (used in the identity).
        arch: open_clip architecture (``open_clip.list_models()``), e.g. ``"ViT-L-14"``.
        tag: pretrained tag (``open_clip.list_pretrained()``), e.g. ``"openai"``; its
            preprocessing and QuickGELU setting are used, also with a local ``weights`` file.
        weights: local checkpoint; when None the tag's hub weights are used (HF cache, or a
            download when reachable), else WeightsUnavailableError.
    """
    import open_clip

    _check_arch(arch)
    cfg = _pretrained_cfg(arch, tag) if tag else {}
    if weights is not None:
        path, weights_id = local_weights(weights, name)
    elif tag:
        repo, files = open_clip_hub_files(arch, tag)
        if repo is None:
            raise CoresetError(
                f"open_clip weights {arch}:{tag} (for {name!r}) are only published at {cfg.get('url')!r}, not on the "
                "Hugging Face Hub; download that file and pass it with --weights PATH."
            )
        path, weights_id = fetch_hf_weights(name, repo, files, open_clip_download_cmd(arch, tag))
    else:
        raise CoresetError(
            f"open_clip architecture {arch!r} needs a pretrained tag (open_clip:{arch}:<tag>, see "
            "open_clip.list_pretrained()) or a local checkpoint via --weights PATH."
        )
    kwargs = {}
    for key, arg in (
        ("mean", "image_mean"),
        ("std", "image_std"),
        ("interpolation", "image_interpolation"),
        ("resize_mode", "image_resize_mode"),
    ):
        if cfg.get(key):
            kwargs[arg] = cfg[key]
    try:
        model, _, preprocess_val = open_clip.create_model_and_transforms(
            arch, pretrained=str(path), force_quick_gelu=bool(cfg.get("quick_gelu", False)), **kwargs
        )
    except Exception as exc:
        raise CoresetError(
            f"Could not load weights {str(path)!r} into open_clip {arch!r} for {name!r}: "
            f"{load_error_text(exc)}. Pass a checkpoint saved from this exact architecture."
        ) from exc
    pp = dict(model.visual.preprocess_cfg)
    encoder = OpenClipImageEncoder(model.visual).eval()
    dim = int(open_clip.get_model_config(arch)["embed_dim"])
    size = pp.get("size", 224)
    size = (size, size) if isinstance(size, int) else tuple(size)
    preprocess = {k: pp[k] for k in sorted(pp)}
    preprocess.update(
        {
            "library": "open_clip",
            "arch": arch,
            "tag": tag or "",
            "input_size": (3, *size),
            "quick_gelu": bool(cfg.get("quick_gelu", False)),
        }
    )
    del model  # drop the text tower
    return Embedder(
        name,
        encoder,
        preprocess_val,
        dim,
        weights_id=weights_id,
        preprocess=preprocess,
        output=OPEN_CLIP_OUTPUT,
        family="open_clip",
    )
