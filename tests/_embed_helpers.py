"""Helpers for the embedder / extraction / cache tests: tiny images, models and checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

TINY_CLIP = "coreset-test-tiny-clip"
TINY_CLIP_CFG = {
    "embed_dim": 24,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}


def make_images(folder: Path, n: int, *, start: int = 0, size=(40, 32), fmt: str = "png") -> list[str]:
    """Write ``n`` distinct small RGB images (gradients + noise) and return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(start, start + n):
        rng = np.random.default_rng(k)
        w, h = size
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([(xx * (k % 7 + 1)) % 256, (yy * (k % 5 + 2)) % 256, ((xx + yy) * (k % 3 + 1)) % 256], -1)
        arr = np.clip(base + rng.integers(0, 40, size=(h, w, 3)), 0, 255).astype(np.uint8)
        p = folder / f"img_{k:04d}.{fmt}"
        Image.fromarray(arr).save(p)
        paths.append(str(p))
    return paths


def save_tiny_timm(path: Path, seed: int = 0, model_name: str = "test_vit") -> Path:
    from core.embedders.timm_models import save_random_timm_checkpoint

    return save_random_timm_checkpoint(model_name, path, seed=seed)


def register_tiny_clip_config(folder: Path) -> str:
    """Add the tiny open_clip architecture to open_clip's registry (idempotent)."""
    import open_clip

    if TINY_CLIP not in open_clip.list_models():
        folder.mkdir(parents=True, exist_ok=True)
        cfg = folder / f"{TINY_CLIP}.json"
        cfg.write_text(json.dumps(TINY_CLIP_CFG))
        open_clip.add_model_config(cfg)
    return TINY_CLIP


def save_tiny_clip(path: Path, seed: int = 0) -> Path:
    import open_clip

    torch.manual_seed(seed)
    model = open_clip.create_model(TINY_CLIP, pretrained=None)
    torch.save(model.state_dict(), path)
    return path


class CountingNet(torch.nn.Module):
    """A tiny deterministic conv net that counts how many images it embedded."""

    def __init__(self, dim: int = 6) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, dim, 3, padding=1)
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += x.shape[0]
        return self.conv(x).mean(dim=(2, 3)) * 10.0


def fake_embedder(name: str = "fake", dim: int = 6, weights_id: str = "fake-weights"):
    """An Embedder around :class:`CountingNet` with a 16 px transform (fast, CPU)."""
    from torchvision import transforms

    from core.embedders import Embedder

    tf = transforms.Compose([transforms.Resize((16, 16)), transforms.ToTensor()])
    return Embedder(
        name,
        CountingNet(dim),
        tf,
        dim,
        weights_id=weights_id,
        preprocess={"input_size": (3, 16, 16), "resize": 16},
        output="mean of a 3x3 conv",
    )
