"""The ridge classifier that ``bws`` and ``auto`` train to score a candidate subset.

One-vs-all least squares on one-hot targets (a linear probe with a closed form, so that
scoring dozens of candidate subsets stays cheap)::

    [W; b] = argmin ||[X 1] [W; b] - Y||_F^2 + lam ||W||_F^2      (the bias is not penalised)
    prediction_i = argmax_c (x_i W + b)_c

solved on centred data (products in float32, the solve in float64): ``W = (Xc^T Xc + lam I)^-1 Xc^T Yc`` when ``n >= D``, else
the dual ``W = Xc^T (Xc Xc^T + lam I)^-1 Yc``; ``b = mean(Y) - mean(X) W``. Classes absent
from the training rows get a score of ``-inf`` and are never predicted.
"""

from __future__ import annotations

import numpy as np
import torch


def ridge_fit_predict(
    x_train: torch.Tensor, y_train: np.ndarray, x_test: torch.Tensor, n_classes: int, lam: float
) -> np.ndarray:
    """int64 predicted class of every row of ``x_test`` (``-1`` for every row if ``y_train`` is empty)."""
    y = np.asarray(y_train, dtype=np.int64)
    if y.size == 0:
        return np.full(x_test.shape[0], -1, dtype=np.int64)
    present = np.unique(y)
    if present.size == 1:
        return np.full(x_test.shape[0], int(present[0]), dtype=np.int64)
    x = x_train.to(torch.float32)
    mean = x.to(torch.float64).mean(dim=0, keepdim=True).to(torch.float32)
    xc = x - mean
    targets = torch.zeros((len(y), n_classes), dtype=torch.float64, device=x.device)
    targets[torch.arange(len(y)), torch.from_numpy(y).to(x.device)] = 1.0
    y_mean = targets.mean(dim=0, keepdim=True)
    yc = targets - y_mean
    n, d = xc.shape
    if n >= d:
        gram = (xc.T @ xc).to(torch.float64)
        gram.diagonal().add_(lam)
        w = torch.linalg.solve(gram, (xc.T @ yc.to(torch.float32)).to(torch.float64))
    else:
        gram = (xc @ xc.T).to(torch.float64)
        gram.diagonal().add_(lam)
        w = xc.T.to(torch.float64) @ torch.linalg.solve(gram, yc)
    w32 = w.to(torch.float32)
    bias = (y_mean - mean.to(torch.float64) @ w).to(torch.float32)
    scores = x_test.to(torch.float32) @ w32 + bias
    absent = torch.ones(n_classes, dtype=torch.bool, device=x.device)
    absent[torch.from_numpy(present).to(x.device)] = False
    scores[:, absent] = -float("inf")
    return torch.argmax(scores, dim=1).cpu().numpy().astype(np.int64)
