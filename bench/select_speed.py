"""Speed and memory of the selection engine (issue 3).

    .venv/bin/python bench/select_speed.py [--sizes 100k,1m] [--repeats 3]

Sizes: ``100k`` = 100,000 samples, 100 classes; ``1m`` = 1,000,000 samples, 1,000 classes;
two models of 768 and 1,024 dims, float32, p = 0.1, ``paper`` budget. Each size runs in
its own child process (data generated there, in float32, in blocks).

Printed per size:

* ``ram_apl`` (ours, :func:`core.selection.run_selection`, end to end: input checks,
  scoring, selection, per-sample table) against ``numpy_ref``: a straightforward per-class
  numpy version of the official code written for this benchmark (per model: a class loop
  for means, a full ``[rows, C]`` distance matrix for pseudo-labels, computed in blocks of
  65,536 rows so that 1M x 1,000 fits in memory; per class: norms, double argsort,
  score, argsort; stable sorts, so ties go to the lower row as in ours). ``ratio`` =
  numpy_ref time / ours. ``same`` = both keep the same rows (``overlap``: the fraction of
  rows in common; float32 round-off can move a row at a score tie).
* ``ram_apl[fp32]``: ours once more with the nearest class mean found by the float32 torch
  code (``CORESET_STUDIO_NEAREST_SEARCH=torch``: float32 matmul, float64 re-check of near
  ties) instead of the default low-precision candidate search (bf16 on CPUs with AMX or
  AVX512-BF16, with an exact float64 re-check of the rows whose candidates are within the
  proven rounding bound). ``identical`` = both give the same pseudo-label for every row and
  model; ``same rows`` = both keep the same rows (the torch code's own-class distances are
  float32 sums, ours float64, so ranks can differ at float32 near ties);
  ``re-checked`` = rows whose nearest mean was re-checked in float64 (both models).
* ``kcenter`` and ``facility_location`` at 100k: time and peak memory.

Time: best wall time of ``--repeats`` runs (``cold`` = the first run; ``cpu`` = CPU time of
all threads in the best run: on an idle 2-core machine wall ~ cpu / 2, and unlike wall time
it hardly moves when other processes share the cores). Memory: peak resident set
size during the call (``VmHWM``, reset before each call through ``/proc/self/clear_refs``)
and ``extra`` = that peak minus the resident size before the call (the inputs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SIZES = {"100k": (100_000, 100), "1m": (1_000_000, 1_000)}
DIMS = (768, 1024)
FRACTION = 0.1


# ----------------------------------------------------------------------------- memory
def _status_kb(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def measure(fn, repeats: int):
    """(result, cold_s, best_s, cpu_s, peak_GB, extra_GB) of ``fn()``.

    ``best_s``: best wall time of ``repeats`` runs (the first, cold, included); ``cpu_s``:
    process CPU time (all threads) of that run; memory from the first (cold) call.
    """
    rss0 = _status_kb("VmRSS")
    reset_peak()
    out, best, cpu = None, float("inf"), 0.0
    for i in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        res = fn()
        wall, used = time.perf_counter() - t, time.process_time() - c
        if i == 0:
            out, cold, peak = res, wall, _status_kb("VmHWM")
        if wall < best:
            best, cpu = wall, used
    return out, cold, best, cpu, peak / 2**20, max(0, peak - rss0) / 2**20


# ----------------------------------------------------------------------------- data
def make_data(n: int, n_classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    feats = {}
    for name, d in zip(("vit-b", "vit-l"), DIMS):
        centers = rng.standard_normal((n_classes, d), dtype=np.float32)
        x = np.empty((n, d), dtype=np.float32)
        for s in range(0, n, 65_536):
            e = min(n, s + 65_536)
            x[s:e] = rng.standard_normal((e - s, d), dtype=np.float32) * 3.0
            x[s:e] += centers[labels[s:e]]
        feats[name] = x
    return feats, labels


# ----------------------------------------------------------------------------- numpy reference
def numpy_ram_apl(feats: dict, labels: np.ndarray, p: float, a=0.2, k=1.0, s=0.5) -> np.ndarray:
    """Straightforward per-class numpy RAM-APL, structured like the official code."""
    n_classes = int(labels.max()) + 1
    wrong = []
    for x in feats.values():
        means = np.stack([x[labels == c].mean(axis=0) for c in range(n_classes)])
        mu_sq = (means * means).sum(1)
        preds = np.empty(len(x), dtype=np.int64)
        for st in range(0, len(x), 65_536):
            xb = x[st : st + 65_536]
            d = (xb * xb).sum(1, keepdims=True) + mu_sq[None, :] - 2.0 * xb @ means.T
            preds[st : st + 65_536] = np.argmin(np.sqrt(np.clip(d, 0, None)), axis=1)
        wrong.append(preds != labels)
    wrong_mean = np.mean(wrong, axis=0)
    w1 = a + (1 - a) * (1 / (1 + np.exp(k * (p - s))))
    selected = []
    for c in range(n_classes):
        idx = np.where(labels == c)[0]
        ranks = []
        for x in feats.values():
            fc = x[idx]
            dist = np.linalg.norm(fc - fc.mean(axis=0, keepdims=True), axis=1)
            ranks.append(np.argsort(np.argsort(dist, kind="stable"), kind="stable"))
        ram = np.mean(ranks, axis=0) / len(idx)
        score = w1 * ram + (1 - w1) * wrong_mean[idx]
        selected.extend(idx[np.argsort(score, kind="stable")[: round(len(idx) * p)]])
    return np.asarray(selected)


# ----------------------------------------------------------------------------- child
def child(size: str, repeats: int) -> None:
    import torch

    import core.selection._linalg as linalg
    from core.selection import run_selection

    n, n_classes = SIZES[size]
    feats, labels = make_data(n, n_classes)
    rows = []
    refined: list[int] = []
    plain = linalg._distances_cpu

    def counting(*args, **kwargs):
        out = plain(*args, **kwargs)
        refined.append(int(out["n_refined"]))
        return out

    linalg._distances_cpu = counting

    def emit(method, res, cold, best, cpu, peak, extra, **more):
        rows.append(
            dict(size=size, method=method, cold_s=cold, best_s=best, cpu_s=cpu, peak_gb=peak, extra_gb=extra, **more)
        )
        print(json.dumps(rows[-1]), flush=True)

    reps = repeats if n <= 100_000 else min(repeats, 2)
    ours, *m = measure(lambda: run_selection("ram_apl", feats, labels, FRACTION, seed=0, device="cpu"), reps)
    search = linalg._search_dtype() if linalg.NEAREST_SEARCH != "torch" else "torch"
    emit("ram_apl", ours, *m, search=search, refined=sum(refined[: len(feats)]))
    linalg.NEAREST_SEARCH = "torch"
    exact_ref, *m = measure(lambda: run_selection("ram_apl", feats, labels, FRACTION, seed=0, device="cpu"), 1)
    linalg.NEAREST_SEARCH = "auto"
    pseudo = [c for c in ours.table.columns if c.startswith("pseudo_label[")]
    exact = all(np.array_equal(ours.table[c].to_numpy(), exact_ref.table[c].to_numpy()) for c in pseudo)
    same_rows = set(ours.selected.tolist()) == set(exact_ref.selected.tolist())
    emit("ram_apl[fp32]", exact_ref, *m, exact=bool(exact), same_rows=same_rows)
    del exact_ref
    ref, *m = measure(lambda: numpy_ram_apl(feats, labels, FRACTION), 1 if n > 100_000 else min(repeats, 2))
    same = set(ref.tolist()) == set(ours.selected.tolist())
    emit(
        "numpy_ref", ref, *m, same=same, overlap=len(set(ref.tolist()) & set(ours.selected.tolist())) / max(1, len(ref))
    )
    if n <= 100_000:
        for method in ("kcenter", "facility_location"):
            res, *m = measure(
                lambda method=method: run_selection(method, feats, labels, FRACTION, seed=0, device="cpu"), 1
            )
            emit(method, res, *m)
    print("THREADS", torch.get_num_threads(), flush=True)


# ----------------------------------------------------------------------------- parent
def machine() -> str:
    model = platform.processor() or "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        pass
    flags = ""
    try:
        with open("/proc/cpuinfo") as fh:
            have = next((set(line.split(":", 1)[1].split()) for line in fh if line.startswith("flags")), set())
        flags = ", ".join(f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f in have)
    except OSError:
        pass
    return f"{platform.machine()} {os.cpu_count()} CPU(s), {model}" + (f" ({flags})" if flags else "")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100k,1m", help="comma-separated: 100k, 1m (default: both)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs at 100k (1m: at most 2)")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        child(args._child, args.repeats)
        return 0
    import numpy
    import torch

    print(
        f"machine: {machine()}; python {platform.python_version()}, numpy {numpy.__version__}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    )
    print(
        f"data: float32, dims {DIMS}, p = {FRACTION}, budget paper; best = best wall time of the runs "
        f"(cold = first run), cpu = CPU time of all threads in the best run\n"
    )
    header = f"{'size':>5} {'method':<18} {'best s':>8} {'cold s':>8} {'cpu s':>8} {'peak GB':>8} {'extra GB':>9}  note"
    print(header)
    print("-" * len(header))
    if os.environ.get("OMP_WAIT_POLICY"):
        print(f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}")
    env = dict(
        os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    for size in [s.strip().lower() for s in args.sizes.split(",") if s.strip()]:
        if size not in SIZES:
            ap.error(f"unknown size {size!r}; use {', '.join(SIZES)}")
        load0 = os.getloadavg()[0]
        proc = subprocess.run(
            [sys.executable, __file__, "--_child", size, "--repeats", str(args.repeats)],
            capture_output=True,
            text=True,
            env=env,
        )
        print(f"{size:>5} (load average before/after: {load0:.2f} / {os.getloadavg()[0]:.2f})")
        rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
        by = {r["method"]: r for r in rows}
        for r in rows:
            note = ""
            if r["method"] == "ram_apl" and "numpy_ref" in by:
                note = (
                    f"ratio numpy_ref/ours = {by['numpy_ref']['best_s'] / r['best_s']:.1f}x "
                    f"(cpu {by['numpy_ref']['cpu_s'] / r['cpu_s']:.1f}x); search {r['search']}, "
                    f"{r['refined']} rows re-checked"
                )
            if r["method"] == "ram_apl[fp32]":
                note = f"pseudo-labels identical to ram_apl's: {r['exact']}; same rows: {r['same_rows']}"
            if r["method"] == "numpy_ref":
                note = f"same rows as ours: {r['same']} (overlap {r['overlap']:.4f})"
            print(
                f"{size:>5} {r['method']:<18} {r['best_s']:8.3f} {r['cold_s']:8.3f} {r['cpu_s']:8.3f} {r['peak_gb']:8.2f} "
                f"{r['extra_gb']:9.2f}  {note}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
