"""The :class:`Embedder` wrapper and the :class:`EmbedderInfo` registry record.

An embedder turns a preprocessed image batch ``[B, 3, H, W]`` into raw feature vectors
``[B, dim]`` (float32, no normalisation; normalising is the selector's option). Each one
carries its own preprocessing (``transform``: PIL image -> ``[3, H, W]`` float tensor),
taken from the model's own config (timm ``resolve_data_config`` / open_clip's
pretrained config), and an ``identity`` digest used as the embedding-cache key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..datasets import images as _images

#: Bump when the meaning of stored features changes for every embedder (invalidates caches).
#: The image decoding has its own version (:data:`core.datasets.images.DECODE_VERSION`),
#: also part of every identity.
IDENTITY_VERSION = 1


@dataclass(frozen=True)
class EmbedderInfo:
    """What the registry knows about an embedder before it is created.

    Attributes:
        name: registry name, e.g. ``"effnet-lite0"``.
        description: one line for humans: model, weights, what the feature is.
        family: ``"timm"``, ``"open_clip"`` or ``"effnet-lite"``.
        availability: ``"offline"`` (weights ship in an installed package) or ``"hub"``
            (needs a download unless cached, or a local file via ``weights=``).
        paper_model: True for the models used in the paper.
        dim: feature dimension, or None when unknown before creation (pass-through).
    """

    name: str
    description: str
    family: str
    availability: str
    paper_model: bool
    dim: int | None


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return round(value, 8)
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


def make_identity(name: str, weights_id: str, preprocess: dict, output: str) -> str:
    """Stable sha256 hex digest of (name, weights identity, preprocessing, output definition,
    image decoding version :data:`~core.datasets.images.DECODE_VERSION`)."""
    payload = json.dumps(
        {
            "v": IDENTITY_VERSION,
            "decode": _images.DECODE_VERSION,
            "name": name,
            "weights": weights_id,
            "preprocess": _jsonable(preprocess),
            "output": output,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class Embedder:
    """A feature extractor: an ``nn.Module`` in eval mode plus its preprocessing.

    Attributes:
        name: registry name (or pass-through name such as ``"timm:resnet18"``).
        dim: length of one feature vector.
        model: the wrapped ``torch.nn.Module`` (eval mode, no gradients).
        transform: PIL image -> float tensor ``[3, H, W]``, from the model's own config.
        preprocess: dict describing ``transform`` (input size, resize, crop, mean, std).
        weights_id: where the weights came from: ``sha256:<hex>`` of a local file, or
            ``hf:<repo>@<revision>/<file>`` for hub weights, or ``random-init``.
        output: human description of the feature (e.g. "CLS token after final norm").
        identity: sha256 hex digest of (name, weights_id, preprocess, output, decoding
            version); the cache key.
        channels_last: whether the engine should run the model in channels-last layout
            (set for convolutional nets where it was measured to help on CPU).

    Features are raw float32 activations in the model's own units (no L2 normalisation).
    """

    def __init__(
        self,
        name: str,
        model: torch.nn.Module,
        transform: Callable,
        dim: int,
        *,
        weights_id: str,
        preprocess: dict,
        output: str,
        forward: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor] | None = None,
        family: str = "",
        channels_last: bool = False,
    ) -> None:
        self.name = name
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.transform = transform
        self.dim = int(dim)
        self.weights_id = weights_id
        self.preprocess = dict(preprocess)
        self.output = output
        self.family = family
        self.channels_last = channels_last
        self._forward = forward or (lambda m, x: m(x))
        self.identity = make_identity(name, weights_id, self.preprocess, output)

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        for p in self.model.parameters():
            return p.device
        return torch.device("cpu")

    @property
    def input_size(self) -> tuple[int, int, int]:
        """``(3, H, W)`` the transform produces."""
        c, h, w = self.preprocess.get("input_size", (3, 224, 224))
        return int(c), int(h), int(w)

    def to(self, device: torch.device | str) -> Embedder:
        """Move the model to ``device`` (in place) and return self."""
        self.model.to(device)
        return self

    def set_channels_last(self, enabled: bool) -> None:
        self.model.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)

    # ------------------------------------------------------------------ compute
    def embed_batch(self, batch: torch.Tensor) -> torch.Tensor:
        """Embed a preprocessed batch ``[B, 3, H, W]`` -> ``[B, dim]`` float32 raw features.

        The batch is moved to the model's device if needed. Runs under
        ``torch.inference_mode``; autocast (if any) is the caller's choice.
        """
        if batch.ndim != 4:
            raise ValueError(f"embed_batch expects a [B, 3, H, W] tensor, got shape {tuple(batch.shape)}")
        dev = self.device
        if batch.device != dev:
            batch = batch.to(dev)
        with torch.inference_mode():
            out = self._forward(self.model, batch)
        if out.ndim != 2 or out.shape[1] != self.dim:
            raise RuntimeError(f"Embedder {self.name!r} produced shape {tuple(out.shape)}, expected [B, {self.dim}].")
        return out.float()

    def describe(self) -> dict:
        """JSON-serialisable provenance for features files and the cache folder."""
        return {
            "name": self.name,
            "family": self.family,
            "dim": self.dim,
            "weights": self.weights_id,
            "preprocess": _jsonable(self.preprocess),
            "output": self.output,
            "identity": self.identity,
        }

    def __repr__(self) -> str:
        return (
            f"Embedder(name={self.name!r}, dim={self.dim}, weights={self.weights_id!r}, identity={self.identity[:12]})"
        )
