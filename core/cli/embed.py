"""``coreset-studio embed``: load a dataset, embed it with one or more models, write the features file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..embedders.registry import DEFAULT_EMBEDDER
from ..errors import CoresetError
from ..params import parse_assignments
from ._common import add_dataset_arguments, load_dataset_verbose, print_problems, tqdm_model_progress


def parse_weights(items: list[str] | None) -> dict[str, str]:
    """``["model=PATH", ...]`` -> ``{model: PATH}``."""
    return parse_assignments(
        items, "--weights", form="MODEL=PATH", hint=", e.g. --weights dinov2-vits14=dinov2.pth", require_value=True
    )


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "embed",
        help="compute embeddings of a dataset and write the features file",
        description="Load DATA (a folder per class, a CSV/Parquet manifest, a .zip or 'demo'), embed every image "
        "with each model (cached by file content) and write a compressed .npz features file: "
        "paths, labels, split and one float32 array feat_<model> per model. Ctrl-C or SIGTERM stops it "
        "after writing the images embedded so far to the cache (exit status 130 / 143): the same "
        "command then embeds only the rest. A cache that cannot be written is a warning, not "
        "an error; an --out that cannot be written exits with status 2.",
    )
    p.add_argument("data", metavar="DATA", help="dataset folder, manifest (.csv/.parquet), .zip, or 'demo'")
    p.add_argument(
        "--models",
        default=DEFAULT_EMBEDDER,
        help=f"comma-separated embedder names (see `coreset-studio models`); default {DEFAULT_EMBEDDER}",
    )
    p.add_argument(
        "--weights",
        action="append",
        metavar="MODEL=PATH",
        help="local weights file for a hub-backed model (repeatable)",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, cuda, cuda:N or mps")
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="images per forward pass (default: 8 on the CPU, where small batches are faster, 64 on a GPU)",
    )
    p.add_argument("--num-workers", type=int, default=None, help="image-decoding worker processes (default: auto)")
    p.add_argument(
        "--decode-threads",
        type=int,
        default=None,
        help="with no decoding processes, image-decoding threads in the engine's process "
        "(default: 1, decoding the next batches while the model runs; 0: between batches)",
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "fp16", "bf16"],
        help="autocast precision on CUDA (auto = fp16 on CUDA, fp32 elsewhere)",
    )
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the embedding cache")
    p.add_argument(
        "--backend",
        default="torch",
        choices=["torch", "onnx"],
        help="torch (default) or onnx: ONNX Runtime on the CPU (the model exported at load, cached in "
        "the workspace, checked against torch to 1e-5; same features, same cache)",
    )
    p.add_argument(
        "--jpeg-draft",
        action="store_true",
        help="decode JPEGs at a reduced scale still at least the model's resize size (faster on large "
        "photos; slightly different pixels, so cached under its own key)",
    )
    p.add_argument(
        "--engine",
        default="local",
        choices=["local", "ray"],
        help="local (this process, default) or ray (Ray Data actors: a local Ray cluster sized to this "
        "machine's CPUs, or the cluster at --ray-address; needs pip install 'coreset-studio[ray]')",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="with --engine ray: join this cluster ('auto', or ray://HEAD:10001) instead of starting one",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="with --engine ray: actors, one model each (default: one per node, or one per --gpus-per-worker GPUs)",
    )
    p.add_argument(
        "--gpus-per-worker", type=float, default=0.0, help="with --engine ray: GPUs per actor (default 0: CPU actors)"
    )
    p.add_argument(
        "--out",
        required=True,
        help="features file to write (.npz), or a features store folder NAME.store (memory-mapped "
        ".npy per model + rows.parquet keyed by content hash; for features beyond memory)",
    )
    p.add_argument(
        "--append",
        action="store_true",
        help="with --out NAME.store: add the images whose content hash the store does not hold yet "
        "(created when missing; the images in it keep their rows) instead of replacing it; for building "
        "a large store in parts",
    )
    add_dataset_arguments(p)
    p.set_defaults(func=run)


def _kept_message(cache, next_step: str) -> str:
    """Where the finished embeddings of an interrupted or failed run are, and what to do next."""
    if cache is None:
        return "nothing was kept (--no-cache); run without --no-cache to keep finished images across interruptions"
    if cache.write_error is not None:
        return (
            f"the embedding cache {cache.root} could not be written "
            f"({cache.write_error.strerror or cache.write_error}), so this run's embeddings are not all kept; "
            "give a writable --workspace DIR or free some disk space"
        )
    return f"the images embedded so far are kept in the embedding cache {cache.root}; {next_step}"


def run(args: argparse.Namespace) -> int:
    from ..cache import EmbeddingCache
    from ..embedding import embed_dataset
    from ..features import save_features
    from ..workspace import clean_stale_temps

    if args.batch_size is not None and args.batch_size < 1:
        raise CoresetError("--batch-size must be at least 1.")
    if args.append and Path(args.out).suffix != ".store":
        raise CoresetError(f"--append needs a features store as --out (a folder NAME.store), not {args.out}.")
    for flag, value in (("--num-workers", args.num_workers), ("--decode-threads", args.decode_threads)):
        if value is not None and value < 0:
            raise CoresetError(f"{flag} must be 0 or more.")
    weights = parse_weights(args.weights)
    ray_options = None
    if args.engine == "ray":
        from ..ray_engine import require_ray

        require_ray()  # at once, before loading anything
        if args.workers is not None and args.workers < 1:
            raise CoresetError("--workers must be at least 1.")
        if args.gpus_per_worker < 0:
            raise CoresetError("--gpus-per-worker must be 0 or more.")
        if args.device not in ("auto", "cpu"):
            raise CoresetError(
                f"--device {args.device} does not apply to --engine ray: the actors run on the CPU, "
                "or on GPUs with --gpus-per-worker G."
            )
        ray_options = {"address": args.ray_address, "workers": args.workers, "gpus_per_worker": args.gpus_per_worker}
    elif args.ray_address or args.workers is not None or args.gpus_per_worker:
        raise CoresetError("--ray-address, --workers and --gpus-per-worker need --engine ray.")
    dataset = load_dataset_verbose(args)
    cache = None if args.no_cache else EmbeddingCache.in_workspace(args.workspace)
    try:
        with tqdm_model_progress() as progress:
            run_ = embed_dataset(
                dataset,
                args.models,
                weights=weights,
                device=args.device,
                batch_size=args.batch_size,
                num_workers=args.num_workers,
                decode_threads=args.decode_threads,
                precision=args.precision,
                workspace=args.workspace,
                use_cache=not args.no_cache,
                progress=progress,
                cache=cache,
                engine=args.engine,
                ray_options=ray_options,
                backend=args.backend,
                jpeg_draft=args.jpeg_draft,
            )
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (Terminated): the engine has flushed its rows
        print(
            f"stopped before the end: {_kept_message(cache, 'run the same command again to embed only the rest')}.",
            file=sys.stderr,
        )
        raise
    print_problems(run_.problems, "image(s) could not be embedded")
    for model, s in run_.stats.items():
        print(
            f"{model}: {s['dim']}-d, {s['computed']} computed, {s['cached']} from cache, "
            f"{s['seconds']:.1f} s on {s['device']}",
            file=sys.stderr,
        )
    out = Path(args.out).expanduser()
    clean_stale_temps(out.parent, name=out.name)  # what a run killed while writing this file left
    try:
        if out.suffix == ".store" and args.append:
            from ..feature_store import append_feature_store

            if run_.file_ids is None:
                raise CoresetError(
                    "--append needs the images' content hashes, and this dataset has none; write a new store."
                )
            added = append_feature_store(out, run_.features, file_ids=run_.file_ids)
            print(f"added {added} image(s) to {out}; {len(run_.features) - added} were in it already")
            return 0
        if out.suffix == ".store":
            from ..feature_store import save_feature_store

            path = save_feature_store(out, run_.features, file_ids=run_.file_ids)
        else:
            path = save_features(out, run_.features)
    except OSError as exc:
        raise CoresetError(
            f"Cannot write the features file {out}: {exc.strerror or exc}"
            + (f" ({exc.filename})" if exc.filename and str(exc.filename) != str(out) else "")
            + ". Give --out a path in a folder you can write that has free space; "
            + _kept_message(cache, "run again with another --out: it only reads them back")
            + "."
        ) from exc
    print(f"wrote {path} ({len(run_.features)} images, models: {', '.join(run_.features.models)})")
    return 0
