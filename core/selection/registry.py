"""The selector registry: every method by name, with its parameter dataclass.

A selector is a function ``fn(data, budgets, params) -> SelectorOutput`` registered with
:func:`register_selector`::

    @register_selector("kcenter", KCenterParams, "Farthest-first traversal from a seeded start.")
    def kcenter(data: SelectionData, budgets: np.ndarray, params: KCenterParams) -> SelectorOutput: ...

``data`` holds the pool's features and its class partition (:class:`SelectionData`),
``budgets[c]`` is how many rows of class ``c`` to keep (from the budget strategy). The
function returns the kept rows in selection order and its per-sample score columns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypeVar, cast

import numpy as np
import torch

from ..errors import SelectionInputError
from ..mapped import gather_rows
from .params import SelectorParams

if TYPE_CHECKING:
    from .neighborhood import Neighborhood


class RowView:
    """Rows ``rows`` of a feature array ``base``, gathered only when read.

    ``view[r]`` is ``base[rows[r]]`` (a copy, read under :func:`core.mapped.gather_rows`'s
    random-access advice from a memory map); using the view as a whole array
    (``np.asarray(view)``) gathers every row once and keeps that copy. :meth:`SelectionData.subset`
    hands these out, so a per-class method run on a large subset (``cleaned``'s inner
    method on a million rows) reads each class's rows when it gets to them and never holds a
    copy of the whole subset's features.
    """

    def __init__(self, base: np.ndarray, rows: np.ndarray) -> None:
        self.base = base
        self.rows = np.asarray(rows, dtype=np.int64)
        self._whole: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.base.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.base.dtype

    @property
    def ndim(self) -> int:
        return self.base.ndim

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        if self._whole is not None:
            return self._whole[index]
        picked = self.rows[index]
        if np.ndim(picked) == 0:
            return self.base[int(picked)]
        return gather_rows(self.base, picked)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        if self._whole is None:
            self._whole = np.ascontiguousarray(gather_rows(self.base, self.rows))
        return self._whole if dtype is None else self._whole.astype(dtype, copy=False)


@dataclass
class SelectionData:
    """The selection pool: features, labels and the class partition.

    Attributes:
        features: model name -> float32 C-contiguous array ``[N, D_m]`` (pool rows).
        classes: ``[C]`` sorted distinct labels; class ``c`` is ``classes[c]``.
        codes: int64 ``[N]``, class index of every row.
        members: int64 ``[N]``, row indices sorted by (class, row).
        offsets: int64 ``[C + 1]``; the rows of class ``c`` are ``members[offsets[c]:offsets[c+1]]``.
        fraction: the fraction p asked for (also used by RAM-APL's weights).
        seed: the seed; per-class random streams are ``numpy.random.default_rng([seed, c])``.
        device: torch device for the arithmetic.
        budget: the budget strategy's name (``auto`` plans its inner folds with it).
        progress: ``progress(done, total, what)`` for long selectors (``auto``), or None.
        neighborhood: the pool's neighbour graphs and voters (:class:`.neighborhood.Neighborhood`)
            read by the label consensus; None until first needed (then made over the pool).
    """

    features: dict[str, np.ndarray]
    classes: np.ndarray
    codes: np.ndarray
    members: np.ndarray
    offsets: np.ndarray
    fraction: float
    seed: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    budget: str = "paper"
    progress: Callable[[int, int, str], None] | None = None
    neighborhood: Neighborhood | None = None

    @classmethod
    def build(
        cls,
        features: dict[str, np.ndarray],
        labels: np.ndarray,
        fraction: float,
        seed: int,
        device: torch.device | None = None,
        budget: str = "paper",
        progress: Callable[[int, int, str], None] | None = None,
    ) -> SelectionData:
        classes, codes = np.unique(labels, return_inverse=True)
        codes = codes.astype(np.int64).reshape(-1)
        members = np.argsort(codes, kind="stable").astype(np.int64)
        sizes = np.bincount(codes, minlength=len(classes))
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        return cls(
            features,
            classes,
            codes,
            members,
            offsets,
            float(fraction),
            int(seed),
            device or torch.device("cpu"),
            budget,
            progress,
        )

    def subset(self, rows: np.ndarray, fraction: float | None = None) -> SelectionData:
        """The pool restricted to ``rows`` (sorted row indices), same classes (a class may
        end up empty), same seed, device, budget strategy and neighbourhood (the same rows
        vote: :meth:`.neighborhood.Neighborhood.subset`); ``progress`` is not passed on. Its
        features are :class:`RowView` s of these (gathered when read)."""
        rows = np.asarray(rows, dtype=np.int64)
        codes = self.codes[rows]
        members = np.argsort(codes, kind="stable").astype(np.int64)
        sizes = np.bincount(codes, minlength=self.n_classes)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        # row views typed as arrays: every reader goes through indexing, gather_rows or np.asarray
        feats = {
            m: cast(np.ndarray, RowView(x.base, x.rows[rows]) if isinstance(x, RowView) else RowView(x, rows))
            for m, x in self.features.items()
        }
        return SelectionData(
            feats,
            self.classes,
            codes,
            members,
            offsets,
            self.fraction if fraction is None else float(fraction),
            self.seed,
            self.device,
            self.budget,
            None,
            None if self.neighborhood is None else self.neighborhood.subset(rows),
        )

    def labels(self) -> np.ndarray:
        """The label of every row."""
        return self.classes[self.codes]

    @property
    def n(self) -> int:
        return len(self.codes)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def sizes(self) -> np.ndarray:
        """int64 ``[C]``: number of rows of each class."""
        return np.diff(self.offsets)

    @property
    def models(self) -> list[str]:
        return list(self.features)

    def class_rows(self, c: int) -> np.ndarray:
        """Row indices of class ``c``, ascending."""
        return self.members[self.offsets[c] : self.offsets[c + 1]]

    def class_rng(self, c: int) -> np.random.Generator:
        """The random stream of class ``c``: ``default_rng([seed, c])`` (independent of other classes)."""
        return np.random.default_rng([self.seed, int(c)])

    def codes_tensor(self) -> torch.Tensor:
        """``codes`` as a CPU int64 tensor (shares memory)."""
        return torch.from_numpy(self.codes)


@dataclass
class SelectorOutput:
    """What a selector returns.

    Attributes:
        order: int64 row indices kept, in selection order (classes concatenated in class
            order; within a class, the order the method picked them).
        columns: per-sample columns ``name -> array [N]`` (every score the method computed).
        details: JSON-ready facts about the run that are not per sample (``auto`` records
            what it chose and its estimates here); stored in ``SelectionResult.details``.
    """

    order: np.ndarray
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    details: dict = field(default_factory=dict)


SelectorFn = Callable[[SelectionData, np.ndarray, SelectorParams], SelectorOutput]
#: A selector function as written: its third argument is its own :class:`SelectorParams` subclass.
_Fn = TypeVar("_Fn", bound=Callable[..., SelectorOutput])

#: Direction of a score column: ``low`` = small values are the representative (typical,
#: easy) end, ``high`` = large values are.
Direction = Literal["low", "high"]


@dataclass(frozen=True)
class SelectorSpec:
    """A registered selector and everything the rest of the code needs to know about it.

    Attributes:
        name: the method's name (CLI ``--method``, app picker, reports).
        fn: the selector function.
        params_cls: its parameter dataclass (validated, form-building).
        summary: one line for the method picker and ``--help``.
        multi_model: combines several models itself (else: ``model`` parameter / concatenation).
        stochastic: the subset depends on the seed.
        prefix_consistent: per class, the rows kept at a smaller budget are the first rows
            kept at a larger one (greedy methods, ranking by a score that does not depend on
            the fraction): a larger run can be re-sliced (:meth:`SelectionResult.reslice`).
        score_column: the per-sample column the method ranks by (galleries, report), or None.
        representative: which end of ``score_column`` is representative (``low``/``high``);
            the other end is "hard".
        uses_fraction: the choice depends on the fraction beyond the budgets (RAM-APL's
            weights, ``auto``): it must run again when the fraction changes.
    """

    name: str
    fn: SelectorFn
    params_cls: type[SelectorParams]
    summary: str
    multi_model: bool = False
    stochastic: bool = False
    prefix_consistent: bool = False
    score_column: str | None = None
    representative: Direction = "low"
    uses_fraction: bool = False

    def make_params(self, values: dict | None = None) -> SelectorParams:
        return self.params_cls.from_mapping(values)

    @property
    def parameters(self):
        """The parameter descriptions (:meth:`SelectorParams.describe`)."""
        return self.params_cls.describe()


_REGISTRY: dict[str, SelectorSpec] = {}


def register_selector(
    name: str,
    params_cls: type[SelectorParams],
    summary: str,
    *,
    multi_model: bool = False,
    stochastic: bool = False,
    prefix_consistent: bool = False,
    score_column: str | None = None,
    representative: Direction = "low",
    uses_fraction: bool = False,
) -> Callable[[_Fn], _Fn]:
    """Decorator registering ``fn`` under ``name`` (a name may be registered once), with its
    capabilities (see :class:`SelectorSpec`)."""
    if representative not in ("low", "high"):
        raise ValueError(f"representative must be 'low' or 'high', got {representative!r}")

    def deco(fn: _Fn) -> _Fn:
        if name in _REGISTRY:
            raise ValueError(f"selector {name!r} is already registered")
        _REGISTRY[name] = SelectorSpec(
            name,
            fn,
            params_cls,
            summary,
            multi_model,
            stochastic,
            prefix_consistent,
            score_column,
            representative,
            uses_fraction,
        )
        return fn

    return deco


def list_selectors() -> list[str]:
    """Names of the registered selectors, in registration order."""
    return list(_REGISTRY)


def get_selector(name: str) -> SelectorSpec:
    """The :class:`SelectorSpec` of ``name``; an unknown name raises with the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise SelectionInputError(
            f"Unknown selection method {name!r}; available: {', '.join(list_selectors())}."
        ) from None
