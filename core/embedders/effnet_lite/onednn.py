"""Convolution + activation as one oneDNN call on the CPU (a private torch op, the kernel
``torch.compile`` uses for the same fusion), with the plain path everywhere else."""

from __future__ import annotations

import torch


def _mkldnn_pointwise_available() -> bool:
    try:
        return bool(torch.backends.mkldnn.is_available()) and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
    except Exception:  # noqa: BLE001 - pragma: no cover; a torch build without the op: use the plain path
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
        self.padding: list[int] = [0, 0] if self.same_pad else [int(p) for p in conv.padding]
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
                x,
                self.weight,
                self.bias,
                self.padding,
                self.stride,
                self.dilation,
                self.groups,
                self.attr,
                self.scalars,
                "",
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
            if not (
                isinstance(conv, torch.nn.Conv2d) and conv.bias is not None and isinstance(tail, torch.nn.Sequential)
            ):
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


__all__ = ["FusedConvAct", "fuse_conv_act"]
