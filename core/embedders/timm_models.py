"""timm-backed embedders: DINOv2 (paper models) and any timm model by name (pass-through).

Weights always load through one path: a local state-dict file given to timm as
``pretrained_cfg_overlay=dict(file=...)``, so timm's own checkpoint filter (key remapping,
position-embedding resizing) applies. The file is either the user's ``weights=`` file or the
Hugging Face cache's copy of the model's hub weights (downloaded when the hub is reachable).
Preprocessing comes from the model's pretrained config (``timm.data.resolve_data_config``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..errors import CoresetError
from ._weights import fetch_hf_weights, hf_status, load_error_text, local_weights
from .base import Embedder

TIMM_HF_FILES = ["model.safetensors", "pytorch_model.bin"]

OUTPUT_POOLED = "pooled"  # forward_head(forward_features(x), pre_logits=True)
OUTPUT_CLS = "cls"  # forward_features(x)[:, 0]: CLS token after the final norm

_OUTPUT_TEXT = {
    OUTPUT_POOLED: "timm pooled pre-classifier features: forward_head(forward_features(x), pre_logits=True)",
    OUTPUT_CLS: "timm CLS token after the final norm: forward_features(x)[:, 0]",
}


# ``model`` is a timm model: forward_head and forward_features are timm's, not torch.nn.Module's.
def _forward_pooled(model: Any, x: torch.Tensor) -> torch.Tensor:
    return model.forward_head(model.forward_features(x), pre_logits=True)


def _forward_cls(model: Any, x: torch.Tensor) -> torch.Tensor:
    return model.forward_features(x)[:, 0]


def timm_pretrained_cfg(model_name: str):
    import timm.models

    try:
        cfg = timm.models.get_pretrained_cfg(model_name, allow_unregistered=False)
    except Exception:  # noqa: BLE001 - an unknown name (timm raises various types): no config
        cfg = None
    return cfg


def _check_model_name(model_name: str) -> None:
    import timm

    arch = model_name.split(".", 1)[0]
    if not timm.is_model(arch):
        raise CoresetError(
            f'Unknown timm model {model_name!r}; use a name from `python -c "import timm; print(timm.list_models())"` '
            "(optionally with a pretrained tag, e.g. resnet50.a1_in1k)."
        )


def timm_hub_files(model_name: str) -> tuple[str | None, list[str]]:
    """(hf hub id or None, candidate filenames) for a timm model name with optional tag."""
    cfg = timm_pretrained_cfg(model_name)
    if cfg is None or not getattr(cfg, "hf_hub_id", None):
        return None, TIMM_HF_FILES
    fname = getattr(cfg, "hf_hub_filename", None)
    return cfg.hf_hub_id, ([fname] if fname else TIMM_HF_FILES)


def timm_download_cmd(model_name: str) -> str:
    return f"python -c \"import timm; timm.create_model('{model_name}', pretrained=True)\""


def timm_weights_status(model_name: str) -> str:
    hub_id, files = timm_hub_files(model_name)
    if hub_id is None:
        return "needs download"
    return hf_status(hub_id, files)


def build_timm_embedder(
    name: str,
    model_name: str,
    *,
    weights: str | os.PathLike | None = None,
    output: str = OUTPUT_POOLED,
    model_kwargs: dict | None = None,
) -> Embedder:
    """Create a timm model with real weights and wrap it as an :class:`Embedder`.

    Args:
        name: registry name given to the embedder (used in its identity).
        model_name: timm model name, optionally with a pretrained tag (``arch.tag``).
        weights: a local state-dict file; when None the hub weights are used (from the HF
            cache, or downloaded when the hub is reachable), else WeightsUnavailableError.
        output: ``"pooled"`` (pre-classifier pooled features, dim = ``head_hidden_size``)
            or ``"cls"`` (CLS token after the final norm, dim = ``num_features``).
        model_kwargs: extra ``timm.create_model`` keyword arguments (tests use tiny sizes).
    """
    import timm
    import timm.data

    _check_model_name(model_name)
    if weights is not None:
        path, weights_id = local_weights(weights, name)
    else:
        hub_id, files = timm_hub_files(model_name)
        if hub_id is None:
            raise CoresetError(
                f"timm model {model_name!r} (for {name!r}) has no pretrained weights known to timm; "
                "give a tag that has them (see timm.list_pretrained()) or pass --weights PATH."
            )
        path, weights_id = fetch_hf_weights(name, hub_id, files, timm_download_cmd(model_name))
    kwargs = dict(model_kwargs or {})
    try:
        model: Any = timm.create_model(
            model_name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **kwargs
        )
    except Exception as exc:
        raise CoresetError(
            f"Could not load weights {str(path)!r} into timm model {model_name!r} for {name!r}: "
            f"{load_error_text(exc)}. Pass a state dict saved from this exact architecture."
        ) from exc
    model.eval()
    overrides = {}
    if "img_size" in kwargs:  # the pretrained config still names the checkpoint's own size
        size = kwargs["img_size"]
        overrides["input_size"] = (3, *((size, size) if isinstance(size, int) else tuple(size)))
    data_cfg = timm.data.resolve_data_config(overrides, model=model)
    transform = timm.data.create_transform(**data_cfg, is_training=False)
    if output == OUTPUT_CLS:
        if getattr(model, "num_prefix_tokens", 0) < 1 or getattr(model, "cls_token", None) is None:
            raise CoresetError(f"timm model {model_name!r} has no CLS token; use pooled output.")
        dim, fwd = int(model.num_features), _forward_cls
    elif output == OUTPUT_POOLED:
        dim = int(getattr(model, "head_hidden_size", None) or model.num_features)
        fwd = _forward_pooled
    else:  # pragma: no cover
        raise ValueError(f"unknown output {output!r}")
    preprocess = {k: data_cfg[k] for k in sorted(data_cfg)}
    preprocess["library"] = "timm"
    preprocess["model_name"] = model_name
    return Embedder(
        name,
        model,
        transform,
        dim,
        weights_id=weights_id,
        preprocess=preprocess,
        output=_OUTPUT_TEXT[output],
        forward=fwd,
        family="timm",
    )


def save_random_timm_checkpoint(model_name: str, path: str | os.PathLike, seed: int = 0, **model_kwargs) -> Path:
    """Save a random-init state dict of a timm architecture (for tests and examples)."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = timm.create_model(model_name, pretrained=False, **model_kwargs)
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(path))
    return Path(path)
