"""JPEG draft-mode decoding for an embedder: large JPEGs decoded at a reduced DCT scale.

:func:`with_jpeg_draft` returns a copy of an embedder whose images are decoded with
``open_rgb(path, draft=(s, s))``: libjpeg decodes at 1/2, 1/4 or 1/8 scale, the smallest that
keeps both sides at least ``s`` pixels, with ``s = ceil(H / crop_pct)`` the size the
embedder's own transform resizes to (``H`` its input height, ``crop_pct`` its centre-crop
fraction, 1 when it has none), so the transform still only downsamples. A 4000 x 3000 photo
for a 224 px model decodes at 1/8 scale (500 x 375), several times faster. Other formats
decode as before. The pixels differ slightly from a full decode, so the preprocessing
(and the identity, the cache key) records ``jpeg_draft: s``: its features are cached apart.
"""

from __future__ import annotations

import copy
import math

from .base import Embedder, make_identity


def draft_size(embedder: Embedder) -> int:
    """``ceil(H / crop_pct)``: the side the embedder's transform resizes to before its crop (pixels)."""
    _, h, w = embedder.input_size
    crop = float(embedder.preprocess.get("crop_pct") or 1.0)
    return math.ceil(max(h, w) / min(1.0, max(crop, 1e-3)))


def with_jpeg_draft(embedder: Embedder) -> Embedder:
    """A shallow copy of ``embedder`` (same model object) decoding JPEGs in draft mode; see the module docstring."""
    out = copy.copy(embedder)
    s = draft_size(embedder)
    out.preprocess = {**embedder.preprocess, "jpeg_draft": s}
    out.identity = make_identity(embedder.name, embedder.weights_id, out.preprocess, embedder.output)
    out.decode_draft = (s, s)  # type: ignore[attr-defined]
    return out
