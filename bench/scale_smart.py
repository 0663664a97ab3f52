"""The smart parts at scale: label issues, near-duplicates, ``cleaned`` and ``auto`` on 100k and 1M images.

Writes a synthetic features store (:class:`core.feature_store.FeatureStoreWriter`, chunk by
chunk: the features are never in memory whole) with a known structure, then runs the
command line on it, each command in a fresh process, and measures what the issue asks for.

**The data** (``--rows N --classes C``, seeded): every image has a latent vector
``z = centre[class] + u`` in 48 dimensions (class centres ``0.75 N(0, I)``, ``u ~ N(0, I)``:
overlapping classes, a linear probe on the clean labels gets roughly 85-95 %); each
of two models sees ``x_m = z W_m + 0.3 e_m`` (``W_m`` a fixed Gaussian map to 768 and 1,024
dimensions, ``e_m`` isotropic noise), so the models agree on the structure but not on the
details, like two embedders. Then:

* **label flips**: ``--flip`` (10 %) of the labels moved to a uniformly drawn other class;
* **near-duplicates**: ``--dups`` (1 %) of the rows are copies of another row of the same
  chunk (its latent plus ``N(0, 0.02^2)``, its own small model noise ``0.02``: a re-encoded image),
  keeping the source's label (flips are drawn after, on sources and copies alike).

The truth (flipped rows, each copy's source) is saved beside the store.

**The runs** (``coreset-studio select STORE --fraction P --out DIR``, ``--methods``; the
first builds the neighbour graphs, which the store then keeps in ``neighbors/``, so that
run is reported *cold*, the others *warm*; ``--cold-each`` deletes the graphs before each
run): wall time, CPU time (user + system, from ``wait4``), peak resident memory
(``ru_maxrss``: the store's mapped pages included) and the peak of the process's own memory
(``RssAnon``, sampled every 50 ms from ``/proc``). Then, from the outputs: the label-issue
flags (``scores.csv``) against the injected flips (precision, recall, F1), the share of
injected copies grouped with their source (``duplicates.csv``) and, with ``--exact``, the
graphs' recall of true neighbours and the flags of the exact consensus (exact neighbour
search over every row: ``O(N^2 D)``, minutes at 100k) against those of the stored graphs.

Targets (the issue): 100k x 100 classes end to end under 1 minute, 1M x 1,000 under 10
minutes, peak memory below the features' size plus 2 GB, on 2 cores.

Usage::

    python bench/scale_smart.py --rows 100000 --classes 100 --exact
    python bench/scale_smart.py --rows 1000000 --classes 1000

Stores are written under ``--folder`` (default: the workspace's ``bench-scale/``) and kept
(``--fresh`` writes them again).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DIMS = {"m768": 768, "m1024": 1024}
LATENT = 48
#: Scale of the class centres against the within-class spread (1).
SEPARATION = 0.75
CHUNK = 65536


def cpu_description() -> str:
    model, flags = platform.processor() or "?", set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name") and model in ("?", ""):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    wide = sorted(f for f in flags if f.startswith(("avx512", "amx")))
    return f"{model}; {os.cpu_count()} CPUs; " + (
        f"AVX-512/AMX: {' '.join(wide[:6])}{' ...' if len(wide) > 6 else ''}" if wide else "no AVX-512/AMX (AVX2)"
    )


# ----------------------------------------------------------------------------- data
def write_store(folder: Path, rows: int, classes: int, flip: float, dups: float, seed: int = 0) -> dict:
    """Write the synthetic store and its truth; returns the truth's summary."""
    from core.feature_store import FeatureStoreWriter

    if folder.exists():
        shutil.rmtree(folder)
    rng = np.random.default_rng(seed)
    centres = SEPARATION * rng.standard_normal((classes, LATENT)).astype(np.float32)
    maps = {m: (rng.standard_normal((LATENT, d)) / np.sqrt(LATENT)).astype(np.float32) for m, d in DIMS.items()}
    writer = FeatureStoreWriter(folder, dims=DIMS, meta={"synthetic": "bench/scale_smart.py", "seed": seed})
    true_all, label_all, source_all = [], [], []
    for start in range(0, rows, CHUNK):
        n = min(CHUNK, rows - start)
        crng = np.random.default_rng([seed, start])
        true = crng.integers(0, classes, n)
        z = centres[true] + crng.standard_normal((n, LATENT)).astype(np.float32)
        source = np.full(n, -1, dtype=np.int64)
        copies = np.flatnonzero(crng.random(n) < dups)
        copies = copies[copies > 0]
        src = (crng.random(len(copies)) * copies).astype(np.int64)  # an earlier row of the chunk
        src = np.where(source[src] >= 0, source[src], src)  # never a copy of a copy
        source[copies] = src
        true[copies] = true[src]
        z[copies] = z[src] + 0.02 * crng.standard_normal((len(copies), LATENT)).astype(np.float32)
        feats = {}
        for m, w in maps.items():
            x = z @ w + 0.3 * crng.standard_normal((n, w.shape[1])).astype(np.float32)
            x[copies] = (
                (z[copies] @ w)
                + (x[src] - z[src] @ w)
                + 0.02 * crng.standard_normal((len(copies), w.shape[1])).astype(np.float32)
            )
            feats[m] = x
        labels = true.copy()
        flipped = crng.random(n) < flip
        labels[flipped] = (true[flipped] + crng.integers(1, classes, int(flipped.sum()))) % classes
        writer.append(
            feats,
            np.array([f"c{c:04d}" for c in labels]),
            paths=np.array([f"synthetic/{start + i:08d}.png" for i in range(n)]),
            split=np.full(n, "train"),
            file_ids=[f"{start + i:08x}" for i in range(n)],
        )
        true_all.append(true)
        label_all.append(labels)
        source_all.append(np.where(source >= 0, source + start, -1))
        print(f"\rwriting the store: {start + n:,} / {rows:,} rows", end="", file=sys.stderr)
    print("", file=sys.stderr)
    true, labels, source = (np.concatenate(a) for a in (true_all, label_all, source_all))
    np.savez(folder.parent / f"{folder.name}.truth.npz", true=true, labels=labels, source=source)
    return {"rows": rows, "flipped": int((true != labels).sum()), "copies": int((source >= 0).sum())}


# ----------------------------------------------------------------------------- runs
def _status(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("RssAnon", "RssFile"):
                    out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def run_measured(store: Path, method: str, fraction: float, out: Path, extra: list[str]) -> dict:
    """One ``coreset-studio select`` in a fresh process: wall and CPU time (``wait4``), peak RSS
    (``ru_maxrss``) and the peak of its own memory (``RssAnon``, sampled)."""
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "-m", "core.cli", "select", str(store), "--method", method]
    cmd += ["--fraction", str(fraction), "--out", str(out), "--device", "cpu", *extra]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = {"RssAnon": 0, "RssFile": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for k, v in _status(proc.pid).items():
                peak[k] = max(peak[k], v)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out_chunks: list[str] = []
    err_chunks: list[str] = []
    readers = [
        threading.Thread(target=lambda: out_chunks.append(proc.stdout.read()), daemon=True),  # type: ignore[union-attr]
        threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()), daemon=True),  # type: ignore[union-attr]
    ]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    done.set()
    for r in readers:
        r.join()
    sampler.join()
    return {
        "method": method,
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "max_rss": usage.ru_maxrss * 1024,
        "rc": os.waitstatus_to_exitcode(status),
        "stdout": "".join(out_chunks),
        "stderr": "".join(err_chunks)[-2000:],
        **peak,
    }


# ----------------------------------------------------------------------------- quality
def flags_quality(out: Path, truth: dict) -> dict:
    import pandas as pd

    t = pd.read_csv(out / "scores.csv", usecols=["index", "suspected_mislabel"])
    flips = truth["true"] != truth["labels"]
    idx = t["index"].to_numpy()
    flag = np.zeros(len(flips), dtype=bool)
    flag[idx] = t["suspected_mislabel"].to_numpy(dtype=bool)
    tp = int((flag & flips).sum())
    prec = tp / max(int(flag.sum()), 1)
    rec = tp / max(int(flips.sum()), 1)
    return {"flagged": int(flag.sum()), "precision": prec, "recall": rec, "f1": 2 * prec * rec / max(prec + rec, 1e-12)}


def duplicate_quality(out: Path, truth: dict) -> dict:
    import pandas as pd

    d = pd.read_csv(out / "duplicates.csv", usecols=["group", "index"])
    group = np.full(len(truth["source"]), -1, dtype=np.int64)
    group[d["index"].to_numpy()] = d["group"].to_numpy()
    copies = np.flatnonzero(truth["source"] >= 0)
    src = truth["source"][copies]
    found = (group[copies] >= 0) & (group[copies] == group[src])
    # pairs inside predicted groups that are not copy/source (or copy/copy of one source)
    origin = np.where(truth["source"] >= 0, truth["source"], np.arange(len(group)))
    members = d.sort_values("group")
    wrong = total = 0
    for _, g in members.groupby("group"):
        o = origin[g["index"].to_numpy()]
        k = len(o)
        total += k * (k - 1) // 2
        same = sum(c * (c - 1) // 2 for c in np.unique(o, return_counts=True)[1])
        wrong += k * (k - 1) // 2 - same
    return {
        "copies": int(len(copies)),
        "recall": float(found.mean()) if len(copies) else float("nan"),
        "pair_precision": 1.0 - wrong / total if total else float("nan"),
        "groups": int(d["group"].nunique()),
    }


def exact_comparison(store: Path, out: Path, truth: dict, sample_rows: int = 5000) -> dict:
    """Recall of the stored graphs against the exact search (on a sample of rows), and the flags of
    the consensus on exact graphs (every row) against the stored graphs' flags."""
    import pandas as pd

    from core.features import load_features
    from core.neighbors import exact_graph, graphs_for
    from core.selection import SelectionData, label_consensus
    from core.selection.neighborhood import Neighborhood

    fs = load_features(store)
    stored = graphs_for(fs, None, store)
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(len(fs), size=min(sample_rows, len(fs)), replace=False))
    recall = {}
    for m, x in fs.features.items():
        import torch

        u = torch.from_numpy(np.array(x[rows]))
        u = u / u.norm(dim=1, keepdim=True)
        best_s = torch.full((len(rows), 10), -float("inf"))
        best_i = torch.full((len(rows), 10), -1, dtype=torch.int64)
        for a in range(0, len(fs), 32768):
            block = torch.from_numpy(np.array(x[a : a + 32768]))
            block = block / block.norm(dim=1, keepdim=True)
            s = u @ block.T
            own = torch.from_numpy(rows)[:, None] == torch.arange(a, a + block.shape[0])[None, :]
            s[own] = -float("inf")
            v, j = torch.topk(s, 10, dim=1)
            cs, ci = torch.cat([best_s, v], 1), torch.cat([best_i, j + a], 1)
            best_s, top = torch.topk(cs, 10, dim=1)
            best_i = ci.gather(1, top)
        ex = best_i.numpy()
        got = stored[m].indices[rows, :10]
        recall[m] = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, ex)]))
    t0 = time.perf_counter()
    exact = {m: exact_graph(x, 30, name=m) for m, x in fs.features.items()}
    exact_s = time.perf_counter() - t0
    data = SelectionData.build(fs.features, fs.labels, 0.1, 0)
    data.neighborhood = Neighborhood.of(data.features, data.codes, data.n_classes, graphs=exact)
    ex_flags = label_consensus(data).suspect
    t = pd.read_csv(out / "scores.csv", usecols=["index", "suspected_mislabel"])
    ours = np.zeros(len(fs), dtype=bool)
    ours[t["index"].to_numpy()] = t["suspected_mislabel"].to_numpy(dtype=bool)
    both = int((ours & ex_flags).sum())
    f1 = 2 * both / max(int(ours.sum() + ex_flags.sum()), 1)
    flips = truth["true"] != truth["labels"]
    tp = int((ex_flags & flips).sum())
    p, r = tp / max(int(ex_flags.sum()), 1), tp / max(int(flips.sum()), 1)
    return {
        "recall_at_10": recall,
        "exact_graph_s": exact_s,
        "flag_f1_vs_exact": f1,
        "exact_flagged": int(ex_flags.sum()),
        "exact_f1_vs_truth": 2 * p * r / max(p + r, 1e-12),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--flip", type=float, default=0.1)
    ap.add_argument("--dups", type=float, default=0.01)
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--methods", default="auto,cleaned,ram_apl,random")
    ap.add_argument("--folder", default=None, help="where stores are written (default: <workspace>/bench-scale)")
    ap.add_argument("--fresh", action="store_true", help="write the store again")
    ap.add_argument("--cold-each", action="store_true", help="delete the stored graphs before every run")
    ap.add_argument("--exact", action="store_true", help="compare with the exact neighbour search (O(N^2 D))")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    from core.provenance import package_versions
    from core.workspace import resolve_workspace

    folder = Path(args.folder) if args.folder else resolve_workspace(None) / "bench-scale"
    folder.mkdir(parents=True, exist_ok=True)
    store = folder / f"synthetic-{args.rows}x{args.classes}.store"
    print(
        f"machine: {cpu_description()}; {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB RAM"
    )
    print("versions: " + ", ".join(f"{k} {v}" for k, v in package_versions().items()))
    if args.fresh or not (store / "store.json").is_file():
        t0 = time.perf_counter()
        summary = write_store(store, args.rows, args.classes, args.flip, args.dups)
        print(f"store written in {time.perf_counter() - t0:.0f} s: {summary}")
    shutil.rmtree(store / "neighbors", ignore_errors=True)  # the first run builds the graphs
    z = np.load(folder / f"{store.name}.truth.npz")
    truth = {k: z[k] for k in z.files}
    feat_bytes = sum(f.stat().st_size for f in store.glob("*.npy"))
    print(
        f"store: {args.rows:,} rows x {args.classes} classes, models {DIMS}; features {feat_bytes / 2**30:.2f} GiB; "
        f"{int((truth['true'] != truth['labels']).sum()):,} flipped labels, {int((truth['source'] >= 0).sum()):,} "
        f"injected copies; fraction {args.fraction}"
    )
    figures = []
    header = f"{'run':28s} {'wall s':>8s} {'cpu s':>8s} {'peak RSS':>9s} {'peak anon':>9s}  flags P / R / F1       dup recall / pair precision"
    print(header)
    for i, method in enumerate(m.strip() for m in args.methods.split(",") if m.strip()):
        if args.cold_each:
            shutil.rmtree(store / "neighbors", ignore_errors=True)
        cold = i == 0 or args.cold_each
        out = folder / f"out-{args.rows}-{method}"
        r = run_measured(store, method, args.fraction, out, [])
        if r["rc"] != 0:
            print(f"{method}: exit {r['rc']}\n{r['stderr']}")
            return 1
        fq, dq = flags_quality(out, truth), duplicate_quality(out, truth)
        sel = json.loads((out / "selection.json").read_text())
        label = f"{method} ({'cold' if cold else 'warm'})"
        print(
            f"{label:28s} {r['wall_s']:8.1f} {r['cpu_s']:8.1f} {r['max_rss'] / 2**30:8.2f}G {r['RssAnon'] / 2**30:8.2f}G  "
            f"{fq['precision']:.3f} / {fq['recall']:.3f} / {fq['f1']:.3f}   {dq['recall']:.3f} / {dq['pair_precision']:.3f}"
        )
        for line in r["stdout"].strip().splitlines():
            if line.startswith("picked"):  # auto's choice; the rest of the summary line is the table's
                print("    " + line)
        if cold:
            print("    graphs: " + json.dumps(sel.get("neighbors")))
        if method == "auto":
            print("    auto sample: " + json.dumps(sel.get("details", {}).get("sample")))
        figures.append({"run": label, **{k: v for k, v in r.items() if k not in ("stdout", "stderr")}, **fq, "dup": dq})
    budget = feat_bytes + 2 * 2**30
    worst = max(f["max_rss"] for f in figures)
    print(
        f"peak RSS of the worst run {worst / 2**30:.2f} GiB against features + 2 GiB = {budget / 2**30:.2f} GiB: "
        f"{'met' if worst <= budget else 'NOT met'}"
    )
    if args.exact:
        ex = exact_comparison(store, folder / f"out-{args.rows}-{figures[0]['method']}", truth)
        print(f"exact search: {json.dumps(ex)}")
        figures.append({"exact": ex})
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
