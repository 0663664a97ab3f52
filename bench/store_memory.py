"""Memory of selection on a memory-mapped features store: does 10M x 768 float32 need 30 GB of RAM?

Writes a synthetic store (:class:`core.feature_store.FeatureStoreWriter`, in chunks, never the
whole array in memory) of ``--rows`` x ``--dim`` float32 features in ``--classes`` classes
(Gaussian clusters around random class centres, labels drawn uniformly, seeded), with a path
and a content-hash-like ``file_id`` per row. Then, for each method and budget strategy, a
fresh process opens the store (:func:`core.feature_store.open_feature_store`) and runs
:func:`core.selection.run_selection` on it at ``--fraction`` while a thread samples
``/proc/self/status`` every 10 ms:

* ``RssAnon``: the process's own memory (heap, arrays it allocates): what the selection
  needs in RAM. Its peak is the figure to compare with the features' size.
* ``RssFile``: pages of the mapped store that are resident. They belong to the OS page cache
  and are dropped under memory pressure (the store can be larger than RAM), so they are
  reported but are not memory the selection holds.

Usage::

    python bench/store_memory.py --rows 10000000 --dim 768 --classes 1000    # the 30 GB case
    python bench/store_memory.py --rows 200000 --dim 64 --keep --folder /tmp/s  # a quick look

The store is deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHILD = r"""
import json, sys, threading, time
sys.path.insert(0, {repo!r})
def status():
    out = {{}}
    with open("/proc/self/status") as fh:
        for line in fh:
            k, _, v = line.partition(":")
            if k in ("RssAnon", "RssFile", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
    return out
peak = {{"RssAnon": 0, "RssFile": 0}}
stop = False
def sample():
    while not stop:
        s = status()
        for k in peak:
            peak[k] = max(peak[k], s[k])
        time.sleep(0.01)
base = status()["RssAnon"]
import numpy as np
from core.feature_store import open_feature_store
from core.selection import run_selection
imported = status()["RssAnon"]
t = threading.Thread(target=sample, daemon=True); t.start()
t0 = time.perf_counter()
fs = open_feature_store({store!r})
t_open = time.perf_counter() - t0
after_open = status()["RssAnon"]
t0 = time.perf_counter()
res = run_selection({method!r}, fs.features, fs.labels, {fraction}, budget={budget!r}, seed=0, device="cpu")
t_sel = time.perf_counter() - t0
stop = True; t.join()
print(json.dumps({{"imported": imported, "after_open": after_open, "peak_anon": peak["RssAnon"],
                  "peak_file": peak["RssFile"], "open_s": t_open, "select_s": t_sel,
                  "selected": int(len(res.selected)), "n": int(len(fs))}}))
"""


def write_store(folder: Path, rows: int, dim: int, classes: int, seed: int, chunk: int) -> float:
    from core.feature_store import FeatureStoreWriter

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)).astype(np.float32)
    writer = FeatureStoreWriter(folder, {"model": dim}, {"bench": "store_memory", "seed": seed})
    t0 = time.perf_counter()
    for a in range(0, rows, chunk):
        b = min(rows, a + chunk)
        labels = rng.integers(0, classes, b - a)
        x = centres[labels]
        x += rng.standard_normal(size=x.shape, dtype=np.float32) * np.float32(1.5)
        writer.append(
            {"model": x},
            labels,
            paths=[f"class{c:04d}/img{i:08d}.jpg" for c, i in zip(labels, range(a, b))],
            file_ids=[f"{i:016x}" for i in range(a, b)],
        )
        if (a // chunk) % 16 == 15 or b == rows:
            el = time.perf_counter() - t0
            print(f"  written {b:,}/{rows:,} rows, {el:.0f} s, about {el / b * (rows - b):.0f} s left", file=sys.stderr)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--methods", default="ram_apl,random", help="comma-separated selectors")
    ap.add_argument("--budgets", default="paper,difficulty", help="comma-separated budget strategies")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk", type=int, default=65536, help="rows per appended chunk")
    ap.add_argument("--folder", default=None, help="where to write the store (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the store (and reuse one already there)")
    args = ap.parse_args(argv)

    folder = Path(args.folder) if args.folder else Path(tempfile.mkdtemp(prefix="cs-store-")) / "bench.store"
    size = args.rows * args.dim * 4
    free = shutil.disk_usage(folder.parent if folder.parent.exists() else Path(tempfile.gettempdir())).free
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB RAM; numpy {np.__version__}"
    )
    print(f"store: {args.rows:,} x {args.dim} float32 = {size / 2**30:.1f} GiB, {args.classes} classes, at {folder}")
    from core.feature_store import is_feature_store

    if not (args.keep and is_feature_store(folder)):
        if size * 1.05 > free:
            raise SystemExit(f"{folder.parent} has {free / 2**30:.1f} GiB free; the store needs {size / 2**30:.1f} GiB")
        shutil.rmtree(folder, ignore_errors=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        secs = write_store(folder, args.rows, args.dim, args.classes, args.seed, args.chunk)
        print(f"written in {secs:.0f} s ({size / secs / 2**20:.0f} MiB/s), never more than one chunk in memory")
    try:
        print(f"\nselection at fraction {args.fraction}, one fresh process each (GiB):")
        print(
            "  method        budget       open s  select s  anon imported  after open  anon peak  "
            "peak-imported / features  mapped peak"
        )
        for method in args.methods.split(","):
            for budget in args.budgets.split(","):
                code = CHILD.format(
                    repo=str(REPO), store=str(folder), method=method, budget=budget, fraction=args.fraction
                )
                out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
                if out.returncode != 0:
                    print(f"  {method:<12}  {budget:<11}  failed (exit {out.returncode}): {out.stderr.strip()[-400:]}")
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                g = 2**30
                print(
                    f"  {method:<12}  {budget:<11}  {r['open_s']:6.1f}  {r['select_s']:8.1f}  "
                    f"{r['imported'] / g:13.2f}  {r['after_open'] / g:10.2f}  {r['peak_anon'] / g:9.2f}  "
                    f"{(r['peak_anon'] - r['imported']) / size:24.3f}  {r['peak_file'] / g:11.2f}",
                    flush=True,
                )
    finally:
        if not args.keep:
            shutil.rmtree(folder.parent if not args.folder else folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
