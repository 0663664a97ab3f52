"""Throughput of the Ray Data engine against the local engine, in one run (effnet-lite0, CPU, no cache).

On ``--data`` (default ``../shared/data/finegrained``), first ``--limit`` images:

* **local**: :func:`core.extract.embed_images` with its defaults;
* **ray, 1 worker** / **ray, 2 workers**: :func:`core.ray_engine.embed_images_ray` on a local
  Ray cluster of this machine's CPUs (started once, timed as ``ray.init``), one actor using
  all CPUs, or two actors with half of them each.

For each Ray run: the start-up (from the call to the first finished batch: actor start,
model load in the actor, the first batch), the steady rate after it, and the per-batch
overhead ``(steady batch time - local batch time)`` where a batch time is ``batch / rate``.
Rounds are interleaved (``--repeats``) on a shared machine; the best round is reported with
the median. Usage::

    python bench/ray_embed.py [--data DIR] [--limit 400] [--repeats 2]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.embed_throughput import cpu_name, list_images  # noqa: E402 - after the sys.path insert


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "finegrained"))
    ap.add_argument("--limit", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args(argv)

    os.environ.setdefault("CORESET_STUDIO_HOME", tempfile.mkdtemp(prefix="cs-ray-bench-"))
    import ray
    import torch

    from core.embedders import create_embedder
    from core.extract import embed_images
    from core.ray_engine import _connect, embed_images_ray

    paths = list_images(Path(args.data), args.limit)
    bs = args.batch_size
    emb = create_embedder("effnet-lite0")
    factory = functools.partial(create_embedder, "effnet-lite0")
    cpus = os.cpu_count() or 1
    t0 = time.perf_counter()
    _connect(ray, None, cpus)
    init_s = time.perf_counter() - t0
    print(
        f"machine: {cpu_name()}, {cpus} logical CPUs, load avg {os.getloadavg()[0]:.1f}; torch {torch.__version__}, "
        f"ray {ray.__version__}; {len(paths)} images, batch {bs}; ray.init (local cluster) {init_s:.1f} s"
    )
    embed_images(emb, paths[:16], device="cpu", batch_size=bs)  # warm-up
    rows: dict[str, list[dict]] = {"local": [], "ray, 1 worker": [], "ray, 2 workers": []}
    for r in range(args.repeats):
        res = embed_images(emb, paths, device="cpu", batch_size=bs)
        rows["local"].append({"rate": len(paths) / res.seconds})
        for w in (1, 2):
            stats: dict = {}
            res = embed_images_ray(emb, factory, paths, workers=w, batch_size=bs, stats=stats)
            assert res.ok.all(), res.problems[:3]
            steady_n = len(paths) - bs
            steady_rate = steady_n / max(1e-9, res.seconds - stats["startup_s"])
            rows[f"ray, {w} worker{'s' if w > 1 else ''}"].append(
                {
                    "rate": len(paths) / res.seconds,
                    "startup": stats["startup_s"],
                    "steady": steady_rate,
                    "cpus": stats["cpus_per_worker"],
                }
            )
        print(
            f"round {r + 1} (load avg {os.getloadavg()[0]:.1f}): "
            + ", ".join(f"{k} {v[-1]['rate']:.1f} img/s" for k, v in rows.items()),
            flush=True,
        )
    ray.shutdown()

    local_best = max(x["rate"] for x in rows["local"])
    print("\n                    end to end img/s   start-up s   steady img/s   overhead/batch ms   vs local")
    for k, v in rows.items():
        best = max(v, key=lambda x: x["rate"])
        med = statistics.median(x["rate"] for x in v)
        if k == "local":
            print(f"  {k:<16} {best['rate']:8.1f} (med {med:5.1f})")
            continue
        overhead_ms = 1000 * (bs / best["steady"] - bs / local_best)
        print(
            f"  {k:<16} {best['rate']:8.1f} (med {med:5.1f}) {best['startup']:9.1f} {best['steady']:13.1f} "
            f"{overhead_ms:16.1f}   {best['rate'] / local_best:.2f}x end to end, "
            f"{best['steady'] / local_best:.2f}x steady ({best['cpus']:g} CPUs per actor)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
