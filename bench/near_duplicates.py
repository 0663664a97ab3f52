"""Near-duplicate detection on injected copies: precision and recall of ``core.duplicates``.

An image set (``--data``: ``demo`` = ``assets/demo``, a manifest or a folder; default Oxford
Flowers-17, ``../shared/data/finegrained/manifest.csv``) is written into a scratch folder
of the workspace (never the repository), ``<workspace>/bench-near-duplicates/<name>-...``:
the originals, byte for byte, plus one copy of each of a seeded random ``--fraction`` of
them (default 50 %). The chosen sources are dealt in turn to five copy kinds, so each kind
has its own sources (no copy can reach its source through another copy of it):

* ``reencoded``: JPEG at a quality drawn from 60-85 (whole image, same size);
* ``resized``: both sides scaled by one factor drawn from 0.5-0.8 (bicubic);
* ``cropped``: 5-10 % of the width and 5-10 % of the height cut off (each drawn), split at a
  random ratio between the two opposite borders;
* ``jittered``: brightness, contrast and saturation each multiplied by ``1 +- u``, ``u``
  drawn from 0.10-0.20 with a random sign (PIL ``ImageEnhance``, in that order);
* ``exact``: a byte copy of the file under another name.

Every transformed copy is written as PNG (lossless) except ``reencoded``, so each kind
isolates one change. The copies get their source's label and split.

The set is embedded with ``--models`` (default ``effnet-lite0,effnet-lite1``; the embedding
cache in the workspace is keyed by content, so a rerun only reads it), each model's
neighbour graph is built (:func:`core.neighbors.build_graph`) and
:func:`core.duplicates.near_duplicates` runs with the images' content hashes as
``file_ids`` (what a features store passes), at every threshold of the sweep.

Measures, per threshold:

* **recall** per copy kind: the share of copies in the same group as their source;
* **pair precision**: over every pair of images inside a predicted group (all pairs of a
  group, not only the links that made it), the share whose two images show the same
  original, under three ground truths:

  - ``strict``: only an original and the copies made of it are the same image; two
    *different originals* are always a false pair, even when the source data holds the same
    photograph twice;
  - ``listed``: two originals on the data's own list of near-duplicate pairs
    (``near_duplicates.csv`` beside the manifest, as Flowers-17 has, or ``--known``; joined
    into components) are the same image too;
  - ``audited``: also two originals that a **pixel audit** finds to be the same photograph:
    every pair of different originals (not on the list) whose images share a group at some
    threshold of the sweep is checked by the grey-level normalised cross-correlation of one
    image, scaled by 0.40-1.00, slid inside the other (either way round, 128 px), and counts
    as the same photograph at NCC >= 0.90 (:data:`SAME_PHOTO_NCC`; 89 of the 99 pairs of
    Flowers-17's own list reach it). The audit reads pixels only, never the embeddings, and
    is cached in the scratch folder (``audit.csv``); ``--no-audit`` skips it;

* exact copies are also measured **without** ``file_ids`` (``exact copies from the features
  alone``): as for an ``.npz`` features file, which does not know the contents.

``--calibrate`` applies the rule used for ``core.duplicates.DEFAULT_THRESHOLD`` to the sweep:
the threshold with the highest recall over the four near kinds together (the exact copies
are found whatever the threshold) whose ``strict`` pair precision is at least
``--min-precision`` (0.97), the highest such threshold on ties. It is meant for the demo set
only: the default is never chosen on the benchmark that is reported (Flowers-17).

Usage::

    python bench/near_duplicates.py                               # Flowers-17, default threshold
    python bench/near_duplicates.py --data demo --calibrate --sweep 0.20:0.80:0.01   # the calibration
    python bench/near_duplicates.py --markdown bench/results/near_duplicates.md
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core.datasets import load_dataset  # noqa: E402
from core.duplicates import DEFAULT_THRESHOLD, near_duplicates, union_groups  # noqa: E402
from core.embedding import embed_dataset  # noqa: E402
from core.neighbors import build_graph  # noqa: E402
from core.provenance import package_versions  # noqa: E402
from core.workspace import resolve_workspace  # noqa: E402

FLOWERS = REPO.parent / "shared" / "data" / "finegrained" / "manifest.csv"
KINDS = ("reencoded", "resized", "cropped", "jittered", "exact")
NEAR_KINDS = KINDS[:-1]
PLAN_VERSION = 1


# --------------------------------------------------------------------------- copies
def make_copy(src: Path, dest_dir: Path, stem: str, kind: str, rng: np.random.Generator) -> tuple[Path, str]:
    """Write the ``kind`` copy of ``src`` into ``dest_dir``; ``(path, parameters in words)``."""
    from PIL import Image, ImageEnhance

    dest_dir.mkdir(parents=True, exist_ok=True)
    if kind == "exact":
        dest = dest_dir / f"{stem}{src.suffix}"
        shutil.copyfile(src, dest)
        return dest, "byte copy"
    with Image.open(src) as im:
        im.load()
        img = im.convert("RGB") if im.mode not in ("RGB", "L") else im.copy()
    w, h = img.size
    if kind == "reencoded":
        q = int(rng.integers(60, 86))
        dest = dest_dir / f"{stem}.jpg"
        img.save(dest, format="JPEG", quality=q)
        return dest, f"quality {q}"
    if kind == "resized":
        s = float(rng.uniform(0.5, 0.8))
        out = img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BICUBIC)
        what = f"scale {s:.3f}"
    elif kind == "cropped":
        fx, fy = float(rng.uniform(0.05, 0.10)), float(rng.uniform(0.05, 0.10))
        ax, ay = float(rng.uniform()), float(rng.uniform())
        cut_x, cut_y = round(w * fx), round(h * fy)
        left, top = round(cut_x * ax), round(cut_y * ay)
        out = img.crop((left, top, left + w - cut_x, top + h - cut_y))
        what = f"cut {fx:.3f} x {fy:.3f}"
    elif kind == "jittered":
        out = img
        parts = []
        for name, enhancer in (
            ("brightness", ImageEnhance.Brightness),
            ("contrast", ImageEnhance.Contrast),
            ("saturation", ImageEnhance.Color),
        ):
            f = 1.0 + float(rng.choice([-1.0, 1.0])) * float(rng.uniform(0.10, 0.20))
            out = enhancer(out).enhance(f)
            parts.append(f"{name} {f:.3f}")
        what = ", ".join(parts)
    else:
        raise ValueError(kind)
    dest = dest_dir / f"{stem}.png"
    out.save(dest, format="PNG")
    return dest, what


def build_set(ds, fraction: float, seed: int, workspace: Path) -> tuple[Path, list[dict]]:
    """Write originals + copies into the scratch folder (reused when already complete);
    ``(manifest path, plan rows: path, kind, source, params)``."""
    key = hashlib.sha256(f"{ds.fingerprint}|{fraction}|{seed}|{PLAN_VERSION}".encode()).hexdigest()[:12]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in ds.name)
    folder = workspace / "bench-near-duplicates" / f"{safe}-{key}"
    manifest, plan_file, marker = folder / "manifest.csv", folder / "plan.csv", folder / ".complete"
    if marker.is_file():
        with open(plan_file, newline="") as fh:
            return manifest, list(csv.DictReader(fh))
    if folder.exists():
        shutil.rmtree(folder)
    rng = np.random.default_rng(seed)
    n = len(ds)
    n_src = int(round(fraction * n))
    sources = rng.permutation(n)[:n_src]
    rows: list[dict] = []
    rel = ds.relative_paths()
    for i in range(n):  # originals, byte for byte
        src = Path(ds.paths[i])
        dest = folder / "images" / "original" / f"{i:05d}_{Path(rel[i]).name}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        rows.append(
            {
                "path": dest.relative_to(folder).as_posix(),
                "label": ds.labels[i],
                "split": ds.splits[i],
                "kind": "original",
                "source": dest.relative_to(folder).as_posix(),
                "original": rel[i],
                "params": "",
            }
        )
    for t, i in enumerate(sources):
        kind = KINDS[t % len(KINDS)]
        src_row = rows[int(i)]
        dest, what = make_copy(
            folder / src_row["path"], folder / "images" / kind, f"{int(i):05d}_{Path(rel[i]).stem}", kind, rng
        )
        rows.append({**src_row, "path": dest.relative_to(folder).as_posix(), "kind": kind, "params": what})
    with open(manifest, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "split"])
        w.writerows([r["path"], r["label"], r["split"]] for r in rows)
    with open(plan_file, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    marker.write_text(f"name={ds.name} fraction={fraction} seed={seed} version={PLAN_VERSION}\n")
    return manifest, rows


def known_pairs(ds, known: Path | None) -> list[tuple[str, str]]:
    """The source data's own near-duplicate pairs (relative paths of the original set)."""
    if known is None or not known.is_file():
        return []
    with open(known, newline="") as fh:
        return [(r["path_a"], r["path_b"]) for r in csv.DictReader(fh)]


# --------------------------------------------------------------------------- measures
def _same_pairs(group: np.ndarray, key: np.ndarray) -> int:
    """Pairs of rows inside one group that also share ``key``."""
    rows = np.flatnonzero(group >= 0)
    if rows.size == 0:
        return 0
    _, counts = np.unique(np.stack([group[rows], key[rows]], axis=1), axis=0, return_counts=True)
    return int((counts * (counts - 1) // 2).sum())


def group_pairs(group: np.ndarray) -> np.ndarray:
    """int64 ``[P, 2]``: every pair of rows inside one group."""
    out = []
    for g in np.unique(group[group >= 0]):
        m = np.flatnonzero(group == g)
        i, j = np.triu_indices(len(m), 1)
        out.append(np.stack([m[i], m[j]], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.int64)


def measure(groups, kind: np.ndarray, source: np.ndarray, truths: dict[str, np.ndarray]) -> dict:
    """Recall per kind; pair precision under each ground truth of ``truths`` (name -> the
    component of each row's original: two rows are the same image when equal)."""
    g = groups.group
    pairs = group_pairs(g)
    out: dict = {"threshold": groups.threshold, "groups": groups.n_groups, "pairs": len(pairs)}
    for name, comp in truths.items():
        same = int(np.count_nonzero(comp[pairs[:, 0]] == comp[pairs[:, 1]])) if len(pairs) else 0
        out[f"precision_{name}"] = same / len(pairs) if len(pairs) else 1.0
        out[f"false_{name}"] = len(pairs) - same
    for k in KINDS:
        rows = np.flatnonzero(kind == k)
        hit = (g[rows] >= 0) & (g[rows] == g[source[rows]])
        out[f"recall_{k}"] = float(hit.mean()) if rows.size else float("nan")
        out[f"n_{k}"] = int(rows.size)
    rows = np.flatnonzero(np.isin(kind, NEAR_KINDS))
    out["recall_near"] = float(((g[rows] >= 0) & (g[rows] == g[source[rows]])).mean()) if rows.size else float("nan")
    orig = pairs[(kind[pairs[:, 0]] == "original") & (kind[pairs[:, 1]] == "original")] if len(pairs) else pairs
    out["orig_pairs"] = len(orig)
    for name, comp in truths.items():
        out[f"orig_pairs_{name}"] = int(np.count_nonzero(comp[orig[:, 0]] == comp[orig[:, 1]])) if len(orig) else 0
    return out


# --------------------------------------------------------------------------- pixel audit
#: Two originals are the same photograph when their grey-level normalised cross-correlation,
#: at the best scale (0.40-1.00 of one inside the other) and shift, reaches this.
SAME_PHOTO_NCC = 0.90


def same_photo_ncc(path_a: Path, path_b: Path) -> float:
    """Best normalised cross-correlation of one image (scaled by 0.40-1.00, step 0.025) inside
    the other, either way round, at 128 px on the longer side (grey levels)."""
    from PIL import Image
    from skimage.feature import match_template

    with Image.open(path_a) as a, Image.open(path_b) as b:
        ims = (a.convert("L"), b.convert("L"))
    best = -1.0
    for big, small in (ims, ims[::-1]):
        f = 128 / max(big.size)
        x = np.asarray(big.resize((max(1, round(big.width * f)), max(1, round(big.height * f))), 2), dtype=np.float64)
        for s in np.arange(0.40, 1.0001, 0.025):
            tw, th = round(small.width * f * s), round(small.height * f * s)
            if min(tw, th) < 16 or tw > x.shape[1] or th > x.shape[0]:
                continue
            t = np.asarray(small.resize((tw, th), 2), dtype=np.float64)
            best = max(best, float(match_template(x, t).max()))
    return best


def audit(pairs: set[tuple[int, int]], rows: list[dict], folder: Path) -> dict[tuple[int, int], float]:
    """NCC of each pair of originals (rows), cached in ``folder/audit.csv``."""
    cache_file = folder / "audit.csv"
    cache: dict[tuple[str, str], float] = {}
    if cache_file.is_file():
        with open(cache_file, newline="") as fh:
            cache = {(r["a"], r["b"]): float(r["ncc"]) for r in csv.DictReader(fh)}
    out = {}
    for i, j in sorted(pairs):
        key = (rows[i]["path"], rows[j]["path"])
        if key not in cache:
            cache[key] = same_photo_ncc(folder / key[0], folder / key[1])
        out[(i, j)] = cache[key]
    with open(cache_file, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["a", "b", "ncc"])
        w.writerows([a, b, f"{v:.4f}"] for (a, b), v in sorted(cache.items()))
    return out


def calibrate(sweep: list[dict], min_precision: float) -> dict | None:
    ok = [r for r in sweep if r["precision_strict"] >= min_precision]
    if not ok:
        return None
    return max(ok, key=lambda r: (r["recall_near"], r["threshold"]))


# --------------------------------------------------------------------------- report
def machine() -> str:
    model = platform.processor() or "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        pass
    try:
        with open("/proc/cpuinfo") as fh:
            have = next((set(line.split(":", 1)[1].split()) for line in fh if line.startswith("flags")), set())
        avx = "AVX-512" if "avx512f" in have else ("AVX2, no AVX-512" if "avx2" in have else "no AVX-512")
    except OSError:
        avx = "flags unknown"
    return f"{model} ({avx}), {os.cpu_count()} logical CPUs, {platform.machine()}"


def fmt(v: float) -> str:
    return "  -  " if v != v else f"{v:.3f}"


def table(rows: list[dict], truths: list[str]) -> list[str]:
    cols = ["thresh", "pairs"] + [f"p:{t[:5]}" for t in truths] + [k[:6] for k in KINDS] + ["near"]
    lines = ["  ".join(f"{c:>7s}" for c in cols)]
    for r in rows:
        cells = [f"{r['threshold']:.3f}", str(r["pairs"])] + [fmt(r[f"precision_{t}"]) for t in truths]
        cells += [fmt(r[f"recall_{k}"]) for k in KINDS] + [fmt(r["recall_near"])]
        lines.append("  ".join(f"{c:>7s}" for c in cells))
    return lines


def write_markdown(path: Path, title: str, lines: list[str]) -> None:
    """Put ``lines`` into ``path`` as the section ``## title`` (replacing a section of that title)."""
    head = "# bench/near_duplicates.py results\n\nWritten by `python bench/near_duplicates.py --markdown`.\n"
    sections: dict[str, str] = {}
    if path.is_file():
        text = path.read_text()
        for part in text.split("\n## ")[1:]:
            name, _, body = part.partition("\n")
            sections[name.strip()] = body.strip("\n")
    sections[title] = f"{time.strftime('%Y-%m-%d')}\n\n```\n" + "\n".join(lines) + "\n```"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head + "".join(f"\n## {name}\n\n{body}\n" for name, body in sections.items()))


def parse_thresholds(text: str) -> list[float]:
    if ":" in text:
        a, b, s = (float(x) for x in text.split(":"))
        return [round(float(t), 4) for t in np.arange(a, b + s / 2, s)]
    return [float(x) for x in text.split(",") if x.strip()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(FLOWERS), help="demo, a manifest or a folder (default: Flowers-17)")
    ap.add_argument("--fraction", type=float, default=0.5, help="share of the originals copied (default 0.5)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", default="effnet-lite0,effnet-lite1")
    ap.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="the reported threshold")
    ap.add_argument("--sweep", default="0.20:0.80:0.04", help="thresholds: A:B:STEP or a list (default 0.20:0.80:0.04)")
    ap.add_argument("--known", help="CSV path_a,path_b of the data's own near-duplicates (default: beside it)")
    ap.add_argument("--no-audit", action="store_true", help="skip the pixel audit of pairs of different originals")
    ap.add_argument("--calibrate", action="store_true", help="apply the calibration rule to the sweep")
    ap.add_argument("--min-precision", type=float, default=0.97, help="the calibration rule's precision floor")
    ap.add_argument("--workspace", help="default: the user workspace (~/.cache/coreset-studio)")
    ap.add_argument("--json", help="write the results as JSON here (bench/results/*.json is not committed)")
    ap.add_argument(
        "--markdown",
        help="write the printed report into this markdown file, as the section of this data set "
        "(other sections kept), e.g. bench/results/near_duplicates.md",
    )
    args = ap.parse_args(argv)

    ws = resolve_workspace(args.workspace)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    t0 = time.perf_counter()
    ds = load_dataset(args.data, workspace=ws)
    known_file = Path(args.known) if args.known else (Path(ds.root) / "near_duplicates.csv")
    known = known_pairs(ds, known_file)
    manifest, plan = build_set(ds, args.fraction, args.seed, ws)
    t_build = time.perf_counter() - t0
    full = load_dataset(str(manifest), workspace=ws)
    t1 = time.perf_counter()
    run = embed_dataset(full, models, workspace=ws)
    t_embed = time.perf_counter() - t1
    fs = run.features
    folder = manifest.parent
    by_path = {str((folder / r["path"]).resolve()): r for r in plan}
    rows = [by_path[str(Path(p).resolve())] for p in fs.paths]
    n = len(rows)
    index_of = {r["path"]: i for i, r in enumerate(rows)}
    kind = np.array([r["kind"] for r in rows])
    source = np.array([index_of[r["source"]] for r in rows], dtype=np.int64)  # an original's is itself
    orig_row = {r["original"]: index_of[r["path"]] for r in rows if r["kind"] == "original"}
    kp = np.array([(orig_row[a], orig_row[b]) for a, b in known if a in orig_row and b in orig_row], dtype=np.int64)
    kp = kp.reshape(-1, 2)
    listed = union_groups(n, kp)
    feats = {m: fs.features[m] for m in models}
    t2 = time.perf_counter()
    graphs = {m: build_graph(feats[m], name=m) for m in models}
    t_graph = time.perf_counter() - t2
    file_ids = np.asarray(run.file_ids if run.file_ids is not None else full.file_ids)

    thresholds = sorted(set(parse_thresholds(args.sweep)) | {float(args.threshold)})
    found = {t: near_duplicates(feats, graphs, threshold=t, file_ids=file_ids) for t in thresholds}
    t3 = time.perf_counter()
    at = near_duplicates(feats, graphs, threshold=args.threshold, file_ids=file_ids)
    t_dup = time.perf_counter() - t3
    no_ids = near_duplicates(feats, graphs, threshold=args.threshold)

    # the pixel audit: every pair of different originals, not on the data's list, whose rows share a group
    same_photo = np.zeros((0, 2), dtype=np.int64)
    audited: dict[tuple[int, int], float] = {}
    t4 = time.perf_counter()
    if not args.no_audit:
        todo: set[tuple[int, int]] = set()
        for groups in found.values():
            p = group_pairs(groups.group)
            p = p[listed[source[p[:, 0]]] != listed[source[p[:, 1]]]] if len(p) else p
            todo |= {(int(min(a, b)), int(max(a, b))) for a, b in zip(source[p[:, 0]], source[p[:, 1]])}
        audited = audit(todo, rows, folder)
        same_photo = np.array([k for k, v in audited.items() if v >= SAME_PHOTO_NCC], dtype=np.int64).reshape(-1, 2)
    t_audit = time.perf_counter() - t4
    truths = {"strict": source, "listed": listed[source]}
    if not args.no_audit:
        truths["audited"] = union_groups(n, np.concatenate([kp, same_photo]))[source]
    sweep = [measure(found[t], kind, source, truths) for t in thresholds]
    main_row = measure(at, kind, source, truths)
    main_row["recall_exact_features_only"] = measure(no_ids, kind, source, truths)["recall_exact"]

    counts = {k: int(np.count_nonzero(kind == k)) for k in ("original", *KINDS)}
    versions = package_versions(("torch", "timm", "numpy", "pillow", "scikit-image"))
    prec = ", ".join(
        f"{name} {main_row[f'precision_{name}']:.4f} ({main_row[f'false_{name}']} false)" for name in truths
    )
    lines = [
        f"machine: {machine()}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"data: {ds.name} ({args.data}), {len(ds)} originals; scratch set {folder}",
        f"copies: seed {args.seed}, {args.fraction:.0%} of the originals as sources, one copy each, "
        + ", ".join(f"{k} {counts[k]}" for k in KINDS),
        f"the data's own near-duplicate list: {len(kp)} pairs ({known_file if len(kp) else 'none'})",
        f"models: {', '.join(models)}; {n} images; threshold {args.threshold} (relative similarity, every model)",
        f"time: writing the set {t_build:.1f} s, embedding {t_embed:.1f} s ("
        + ", ".join(f"{m} {s.get('computed', 0)} computed / {s.get('cached', 0)} cached" for m, s in run.stats.items())
        + f"), graphs {t_graph:.2f} s, near_duplicates {t_dup:.3f} s, pixel audit {t_audit:.1f} s",
        "",
        f"at threshold {args.threshold}: {main_row['pairs']} pairs in {main_row['groups']} groups",
        f"  pair precision: {prec}",
        "  recall: "
        + ", ".join(f"{k} {main_row[f'recall_{k}']:.4f} ({main_row[f'n_{k}']})" for k in KINDS)
        + f"; the four near kinds together {main_row['recall_near']:.4f}",
        f"  exact copies from the features alone (no file_ids): recall {main_row['recall_exact_features_only']:.4f}",
        f"  pairs of two originals grouped: {main_row['orig_pairs']}; the same image by the data's list "
        f"{main_row['orig_pairs_listed']}"
        + (f", by the list or the pixel audit {main_row['orig_pairs_audited']}" if "audited" in truths else ""),
    ]
    if not args.no_audit:
        lines.append(
            f"  pixel audit: {len(audited)} pairs of different originals not on the list were grouped at some "
            f"threshold of the sweep; {len(same_photo)} have NCC >= {SAME_PHOTO_NCC} (the same photograph)"
        )
    lines += [
        "",
        "sweep (p:strict / p:liste / p:audit = pair precision counting pairs of different originals as wrong /",
        "as right when the data's list joins them / when the list or the pixel audit does; then recall per kind):",
        *table(sweep, list(truths)),
    ]
    chosen = None
    if args.calibrate:
        chosen = calibrate(sweep, args.min_precision)
        lines.append("")
        if chosen is None:
            lines.append(f"calibration: no threshold of the sweep reaches precision >= {args.min_precision}")
        else:
            lines.append(
                f"calibration (highest recall over the four near kinds with strict precision >= "
                f"{args.min_precision}, the highest threshold on ties): {chosen['threshold']:.3f} "
                f"(precision {chosen['precision_strict']:.4f}, recall {chosen['recall_near']:.4f})"
            )
    print("\n".join(lines))
    if args.markdown:
        write_markdown(Path(args.markdown), f"{ds.name} ({args.data}), seed {args.seed}", lines)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        result = {
            "machine": machine(),
            "versions": versions,
            "data": {"name": ds.name, "source": args.data, "originals": len(ds), "copies": counts},
            "fraction": args.fraction,
            "seed": args.seed,
            "models": models,
            "threshold": args.threshold,
            "timing_s": {
                "build": round(t_build, 2),
                "embed": round(t_embed, 2),
                "graphs": round(t_graph, 3),
                "near_duplicates": round(t_dup, 4),
                "audit": round(t_audit, 1),
            },
            "at_threshold": main_row,
            "sweep": sweep,
            "calibrated": chosen,
            "audit": [
                {"a": rows[i]["original"], "b": rows[j]["original"], "ncc": round(v, 4)}
                for (i, j), v in sorted(audited.items())
            ],
        }
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
