"""``coreset-studio models``: list the embedders and whether their weights are at hand."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "models",
        help="list the available embedders",
        description="List every registered embedder with its weight status: offline (weights ship in an "
        "installed package), cached (downloaded before) or needs download. Any timm model "
        "(timm:NAME) and any open_clip model (open_clip:ARCH[:TAG]) can be named too.",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..embedders import list_embedders, weights_status

    rows = [
        (info.name, weights_status(info.name), "paper" if info.paper_model else "", info.description)
        for info in list_embedders()
    ]
    width = max(len(r[0]) for r in rows)
    for name, status, paper, description in rows:
        print(f"{name:<{width}}  {status:<14}  {paper:<5}  {description}")
    return 0
