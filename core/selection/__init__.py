"""The selection engine: every selector of the paper's comparison, class budgets, results.

Entry point::

    from core.selection import run_selection
    result = run_selection("ram_apl", {"clip": x1, "dino": x2}, labels, 0.1, budget="paper", seed=0)
    result.selected      # int64 rows kept, in selection order
    result.table         # per-sample scores, selected, order
    result.budget_table  # class, size, budget, kept

Modules: :mod:`.registry` (names -> selectors, :class:`SelectionData`),
:mod:`.params` (parameter dataclasses), :mod:`.ram_apl`, :mod:`.baselines`,
:mod:`.budgets`, :mod:`.result`, :mod:`.engine`, :mod:`._linalg` (chunked torch maths),
:mod:`._ordering` (selection order).
"""

# Import order is registration order, which is list_selectors() order: keep it.
# isort: off
from . import ram_apl as _ram_apl  # noqa: F401  (registers ram_apl, first in list_selectors())
from . import baselines as _baselines  # noqa: F401  (registers the baselines)
from . import cleaned as _cleaned  # noqa: F401  (registers cleaned)
from . import ccs as _ccs  # noqa: F401  (registers ccs)
from . import bws as _bws  # noqa: F401  (registers bws)
from . import auto as _auto  # noqa: F401  (registers auto)

# isort: on
from ..text import escape_csv_cell
from .budgets import BUDGET_STRATEGIES, BudgetPlan, plan_budgets
from .consensus import LabelConsensus, label_consensus
from .engine import check_fraction, run_selection
from .params import ParamInfo, SelectorParams
from .registry import SelectionData, SelectorOutput, SelectorSpec, get_selector, list_selectors, register_selector
from .result import SelectionResult

__all__ = [
    "BUDGET_STRATEGIES",
    "BudgetPlan",
    "LabelConsensus",
    "label_consensus",
    "ParamInfo",
    "SelectionData",
    "SelectionResult",
    "SelectorOutput",
    "SelectorParams",
    "SelectorSpec",
    "check_fraction",
    "escape_csv_cell",
    "get_selector",
    "list_selectors",
    "plan_budgets",
    "register_selector",
    "run_selection",
]
