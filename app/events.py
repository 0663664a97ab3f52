"""Reading the browser's events (plotly selections) into row indices; no Streamlit here."""

from __future__ import annotations


def chosen_rows(event) -> list[int]:
    """Row indices of the points of a plotly selection event (``customdata[0]``), in order, unique."""
    out: list[int] = []
    try:
        points = event["selection"]["points"] if event else []
        for p in points:
            cd = p.get("customdata")
            if cd is not None and len(cd):
                out.append(int(cd[0]))
    except (AttributeError, KeyError, TypeError, ValueError):
        return []
    return list(dict.fromkeys(out))


__all__ = ["chosen_rows"]
