"""Shared fixtures. Every test runs with its own workspace and with the model hubs offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def isolated_workspace(tmp_path_factory, monkeypatch):
    """A fresh CORESET_STUDIO_HOME per test; hubs forced offline so no test reaches a network."""
    home = tmp_path_factory.mktemp("workspace")
    monkeypatch.setenv("CORESET_STUDIO_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


@pytest.fixture
def fake_app_model():
    """The fast fake embedder of the AppTest suites, registered for one test."""
    from core.embedders import unregister_embedder

    from ._app_helpers import FAKE, register_fake

    register_fake()
    yield FAKE
    unregister_embedder(FAKE)


def write_image(path: Path, seed: int = 0, size=(32, 24), fmt: str | None = None, mode="RGB") -> Path:
    """Write a random-noise image (different seed, different content) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    channels = 3 if mode == "RGB" else 1
    pixels = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode=mode).save(path, format=fmt)
    return path


@pytest.fixture
def image_tree(tmp_path) -> Path:
    """root/<class>/*.png: 3 classes (cat 3, dog 2, fox 4 images)."""
    root = tmp_path / "tree"
    seed = 0
    for label, n in (("cat", 3), ("dog", 2), ("fox", 4)):
        for i in range(n):
            seed += 1
            write_image(root / label / f"{label}{i}.png", seed=seed)
    return root
