"""An ONNX Runtime backend for CPU embedding: the embedder's own model, exported at load, run by ORT.

:func:`onnx_embedder` exports ``embedder``'s forward (model + its pooling, as
``embedder.embed_batch`` runs it) with ``torch.onnx.export`` (dynamic batch axis), caches the
``.onnx`` file in ``<workspace>/onnx/`` under the embedder's identity and the torch / opset
versions (written atomically, reused by later runs), opens an ORT CPU session and checks it
against torch on a seeded random batch: ``max |ort - torch| <= ORT_TOLERANCE * max(1, max |torch|)``
(1e-5; features are raw activations of order 1). A model that fails to export or to pass the
check is refused with :class:`OnnxBackendError` (the caller falls back to torch).

The returned :class:`~core.embedders.base.Embedder` has the same name, transform, width,
preprocessing and **identity** as the torch one (the same features within the tolerance),
so it reads and writes the same cache rows; only ``backend`` (``"onnxruntime"``) and the
forward differ. The engine (:func:`core.extract.embed_images`) runs it like any embedder
(CPU only: ORT's CUDA provider is not used).
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import CoresetError
from .base import Embedder

#: Largest accepted ``max |ort - torch|``, relative to ``max(1, max |torch|)``.
ORT_TOLERANCE = 1e-5
#: ONNX opset of the export.
OPSET = 17


class OnnxBackendError(CoresetError):
    """The embedder could not be exported to ONNX, or ORT's features differ from torch's."""


class _Forward(torch.nn.Module):
    def __init__(self, embedder: Embedder) -> None:
        super().__init__()
        self.model = embedder.model
        self.fwd = embedder._forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fwd(self.model, x).float()


def onnx_path(embedder: Embedder, workspace: str | os.PathLike | None = None) -> Path:
    """Where the export of ``embedder`` is cached: ``<workspace>/onnx/<identity>-torch<v>-opset<k>.onnx``."""
    from ..workspace import resolve_workspace

    tv = torch.__version__.split("+")[0]
    return resolve_workspace(workspace) / "onnx" / f"{embedder.identity}-torch{tv}-opset{OPSET}.onnx"


def export_onnx(embedder: Embedder, path: Path) -> Path:
    """Export ``embedder``'s forward to ``path`` (atomically), input ``x [B, 3, H, W]`` -> ``y [B, dim]``."""
    from ..workspace import atomic_write_bytes

    model = embedder.model
    was_training = model.training
    x = torch.randn(2, *embedder.input_size)
    buf = io.BytesIO()
    # oneDNN-fused conv + activation (core.embedders.effnet_lite.FusedConvAct) is no ONNX op: export
    # the same arithmetic as plain conv2d + activation (ORT fuses them again itself).
    fused = [m for m in model.modules() if getattr(m, "use_mkldnn", False)]
    for m in fused:
        setattr(m, "use_mkldnn", False)  # noqa: B010 - a plain attribute of FusedConvAct, not a torch field
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            model.to(memory_format=torch.contiguous_format)
            torch.onnx.export(
                _Forward(embedder).eval(),
                (x,),
                buf,  # type: ignore[arg-type]  # torch.onnx.export writes to a file object too
                input_names=["x"],
                output_names=["y"],
                dynamic_axes={"x": {0: "b"}, "y": {0: "b"}},
                opset_version=OPSET,
                dynamo=False,
            )
    except Exception as exc:
        raise OnnxBackendError(
            f"Embedder {embedder.name!r} could not be exported to ONNX "
            f"({type(exc).__name__}: {exc}); use the torch backend."
        ) from exc
    finally:
        model.train(was_training)
        for m in fused:
            setattr(m, "use_mkldnn", True)  # noqa: B010
    return atomic_write_bytes(path, buf.getvalue())


def _session(path: Path, threads: int | None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    # Idle ORT threads sleep instead of spin-waiting for the next operator: the spinning takes the
    # core the decoding thread (or another process) needs. Measured on 2 CPUs (bench/README):
    # 112 -> 120 img/s with a decoding process, 61 -> 89 with another process busy on one core.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def check_against_torch(embedder: Embedder, session, seed: int = 0, batch: int = 3) -> float:
    """``max |ort - torch| / max(1, max |torch|)`` on a seeded random batch ``[batch, 3, H, W]``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, *embedder.input_size, generator=g)
    with torch.inference_mode():
        ref = embedder._forward(embedder.model, x).float().numpy()
    got = session.run(None, {"x": x.numpy()})[0]
    return float(np.abs(got - ref).max() / max(1.0, float(np.abs(ref).max())))


def onnx_embedder(
    embedder: Embedder, workspace: str | os.PathLike | None = None, *, threads: int | None = None
) -> Embedder:
    """``embedder`` running on ONNX Runtime (CPU), exported at load (cached) and checked against torch.

    Args:
        embedder: a torch embedder (from :func:`core.embedders.create_embedder`).
        workspace: where the export is cached (default: the default workspace).
        threads: ORT intra-op threads (default: ORT's, one per physical core).

    Raises:
        CoresetError: onnxruntime not installed.
        OnnxBackendError: export failed, or the check exceeded :data:`ORT_TOLERANCE`.
    """
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise CoresetError(
            "--backend onnx needs ONNX Runtime: pip install onnxruntime onnx (or use --backend torch)."
        ) from None
    embedder.to("cpu")
    path = onnx_path(embedder, workspace)
    if not path.is_file():
        export_onnx(embedder, path)
    try:
        session = _session(path, threads)
    except Exception:  # noqa: BLE001 - a damaged cached export (any ORT error): export again once
        path.unlink(missing_ok=True)
        export_onnx(embedder, path)
        session = _session(path, threads)
    err = check_against_torch(embedder, session)
    if not err <= ORT_TOLERANCE:
        raise OnnxBackendError(
            f"ONNX Runtime's features of {embedder.name!r} differ from torch's by {err:.2e} "
            f"(relative; the limit is {ORT_TOLERANCE:g}); use the torch backend."
        )

    def forward(model, x: torch.Tensor, _s=session) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().to("cpu", dtype=torch.float32).numpy())
        return torch.from_numpy(_s.run(None, {"x": arr})[0])

    out = Embedder(
        embedder.name,
        embedder.model,
        embedder.transform,
        embedder.dim,
        weights_id=embedder.weights_id,
        preprocess=embedder.preprocess,
        output=embedder.output,
        forward=forward,
        family=embedder.family,
        channels_last=False,
    )
    assert out.identity == embedder.identity
    out.backend = "onnxruntime"  # type: ignore[attr-defined]
    out.onnx_check = err  # type: ignore[attr-defined]
    out.onnx_file = str(path)  # type: ignore[attr-defined]
    out.onnx_session = session  # type: ignore[attr-defined]
    return out
