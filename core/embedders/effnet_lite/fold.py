"""Fold eval-mode BatchNorm into the convolutions before it, with
:func:`torch.nn.utils.fusion.fuse_conv_bn_eval`."""

from __future__ import annotations

import torch
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batchnorm(model: torch.nn.Module) -> int:
    """Fold every eval-mode BatchNorm that directly follows a Conv2d (as sibling modules) into it.

    In timm's EfficientNet blocks each convolution is followed by a ``BatchNormAct2d``
    (BN -> drop -> activation). With ``s = gamma / sqrt(running_var + eps)`` the convolution
    becomes ``W' = W s`` (per output channel) and ``b' = (b - running_mean) s + beta``
    (:func:`torch.nn.utils.fusion.fuse_conv_bn_eval`), and the BN module is replaced by its
    ``drop`` and ``act`` parts. Numerically the same function (differences ~1e-5 from float
    rounding). Returns the number of folds.
    """
    from timm.layers.norm_act import BatchNormAct2d

    n = 0
    for parent in list(model.modules()):
        children = list(parent.named_children())
        for (conv_name, conv), (bn_name, bn) in zip(children, children[1:]):
            if not (isinstance(conv, torch.nn.Conv2d) and type(bn) in (BatchNormAct2d, torch.nn.BatchNorm2d)):
                continue
            if not bn.track_running_stats or bn.running_var is None or conv.training or bn.training:
                continue
            assert isinstance(bn, torch.nn.BatchNorm2d)  # BatchNormAct2d is one too
            with torch.no_grad():
                fused = fuse_conv_bn_eval(conv, bn)
            if fused.bias is not None:
                fused.bias.requires_grad_(False)
            setattr(parent, conv_name, fused)
            tail = torch.nn.Sequential(bn.drop, bn.act) if isinstance(bn, BatchNormAct2d) else torch.nn.Identity()
            setattr(parent, bn_name, tail)
            n += 1
    return n


__all__ = ["fold_batchnorm"]
