"""The conv + activation fusion, checked against the unfused model and undone on any mismatch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .onednn import fuse_conv_act


def fuse_checked(model: Any, input_size: Sequence[int]) -> int:
    """Fuse conv+act in ``model`` (a timm EfficientNet, BatchNorm folded), then check its pooled
    features on a random input of ``input_size`` (C, H, W) against the unfused ones
    (``allclose``, rtol 1e-3, atol 1e-4); undo on any mismatch or error. Returns the fusions kept."""
    import copy

    x = torch.rand(2, *input_size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    backup = copy.deepcopy(model)
    with torch.inference_mode():
        ref = model.forward_head(model.forward_features(x), pre_logits=True)
        n = fuse_conv_act(model)
        try:
            got = model.forward_head(model.forward_features(x), pre_logits=True)
            ok = torch.allclose(got, ref, rtol=1e-3, atol=1e-4)
        except Exception:  # noqa: BLE001 - any error of the fused path: keep the unfused model
            ok = False
    if not ok:  # keep the unfused model (still correct, a bit slower)
        model.load_state_dict(backup.state_dict(), strict=False)
        for name, child in backup.named_children():
            setattr(model, name, child)
        return 0
    return n


__all__ = ["fuse_checked"]
