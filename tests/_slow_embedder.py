"""A slow fake embedder for the command-line interrupt tests (tests/test_faults_work.py).

A test puts a ``sitecustomize.py`` that calls :func:`register` on the ``PYTHONPATH`` of a
``python -m core.cli ...`` subprocess, so the real command runs with this embedder:
``slow-fake`` sleeps ``$FAULTS_SLOW_S`` seconds per batch and appends ``<pid> <images>`` to
the file ``$FAULTS_COUNTER`` after every batch it embedded.
"""

from __future__ import annotations

import os
import time

NAME = "slow-fake"
DIM = 6
WEIGHTS_ID = "slow-fake-weights"


def make():
    from tests._embed_helpers import fake_embedder

    emb = fake_embedder(NAME, DIM, WEIGHTS_ID)
    delay = float(os.environ.get("FAULTS_SLOW_S", "0"))
    counter = os.environ.get("FAULTS_COUNTER")

    def forward(model, x):
        if delay:
            time.sleep(delay)
        out = model(x)
        if counter:
            with open(counter, "a") as fh:
                fh.write(f"{os.getpid()} {x.shape[0]}\n")
        return out

    emb._forward = forward
    return emb


def register() -> None:
    from core.embedders import register_embedder

    register_embedder(
        NAME,
        lambda weights=None, workspace=None: make(),
        description="test: slow fake",
        family="timm",
        availability="offline",
        dim=DIM,
        overwrite=True,
    )
