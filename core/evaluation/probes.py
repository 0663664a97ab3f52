"""The models trained on a subset to measure what it is worth: ``linear``, ``mlp``, ``finetune``.

Every trainer has the same interface::

    trainer.fit_predict(x_train, y_train, x_test, n_classes, seed) -> int64 [n_test]

``y_train`` are integer class codes in ``[0, n_classes)``; the return value holds the
predicted code of every test input (``-1`` when nothing could be trained, e.g. an empty
subset, which then counts as wrong everywhere). ``x_*`` are embeddings ``[n, D]`` for
``linear`` and ``mlp``, image paths for ``finetune``. A class absent from the training
subset (budget rounding keeps 0 rows of it at 1 %) can never be predicted by ``linear``;
its test samples count as wrong. A subset with a single class predicts that class.

Parameters are declared with the one parameter system (:mod:`core.params`) and validated
once, on construction (:func:`make_trainer` builds one from a name and a ``{name: value}``
mapping, strings allowed, as the CLI passes them). The trainers are registered
(:data:`TRAINERS`, :func:`list_trainers`, :func:`get_trainer`): the CLI's ``--eval``
choices and the app's picker come from there.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from ..errors import CoresetError
from ..params import Params, param


@dataclass(frozen=True)
class TrainerParams(Params):
    """Base of the trainers: their parameters are :class:`core.params.Params` (declared,
    validated once on construction, form-building); errors name ``trainer '<kind>'``."""

    kind: ClassVar[str] = ""
    stochastic: ClassVar[bool] = False
    #: True when the trainer reads image files rather than embeddings.
    uses_images: ClassVar[bool] = False
    #: One line for ``--help`` and the app.
    summary: ClassVar[str] = ""

    @classmethod
    def subject(cls) -> str:
        return f"trainer {cls.kind!r}"

    @classmethod
    def unknown_message(cls, name: str, allowed: list[str]) -> str:
        return f"Trainer {cls.kind!r} has no parameter {name}; parameters: {', '.join(allowed)}."


# --------------------------------------------------------------------------- linear
#: BLAS threads of a linear-probe fit (see :class:`LinearProbe`).
BLAS_THREADS = 1


@dataclass(frozen=True)
class LinearProbe(TrainerParams):
    """Multinomial logistic regression on standardised embeddings.

    ``z = (x - mean_train) / std_train`` (a ``StandardScaler`` fitted on the training
    subset only; constant columns are left unscaled), then scikit-learn's
    ``LogisticRegression`` (multinomial softmax loss + ``||W||^2 / (2 C)``, solver
    ``lbfgs``). ``C`` is fixed (default 1.0) and never tuned on the test set.
    Deterministic: the seed is ignored.

    The fit runs with one BLAS thread (:data:`BLAS_THREADS`): lbfgs makes thousands of small
    BLAS calls, and with two threads each call waits for the other thread, which on a busy
    machine (another process on a core) costs milliseconds per call: ``auto`` on the
    1,000-image demo (84 fits) took 237 s with numpy's default two threads and 10 s with one,
    on the 2-core machine under load (bench/README.md, "Selection quality").
    """

    kind: ClassVar[str] = "linear"
    stochastic: ClassVar[bool] = False
    summary: ClassVar[str] = "a linear probe (standardised logistic regression) on the embeddings"
    C: float = param(
        1.0,
        "Inverse L2 strength C of the logistic regression (fixed, never tuned on the test set).",
        minimum=0.0,
        exclusive_minimum=True,
    )
    max_iter: int = param(2000, "Iterations of lbfgs at most.", minimum=1)
    tol: float = param(1e-4, "Stopping tolerance of lbfgs.", minimum=0.0, exclusive_minimum=True)

    def fit_predict(self, x_train, y_train, x_test, n_classes: int, seed: int = 0) -> np.ndarray:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        y = np.asarray(y_train, dtype=np.int64)
        present = np.unique(y)
        n_test = len(x_test)
        if present.size == 0:
            return np.full(n_test, -1, dtype=np.int64)
        if present.size == 1:
            return np.full(n_test, int(present[0]), dtype=np.int64)
        from threadpoolctl import threadpool_limits

        x = np.asarray(x_train, dtype=np.float64)
        with threadpool_limits(limits=BLAS_THREADS, user_api="blas"):
            scaler = StandardScaler().fit(x)
            clf = LogisticRegression(C=self.C, solver="lbfgs", max_iter=self.max_iter, tol=self.tol)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                clf.fit(scaler.transform(x), y)
            return clf.predict(scaler.transform(np.asarray(x_test, dtype=np.float64))).astype(np.int64)


# --------------------------------------------------------------------------- mlp
@dataclass(frozen=True)
class MLPProbe(TrainerParams):
    """A small torch MLP on standardised embeddings.

    ``Linear(D, hidden) -> ReLU -> Dropout(dropout) -> Linear(hidden, C)``, cross-entropy,
    AdamW (``lr``, ``weight_decay``), ``epochs`` passes over the subset in shuffled
    mini-batches of ``batch_size``. Initialisation and shuffling use ``seed`` (the global
    torch RNG is left untouched). Runs on the CPU (small and fast enough).
    """

    kind: ClassVar[str] = "mlp"
    stochastic: ClassVar[bool] = True
    summary: ClassVar[str] = "a small MLP on the embeddings (seeded)"
    hidden: int = param(512, "Width of the hidden layer.", minimum=1)
    epochs: int = param(100, "Passes over the subset.", minimum=1)
    lr: float = param(1e-3, "AdamW learning rate.", minimum=0.0, exclusive_minimum=True)
    weight_decay: float = param(1e-4, "AdamW weight decay.", minimum=0.0)
    dropout: float = param(
        0.2, "Dropout after the hidden layer, in [0, 1).", minimum=0.0, maximum=1.0, exclusive_maximum=True
    )
    batch_size: int = param(128, "Mini-batch size.", minimum=1)

    def fit_predict(self, x_train, y_train, x_test, n_classes: int, seed: int = 0) -> np.ndarray:
        import torch

        y = np.asarray(y_train, dtype=np.int64)
        n_test = len(x_test)
        present = np.unique(y)
        if present.size == 0:
            return np.full(n_test, -1, dtype=np.int64)
        if present.size == 1:
            return np.full(n_test, int(present[0]), dtype=np.int64)
        x = np.asarray(x_train, dtype=np.float32)
        mean = x.mean(axis=0)
        std = x.std(axis=0)
        std[std == 0] = 1.0
        xt = torch.from_numpy((x - mean) / std)
        yt = torch.from_numpy(y)
        gen = torch.Generator().manual_seed(int(seed))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            net = torch.nn.Sequential(
                torch.nn.Linear(x.shape[1], self.hidden),
                torch.nn.ReLU(),
                torch.nn.Dropout(self.dropout),
                torch.nn.Linear(self.hidden, int(n_classes)),
            )
            opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            loss_fn = torch.nn.CrossEntropyLoss()
            net.train()
            for _ in range(self.epochs):
                perm = torch.randperm(len(xt), generator=gen)
                for start in range(0, len(xt), self.batch_size):
                    idx = perm[start : start + self.batch_size]
                    opt.zero_grad(set_to_none=True)
                    loss_fn(net(xt[idx]), yt[idx]).backward()
                    opt.step()
            net.eval()
            xe = torch.from_numpy((np.asarray(x_test, dtype=np.float32) - mean) / std)
            with torch.no_grad():
                out = (
                    torch.cat([net(xe[i : i + 4096]) for i in range(0, len(xe), 4096)])
                    if len(xe)
                    else torch.zeros(0, int(n_classes))
                )
        return out.argmax(dim=1).numpy().astype(np.int64)


# --------------------------------------------------------------------------- finetune
@dataclass(frozen=True)
class FinetuneTrainer(TrainerParams):
    """A timm image classifier trained on the subset's images.

    ``timm.create_model(model, pretrained=pretrained, num_classes=C)``: ``resnet18`` from
    scratch (as in the paper) by default, or a pretrained backbone fine-tuned (its weights
    must be in the local timm/Hugging Face cache; nothing is downloaded when offline).
    Training augmentation: ``RandomResizedCrop(image_size, scale=(min_scale, 1))`` +
    horizontal flip; test: resize the shorter side to ``image_size / 0.875`` and centre
    crop. ImageNet normalisation. Optimiser ``sgd`` (momentum 0.9, nesterov) or ``adamw``,
    cosine learning-rate decay over ``epochs``, cross-entropy. Seeded (initialisation,
    shuffling, augmentation), but GPU kernels may still be non-deterministic. Meant for a
    GPU; on the CPU it runs, slowly, with a warning.
    """

    kind: ClassVar[str] = "finetune"
    stochastic: ClassVar[bool] = True
    uses_images: ClassVar[bool] = True
    summary: ClassVar[str] = "a timm image classifier trained on the subset's images (GPU advised)"
    model: str = param("resnet18", "timm model name.")
    pretrained: bool = param(False, "Start from pretrained weights (they must be in the local cache).")
    epochs: int = param(30, "Epochs.", minimum=1)
    lr: float = param(0.05, "Peak learning rate (cosine decay).", minimum=0.0, exclusive_minimum=True)
    optimizer: Literal["sgd", "adamw"] = param("sgd", "sgd (momentum 0.9, nesterov) or adamw.")
    weight_decay: float = param(5e-4, "Weight decay.", minimum=0.0)
    batch_size: int = param(64, "Mini-batch size.", minimum=1)
    image_size: int = param(224, "Training and test crop size in pixels.", minimum=8)
    min_scale: float = param(
        0.35, "Smallest area share of RandomResizedCrop, in (0, 1].", minimum=0.0, maximum=1.0, exclusive_minimum=True
    )
    num_workers: int = param(0, "DataLoader worker processes.", minimum=0)
    device: str = param("auto", "Torch device: auto, cpu, cuda, cuda:N or mps.")

    def _transforms(self):
        from torchvision import transforms as T

        norm = T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
        train = T.Compose(
            [
                T.RandomResizedCrop(self.image_size, scale=(self.min_scale, 1.0)),
                T.RandomHorizontalFlip(),
                T.ToTensor(),
                norm,
            ]
        )
        test = T.Compose(
            [T.Resize(int(round(self.image_size / 0.875))), T.CenterCrop(self.image_size), T.ToTensor(), norm]
        )
        return train, test

    def fit_predict(self, x_train, y_train, x_test, n_classes: int, seed: int = 0) -> np.ndarray:
        import timm
        import torch

        from ..datasets.images import open_rgb
        from ..devices import resolve_device

        y = np.asarray(y_train, dtype=np.int64)
        n_test = len(x_test)
        if len(y) == 0:
            return np.full(n_test, -1, dtype=np.int64)
        device = resolve_device(self.device)
        if device.type == "cpu":
            warnings.warn(
                "finetune runs on the CPU: expect it to be slow (it is meant for a GPU).", RuntimeWarning, stacklevel=2
            )
        train_tf, test_tf = self._transforms()

        class _Images(torch.utils.data.Dataset):
            def __init__(self, paths, labels, tf):
                self.paths, self.labels, self.tf = list(map(str, paths)), labels, tf

            def __len__(self):
                return len(self.paths)

            def __getitem__(self, i):
                return self.tf(open_rgb(self.paths[i])), int(self.labels[i]) if self.labels is not None else -1

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            try:
                net = timm.create_model(self.model, pretrained=self.pretrained, num_classes=int(n_classes))
            except Exception as exc:  # unknown model name or weights not available offline
                raise CoresetError(
                    f"finetune: could not create timm model {self.model!r} (pretrained={self.pretrained}): {exc}"
                ) from exc
            net = net.to(device)
            gen = torch.Generator().manual_seed(int(seed))
            loader = torch.utils.data.DataLoader(
                _Images(x_train, y, train_tf),
                batch_size=min(self.batch_size, len(y)),
                shuffle=True,
                generator=gen,
                num_workers=self.num_workers,
                drop_last=False,
            )
            params = [p for p in net.parameters() if p.requires_grad]
            opt: torch.optim.Optimizer
            if self.optimizer == "sgd":
                opt = torch.optim.SGD(params, lr=self.lr, momentum=0.9, nesterov=True, weight_decay=self.weight_decay)
            else:
                opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
            steps = max(1, self.epochs * len(loader))
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
            loss_fn = torch.nn.CrossEntropyLoss()
            for _ in range(self.epochs):
                net.train()
                for xb, yb in loader:
                    if len(yb) < 2 and any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()):
                        continue  # BatchNorm cannot train on a batch of one
                    opt.zero_grad(set_to_none=True)
                    loss_fn(net(xb.to(device)), yb.to(device)).backward()
                    opt.step()
                    sched.step()
            net.eval()
            preds = []
            test_loader = torch.utils.data.DataLoader(
                _Images(x_test, None, test_tf), batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers
            )
            with torch.no_grad():
                for xb, _ in test_loader:
                    preds.append(net(xb.to(device)).argmax(dim=1).cpu())
        return torch.cat(preds).numpy().astype(np.int64) if preds else np.zeros(0, dtype=np.int64)


#: The trainer registry: name -> class, in the order ``--eval`` and the app list them.
TRAINERS: dict[str, type[TrainerParams]] = {}


def register_trainer(cls: type[TrainerParams]) -> type[TrainerParams]:
    """Add a :class:`TrainerParams` subclass to the registry under its ``kind`` (a class decorator)."""
    if not cls.kind:
        raise ValueError("a trainer needs a kind")
    TRAINERS[cls.kind] = cls
    return cls


for _cls in (LinearProbe, MLPProbe, FinetuneTrainer):
    register_trainer(_cls)


def list_trainers(*, images: bool | None = None) -> list[str]:
    """Registered trainer names; ``images=False``: only those that train on embeddings
    (the app's picker), ``images=True``: only those that read the images."""
    return [k for k, c in TRAINERS.items() if images is None or c.uses_images == images]


def get_trainer(kind: str) -> type[TrainerParams]:
    """The trainer class of ``kind``; an unknown name raises :class:`CoresetError` listing the known ones."""
    if kind not in TRAINERS:
        raise CoresetError(f"Unknown evaluation model {kind!r}; choose one of {', '.join(TRAINERS)}.")
    return TRAINERS[kind]


def make_trainer(kind: str, params: Mapping[str, Any] | None = None) -> TrainerParams:
    """A validated trainer ``linear`` / ``mlp`` / ``finetune`` from ``{name: value}`` (strings allowed)."""
    return get_trainer(kind).from_mapping(params)


def trainer_uses_images(kind: str) -> bool:
    """True when the trainer reads image files rather than embeddings."""
    return kind in TRAINERS and TRAINERS[kind].uses_images


__all__ = [
    "FinetuneTrainer",
    "LinearProbe",
    "MLPProbe",
    "TRAINERS",
    "TrainerParams",
    "get_trainer",
    "list_trainers",
    "make_trainer",
    "register_trainer",
    "trainer_uses_images",
]
