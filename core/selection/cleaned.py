"""``cleaned``: set suspected mislabels aside by label consensus, then run another selector.

Per class ``c`` with budget ``b_c``: the rows the label consensus (:mod:`.consensus`, over
every selected model) flags as suspected mislabels are set aside; ``inner`` (``herding``,
``random``, ``kcenter`` or ``graph_cut``, with its default parameters) selects
``min(b_c, clean rows of c)`` from the remaining rows of the class; when the class has fewer
clean rows than ``b_c``, the shortfall is filled with its flagged rows of highest label
agreement (ties by row index), after the inner picks. Selection order within a class: the
inner method's order, then the fill.

Prefix-consistent when ``inner`` is (all four are): a larger budget only extends each
class's order. Its columns: the inner method's (``NaN`` on the rows set aside) and the
label-issue columns of the consensus.
"""

from __future__ import annotations

import numpy as np

from ._ordering import concat_class_picks
from .consensus import label_consensus
from .params import CleanedParams
from .registry import SelectionData, SelectorOutput, get_selector, register_selector


def _spread(values: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """``values`` of ``rows`` placed into a length-``n`` column (NaN / empty elsewhere)."""
    values = np.asarray(values)
    if values.dtype.kind in "fiub":
        out = np.full(n, np.nan, dtype=np.float64)
    else:
        out = np.full(n, "", dtype=object)
    out[rows] = values
    return out


@register_selector(
    "cleaned",
    CleanedParams,
    "Set suspected mislabels aside (label consensus across models), then herding (or another "
    "inner method) on the rest.",
    multi_model=True,
    stochastic=True,
    prefix_consistent=True,
)
def cleaned(data: SelectionData, budgets: np.ndarray, params: CleanedParams) -> SelectorOutput:
    consensus = label_consensus(data, k=params.k, max_agreement=params.max_agreement)
    clean_rows = np.flatnonzero(~consensus.suspect)
    sub = data.subset(clean_rows)
    inner_budgets = np.minimum(np.asarray(budgets, dtype=np.int64), sub.sizes)
    inner = get_selector(params.inner)
    out = inner.fn(sub, inner_budgets, inner.make_params({}))
    picked = clean_rows[np.asarray(out.order, dtype=np.int64)]
    picked_codes = data.codes[picked]
    per_class = []
    for c in range(data.n_classes):
        mine = picked[picked_codes == c]
        short = int(budgets[c]) - len(mine)
        if short > 0:
            flagged = data.class_rows(c)[consensus.suspect[data.class_rows(c)]]
            fill = flagged[np.lexsort((flagged, -consensus.agreement[flagged]))][:short]
            mine = np.concatenate([mine, fill])
        per_class.append(mine)
    columns = {name: _spread(col, clean_rows, data.n) for name, col in out.columns.items()}
    columns.update(consensus.columns(data.classes))
    return SelectorOutput(
        concat_class_picks(per_class), columns, {"inner": params.inner, "set_aside": int(consensus.suspect.sum())}
    )
