"""One short check of the CUDA paths (under 5 minutes on one GPU, nothing downloaded).

For effnet-lite0/1/2 (offline weights) and a random-init ViT-B/16 from timm, on ``--images``
JPEGs (the finegrained data when present, else synthetic 2400 x 1800 photos made here):

1. **features**: :func:`core.extract.embed_images` on CUDA against the CPU, per row:
   fp32 (``max |cuda - cpu| / max(1, max |cpu|) <= 1e-4``) and fp16 autocast
   (cosine >= 0.999), bf16 reported;
2. **selection**: :func:`core.selection.run_selection` (``ram_apl``, ``kcenter``, ``herding``,
   ``moderate_ds``, ``cleaned``) on CUDA equal to the CPU (same selected rows, same order), and
   the neighbour graph (:func:`core.neighbors.ivf_graph`, 200,000 x 768) on CUDA against the
   CPU's (>= 0.99 of each row's 10 nearest agree) with both build times;
3. **throughput**: end-to-end img/s of the engine (decoding in DataLoader workers, pinned
   memory, non-blocking copies, fp16 autocast) against the model-only forward rate on a
   resident batch (target: end to end >= 0.8x model-only), and the rate of GPU JPEG decoding
   (``torchvision.io.decode_jpeg(device="cuda")``) against PIL in the workers;
4. **Ray GPU actors** (when ``ray`` is installed): :func:`core.ray_engine.embed_images_ray`
   with ``gpus_per_worker=1`` against the local CUDA features (cosine >= 0.999 at fp16).

``--dry-run`` runs every step on the CPU with tiny sizes (``cpu`` plays ``cuda``), so the
test suite checks the script itself. Prints one line per check and writes a JSON report
(``--out``); exit status 1 when a check fails. Usage::

    python bench/gpu_check.py [--dry-run] [--images 256] [--out gpu_check.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FP32_TOL = 1e-4
FP16_MIN_COSINE = 0.999
E2E_TARGET = 0.8


def _images(n: int, data: Path | None, folder: Path) -> list[str]:
    if data is not None and (data / "manifest.csv").is_file():
        with open(data / "manifest.csv", newline="") as fh:
            paths = [str(data / r["path"]) for r in csv.DictReader(fh)]
        paths = [p for p in paths if p.lower().endswith((".jpg", ".jpeg"))]
        if len(paths) >= n:
            return paths[:n]
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    for k in range(n):
        small = rng.integers(0, 256, size=(36, 48, 3), dtype=np.uint8)
        p = folder / f"photo{k:04d}.jpg"
        Image.fromarray(small).resize((1200, 900), Image.BILINEAR).save(p, quality=90)
        out.append(str(p))
    return out


def _embedders(dry: bool, workspace: Path) -> dict:
    from core.embedders import create_embedder
    from core.embedders.timm_models import save_random_timm_checkpoint

    names = ["effnet-lite0"] if dry else ["effnet-lite0", "effnet-lite1", "effnet-lite2"]
    out = {n: create_embedder(n, workspace=workspace) for n in names}
    arch = "vit_tiny_patch16_224" if dry else "vit_base_patch16_224"
    ckpt = save_random_timm_checkpoint(arch, workspace / f"{arch}.safetensors", seed=0)
    out[f"timm:{arch} (random init)"] = create_embedder(f"timm:{arch}", weights=ckpt)
    return out


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)


def check_features(emb, paths, dev: str, bs: int, workers: int) -> dict:
    from core.extract import embed_images

    cpu = embed_images(emb, paths, device="cpu", precision="fp32", batch_size=bs, num_workers=workers).features
    out = {}
    for prec in ("fp32", "fp16", "bf16"):
        got = embed_images(emb, paths, device=dev, precision=prec, batch_size=bs, num_workers=workers).features
        rel = float(np.abs(got - cpu).max() / max(1.0, float(np.abs(cpu).max())))
        out[prec] = {"max_rel_diff": rel, "min_cosine": float(_cosine(got, cpu).min())}
    emb.to("cpu")
    out["ok"] = out["fp32"]["max_rel_diff"] <= FP32_TOL and out["fp16"]["min_cosine"] >= FP16_MIN_COSINE
    return out, cpu


def check_selection(feats: np.ndarray, dev: str) -> dict:
    from core.selection import run_selection

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, len(feats))
    out = {}
    for method in ("ram_apl", "kcenter", "herding", "moderate_ds", "cleaned"):
        a = run_selection(method, {"m": feats}, labels, 0.3, seed=0, device="cpu").selected
        b = run_selection(method, {"m": feats}, labels, 0.3, seed=0, device=dev).selected
        out[method] = bool(np.array_equal(a, b))
    out["ok"] = all(out.values())
    return out


def check_graphs(dev: str, dry: bool) -> dict:
    """The inverted-file neighbour graph (:func:`core.neighbors.ivf_graph`) on ``dev`` against the
    CPU's: the share of each row's 10 nearest that agree (>= 0.99: float rounding may move a
    row to another list or swap near ties), and both build times."""
    from core.neighbors import ivf_graph

    n, d = (3000, 32) if dry else (200_000, 768)
    rng = np.random.default_rng(0)
    z = rng.standard_normal((n, 48)).astype(np.float32)
    x = z @ rng.standard_normal((48, d)).astype(np.float32) + 0.3 * rng.standard_normal((n, d)).astype(np.float32)
    t0 = time.perf_counter()
    cpu = ivf_graph(x, 30, device="cpu").indices
    t_cpu = time.perf_counter() - t0
    t0 = time.perf_counter()
    got = ivf_graph(x, 30, device=dev).indices
    _sync(dev)
    t_dev = time.perf_counter() - t0
    agree = float(np.mean([len(set(a[:10]) & set(b[:10])) / 10 for a, b in zip(got, cpu)]))
    return {
        "rows": n,
        "dim": d,
        "agreement_at_10": agree,
        "cpu_s": round(t_cpu, 2),
        "device_s": round(t_dev, 2),
        "ok": agree >= 0.99,
    }


def _sync(dev: str) -> None:
    if dev.startswith("cuda"):
        torch.cuda.synchronize()


def check_throughput(emb, paths, dev: str, bs: int, workers: int, precision: str) -> dict:
    """End-to-end engine img/s vs the model-only rate on one resident batch (same batch size, precision)."""
    from core.extract import _autocast, embed_images, prepare_model

    d = torch.device(dev)
    embed_images(emb, paths[: 2 * bs], device=dev, precision=precision, batch_size=bs, num_workers=0)  # warm-up
    t0 = time.perf_counter()
    r = embed_images(emb, paths, device=dev, precision=precision, batch_size=bs, num_workers=workers)
    e2e = len(paths) / (time.perf_counter() - t0)
    channels_last = prepare_model(emb, d)
    x = torch.randn(bs, *emb.input_size, device=d)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    reps = max(3, len(paths) // bs)
    with torch.inference_mode(), _autocast(d, precision):
        emb.embed_batch(x)
        _sync(dev)
        t0 = time.perf_counter()
        for _ in range(reps):
            emb.embed_batch(x)
        _sync(dev)
    model_only = reps * bs / (time.perf_counter() - t0)
    emb.to("cpu")
    return {
        "end_to_end_img_s": round(e2e, 2),
        "model_only_img_s": round(model_only, 2),
        "ratio": round(e2e / model_only, 3),
        "ok": bool(r.ok.all()) and e2e / model_only >= E2E_TARGET,
    }


def gpu_jpeg_decode_rate(paths, dev: str, size: int = 224) -> dict:
    """Decode + resize rate: torchvision.io.decode_jpeg on ``dev`` vs PIL (one process), img/s."""
    import torchvision
    from torchvision.transforms.v2 import functional as F

    from core.datasets.images import open_rgb

    t0 = time.perf_counter()
    for p in paths:
        open_rgb(p).resize((size, size))
    pil = len(paths) / (time.perf_counter() - t0)
    datas = [torchvision.io.read_file(p) for p in paths]
    t0 = time.perf_counter()
    for k in range(0, len(datas), 32):
        imgs = torchvision.io.decode_jpeg(datas[k : k + 32], device=dev)
        [F.resize(im, [size, size], antialias=True) for im in imgs]
    _sync(dev)
    gpu = len(paths) / (time.perf_counter() - t0)
    return {"pil_img_s": round(pil, 1), "decode_jpeg_img_s": round(gpu, 1), "ratio": round(gpu / pil, 2)}


def check_ray(name: str, emb, paths, ref: np.ndarray, dry: bool, bs: int) -> dict:
    try:
        import ray  # noqa: F401
    except ImportError:
        return {"skipped": "ray not installed"}
    import functools

    from core.embedding import build_embedder
    from core.ray_engine import embed_images_ray

    stats: dict = {}
    res = embed_images_ray(
        emb,
        functools.partial(build_embedder, name),
        paths,
        batch_size=bs,
        gpus_per_worker=0 if dry else 1,
        workers=1,
        num_cpus=2 if dry else None,
        stats=stats,
    )
    cos = float(_cosine(res.features, ref).min())
    return {"min_cosine": cos, "precision": res.precision, **stats, "ok": bool(res.ok.all()) and cos >= FP16_MIN_COSINE}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="everything on the CPU with tiny sizes (for the tests)")
    ap.add_argument("--images", type=int, default=None, help="images (default 256; 12 with --dry-run)")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "finegrained"))
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: the engine's)")
    ap.add_argument("--out", default=None, help="JSON report to write")
    args = ap.parse_args(argv)

    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        print("no CUDA device: run with --dry-run, or on a machine with a GPU", file=sys.stderr)
        return 2
    dev = "cpu" if dry else "cuda"
    n = args.images or (12 if dry else 256)
    bs = 4 if dry else 64
    workers = args.workers if args.workers is not None else (0 if dry else min(8, os.cpu_count() or 1))
    tmp = Path(tempfile.mkdtemp(prefix="cs-gpu-check-"))
    os.environ.setdefault("CORESET_STUDIO_HOME", str(tmp / "ws"))
    data = Path(args.data) if args.data else None
    paths = _images(n, data, tmp / "photos")
    t_start = time.perf_counter()
    report: dict = {
        "device": torch.cuda.get_device_name(0) if not dry else "cpu (dry run)",
        "torch": torch.__version__,
        "images": len(paths),
        "batch_size": bs,
        "workers": workers,
        "models": {},
    }
    ok = True
    embedders = _embedders(dry, tmp / "ws")
    first_ref = None
    for name, emb in embedders.items():
        feats, ref = check_features(emb, paths, dev, bs, workers)
        if first_ref is None:
            first_ref = (name, emb, ref)
        sel = check_selection(ref, dev)
        thr = check_throughput(emb, paths, dev, bs, workers, "fp32" if dry else "fp16")
        report["models"][name] = {"features": feats, "selection": sel, "throughput": thr}
        ok &= feats["ok"] and sel["ok"]
        print(
            f"{name}: fp32 rel diff {feats['fp32']['max_rel_diff']:.1e} (<= {FP32_TOL:g}), fp16 min cosine "
            f"{feats['fp16']['min_cosine']:.5f} (>= {FP16_MIN_COSINE}), bf16 {feats['bf16']['min_cosine']:.5f}; "
            f"selection equal: {all(v for k, v in sel.items() if k != 'ok')}; end to end "
            f"{thr['end_to_end_img_s']} img/s vs model-only {thr['model_only_img_s']} = {thr['ratio']:.2f}x "
            f"(target >= {E2E_TARGET})",
            flush=True,
        )
    report["jpeg_decode"] = gpu_jpeg_decode_rate(paths[: min(len(paths), 128)], dev)
    print(
        f"JPEG decode + resize: PIL {report['jpeg_decode']['pil_img_s']} img/s (one process), "
        f"decode_jpeg on {dev} {report['jpeg_decode']['decode_jpeg_img_s']} img/s"
    )
    report["graphs"] = check_graphs(dev, dry)
    ok &= report["graphs"]["ok"]
    g = report["graphs"]
    print(
        f"neighbour graph ({g['rows']:,} x {g['dim']}): {dev} agrees with the CPU on {g['agreement_at_10']:.4f} of "
        f"the 10 nearest (>= 0.99); CPU {g['cpu_s']} s, {dev} {g['device_s']} s"
    )
    name, emb, ref = first_ref
    report["ray"] = check_ray(name, emb, paths, ref, dry, bs)
    if "ok" in report["ray"]:
        ok &= report["ray"]["ok"]
    print(f"Ray {'CPU' if dry else 'GPU'} actor: {report['ray']}")
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    report["ok"] = bool(ok)
    print(f"all checks {'passed' if ok else 'FAILED'} in {report['seconds']} s")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
