"""Embedders: foundation models that turn images into feature vectors.

Public API::

    list_embedders() -> list[EmbedderInfo]
    create_embedder(name, *, weights=None, workspace=None) -> Embedder
    weights_status(name) -> "offline" | "cached" | "needs download"
    register_embedder(name, factory=None, *, description, family, availability, paper_model, dim, status)

Names: the registered entries (see :mod:`core.embedders.registry`), ``timm:<model[.tag]>``
and ``open_clip:<arch>[:<tag>]``. Features are raw float32 (no normalisation).
"""

from .base import Embedder, EmbedderInfo, make_identity
from .registry import (
    DEFAULT_EMBEDDER,
    create_embedder,
    embedder_names,
    get_embedder_info,
    list_embedders,
    register_embedder,
    unregister_embedder,
    weights_status,
)

__all__ = [
    "DEFAULT_EMBEDDER",
    "Embedder",
    "EmbedderInfo",
    "create_embedder",
    "embedder_names",
    "get_embedder_info",
    "list_embedders",
    "make_identity",
    "register_embedder",
    "unregister_embedder",
    "weights_status",
]
