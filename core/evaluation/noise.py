"""Step 2 of the protocol: symmetric label noise on the training pool."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Stream tag mixed into the seed of the label noise, so that it does not draw the same
#: numbers as a selector seeded with the same integer (``random`` with seed 0 would otherwise
#: keep exactly the rows the noise flipped).
NOISE_STREAM = 0x6E6F6973  # "nois"


def symmetric_label_noise(
    labels: np.ndarray, rows: np.ndarray, rate: float, seed: int, classes: np.ndarray | Sequence | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Flip each label of ``rows`` with probability ``rate`` to a uniformly drawn other class.

    With ``rng = default_rng([seed, NOISE_STREAM])`` (a stream no selector uses): ``u = rng.random(len(rows))``, ``shift =
    rng.integers(1, C, len(rows))``; row ``rows[j]`` is flipped when ``u[j] < rate``, to
    class ``(code + shift[j]) mod C`` (never its own class). Returns ``(noisy labels
    [N] (a copy), flipped mask [N])``; rows outside ``rows`` are unchanged.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels) if classes is None else np.asarray(classes)
    assert isinstance(classes, np.ndarray)
    noisy = labels.copy()
    flipped = np.zeros(len(labels), dtype=bool)
    rows = np.asarray(rows, dtype=np.int64)
    n_classes = len(classes)
    if rate <= 0 or n_classes < 2 or rows.size == 0:
        return noisy, flipped
    lookup = {v: i for i, v in enumerate(classes.tolist())}
    codes = np.array([lookup[v] for v in labels[rows].tolist()], dtype=np.int64)
    rng = np.random.default_rng([int(seed), NOISE_STREAM])
    u = rng.random(len(rows))
    shift = rng.integers(1, n_classes, size=len(rows))
    flip = u < rate
    noisy[rows[flip]] = classes[(codes[flip] + shift[flip]) % n_classes]
    flipped[rows[flip]] = True
    return noisy, flipped


__all__ = ["NOISE_STREAM", "symmetric_label_noise"]
