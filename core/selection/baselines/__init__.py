"""The baseline selectors of the paper's comparison, each run per class.

Feature space of the single-model methods (``moderate_ds``, ``kcenter``, ``herding``,
``facility_location``, ``graph_cut``), set by their ``model`` parameter:

* ``model="<name>"``: that model's features (L2-normalised per row if ``normalize=l2``);
* ``model=""`` (default) with one model: that model, as above;
* ``model=""`` with several models: each model's rows L2-normalised, then concatenated
  (every model weighs the same whatever its dimension or scale; the cosine similarity of
  the concatenation is the mean of the per-model cosine similarities).

``min`` combines models like RAM-APL (mean within-class rank); ``random`` needs no features.

Random streams: ``kcenter``'s start and ``facility_location``'s block split in class ``c``
use ``numpy.random.default_rng([seed, c])``; ``random`` uses ``default_rng(seed)``.
Ties: a greedy step picks the lowest row among the candidates whose value is within
``TIE_RTOL * scale`` of the best (``TIE_RTOL = 1e-6``; the scale of each method is given in
its docstring). Exact ties are common (symmetric configurations, duplicates) and float32
round-off would otherwise break them arbitrarily, differently on CPU and GPU.

One selector family per module, each registered (with its capabilities: stochastic,
multi-model, prefix-consistent, score column) where it is defined: :mod:`.class_mean`
(``min``, ``moderate_ds``), :mod:`.kcenter`, :mod:`.herding`, :mod:`.submodular`
(``facility_location``, ``graph_cut``), :mod:`.random_subset` (``random``); what they
share is in :mod:`._common`. Importing this package registers them, in this order.
"""

from __future__ import annotations

# The import order is the registration order (that of list_selectors()).
# isort: off
from ._common import LAZY_BATCH, SMALL_CLASS_VALUES, TIE_RTOL, class_features, first_near_best
from .class_mean import moderate_band_start, moderate_ds, select_min
from .kcenter import kcenter, kcenter_greedy
from .herding import herding, herding_greedy
from .submodular import (
    facility_location,
    facility_location_blocks,
    facility_location_lazy_greedy,
    graph_cut,
    graph_cut_greedy,
)
from .random_subset import random_selector
# isort: on

__all__ = [
    "LAZY_BATCH",
    "SMALL_CLASS_VALUES",
    "TIE_RTOL",
    "class_features",
    "facility_location",
    "facility_location_blocks",
    "facility_location_lazy_greedy",
    "first_near_best",
    "graph_cut",
    "graph_cut_greedy",
    "herding",
    "herding_greedy",
    "kcenter",
    "kcenter_greedy",
    "moderate_band_start",
    "moderate_ds",
    "random_selector",
    "select_min",
]
