"""Small UI pieces shared by the pages: errors, guards, thumbnail grids, the sidebar status."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import streamlit as st

from core.errors import CoresetError, WeightsUnavailableError
from core.extract import ExtractionCancelled
from core.features import FeatureSet
from core.selection import SelectionResult
from core.text import display_text

from . import cached, services
from .state import get_state


@contextlib.contextmanager
def user_errors(what: str) -> Iterator[None]:
    """Show any error of the block as ``st.error`` (never a traceback), a cancel as ``st.warning``;
    earlier results stay."""
    try:
        yield
    except ExtractionCancelled as exc:
        st.warning(f"{what} cancelled: {exc} Earlier results are kept.", icon=":material/stop_circle:")
    except WeightsUnavailableError as exc:
        st.error(
            f"{what} failed: {exc} In this app: type the weights file's path in the "
            "'Local weights file' field above, or pick an offline model (effnet-lite0/1/2).",
            icon=":material/error:",
        )
    except CoresetError as exc:
        st.error(f"{what} failed: {exc}", icon=":material/error:")
    except (OSError, ValueError, KeyError, RuntimeError, ImportError) as exc:
        st.error(
            f"{what} failed: {type(exc).__name__}: {exc}. Check the input and try again; earlier results are kept.",
            icon=":material/error:",
        )


class ProgressBar:
    """A ``progress(done, total, what)`` callback drawing ``st.progress`` in ``slot`` with the
    rate and the time left (ETA), for long selections (``auto``) and evaluations."""

    def __init__(self, slot, what: str) -> None:
        self.slot, self.what, self.t0, self.bar = slot, what, time.perf_counter(), None

    def text(self, done: int, total: int, what: str = "") -> str:
        elapsed = time.perf_counter() - self.t0
        parts = [f"{self.what}: {done} of {total}"]
        if what:
            parts.append(what)
        if done and elapsed > 0:
            parts.append(f"{done / elapsed:.1f}/s")
            parts.append(f"about {max(0.0, elapsed / done * (total - done)):.0f} s left")
        return " · ".join(parts)

    def update(self, done: int, total: int, what: str = "") -> None:
        frac = min(1.0, done / max(total, 1))
        if self.bar is None:
            self.bar = self.slot.progress(frac, text=self.text(done, total, what))
        else:
            self.bar.progress(frac, text=self.text(done, total, what))


class FractionETA:
    """Progress text with the time left for work reported as a fraction done (0-1): elapsed x
    (1 - f) / f, shown once 5 % is done (before that the estimate says little)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def text(self, fraction: float, what: str) -> str:
        elapsed = time.perf_counter() - self.t0
        if fraction >= 0.05 and fraction < 1.0 and elapsed > 0:
            return f"{what} · {fraction:.0%} · about {elapsed * (1 - fraction) / fraction:.0f} s left"
        return f"{what} · {fraction:.0%}"


def review_queue(result: SelectionResult, fs: FeatureSet, run_id: str, edits, base_selected) -> None:
    """The suspected mislabels one by one: the image large, its label, the suggested class and
    confidence, and buttons to keep it in or drop it from the subset (recorded as hand edits)."""
    queue = services.review_queue(result)
    if queue.empty or fs.paths is None:
        return
    with st.expander(f"Review suspected mislabels ({len(queue)})", expanded=False):
        key = f"review_pos|{run_id}"
        pos = max(0, min(int(st.session_state.get(key, 0)), len(queue) - 1))
        row = queue.iloc[pos]
        i = int(row["index"])
        path = str(fs.paths[i])
        kept = bool(result.table.loc[result.table["index"] == i, "selected"].iloc[0])
        left, right = st.columns([1, 2])
        uri = cached.thumbnails([path], 224).get(path)
        if uri:
            left.image(uri, width=224)
        right.markdown(f"**{pos + 1} of {len(queue)}** · `{display_text(path.rsplit('/', 1)[-1])}`")
        right.markdown(
            f"Label: **{row['label']}** → the models suggest **{row.get('suggested_class', '?')}** "
            f"(confidence {float(row.get('label_confidence', float('nan'))):.0%}; support of its own "
            f"label {float(row.get('label_agreement', float('nan'))):.0%})"
        )
        right.caption(f"{'In' if kept else 'Not in'} the subset. {display_text(path)}")
        b1, b2, b3, b4 = right.columns(4)
        if b1.button("Previous", key=f"review_prev|{run_id}", disabled=pos == 0):
            st.session_state[key] = pos - 1
            st.rerun()
        if b2.button("Keep in subset", key=f"review_keep|{run_id}", disabled=kept):
            services.edit_subset(edits.added, edits.dropped, base_selected, [i], keep=True)
            st.session_state[key] = min(pos + 1, len(queue) - 1)
            st.rerun()
        if b3.button("Drop from subset", key=f"review_drop|{run_id}", disabled=not kept):
            services.edit_subset(edits.added, edits.dropped, base_selected, [i], keep=False)
            st.session_state[key] = min(pos + 1, len(queue) - 1)
            st.rerun()
        if b4.button("Next", key=f"review_next|{run_id}", disabled=pos >= len(queue) - 1):
            st.session_state[key] = pos + 1
            st.rerun()


def configured_roots() -> list[str] | None:
    """``roots`` of ``[coreset_studio]`` in ``.streamlit/secrets.toml`` (None without one)."""
    try:
        section = st.secrets.get("coreset_studio") or {}
        roots = section.get("roots")
    except (FileNotFoundError, KeyError, AttributeError, st.errors.StreamlitAPIException):
        return None
    if isinstance(roots, str):
        roots = [roots]
    return [str(r) for r in roots] if roots else None


def need_dataset():
    """The current Dataset, or an info box pointing to the Data page (and None)."""
    state = get_state()
    ds = cached.get_dataset(state.dataset_key)
    if ds is None:
        if state.dataset_key:
            st.info(
                f"This session's dataset ({state.dataset_label or 'unnamed'}) is no longer in the app's "
                "memory (the app restarted, or many datasets were loaded since): load it again on the "
                "**Data** page; its embeddings come back from the disk cache.",
                icon=":material/arrow_back:",
            )
        else:
            st.info("No dataset yet: load one on the **Data** page.", icon=":material/arrow_back:")
        st.page_link("views/data.py", label="Go to Data", icon=":material/folder_open:")
    return ds


def need_features():
    """The current FeatureSet, or an info box pointing to the Models page (and None)."""
    if need_dataset() is None:
        return None
    state = get_state()
    fs = cached.get_features(state.embedding_key)
    if fs is None:
        if state.embedding_key:
            st.info(
                f"This session's embeddings ({', '.join(state.embedding_models)}) are no longer in the "
                "app's memory: press **Compute embeddings** on the **Models** page (a look-up in the disk "
                "cache, not a recomputation).",
                icon=":material/arrow_back:",
            )
        else:
            st.info("No embeddings yet: compute them on the **Models** page.", icon=":material/arrow_back:")
        st.page_link("views/models.py", label="Go to Models", icon=":material/memory:")
        return None
    for problem in cached.restore_runs(state):  # the runs saved in the workspace (a restart keeps them)
        st.warning(problem, icon=":material/warning:")
    return fs


@dataclass
class ActiveRun:
    """The active selection run as the Explore and Evaluate pages use it.

    ``result`` is the run's selection with the hand edits (``edits``) applied; ``base`` is the
    run's own selection, without them.
    """

    run_id: str
    fs: FeatureSet
    edits: Any
    result: SelectionResult
    base: SelectionResult


def need_run() -> ActiveRun | None:
    """The active selection run with its hand edits applied, or an info box (and None)."""
    fs = need_features()
    if fs is None:
        return None
    state = get_state()
    rid = state.active_run
    spec = state.runs.get(rid) if rid else None
    if spec is None or spec.embedding_key != state.embedding_key:
        st.info("No selection yet: run one on the **Select** page.", icon=":material/arrow_back:")
        st.page_link("views/select.py", label="Go to Select", icon=":material/content_cut:")
        return None
    base = cached.selection(spec)
    if base is None:
        return None
    edits = state.edits_for(rid)
    return ActiveRun(rid, fs, edits, services.apply_edits(base, edits.added, edits.dropped), base)


def thumb_grid(
    paths: Sequence[str],
    captions: Sequence[str] | None = None,
    columns: int = 8,
    size: int = 64,
    key: str = "",
    rows: Sequence[int] | None = None,
    active: ActiveRun | None = None,
    page: str = "explore",
) -> None:
    """Images in a grid of ``columns`` (cached square thumbnails, centre-cropped).

    With ``rows`` (the feature rows of ``paths``), ``active`` and a ``key``, each image gets a
    button with its file name under it that opens the image large in the sample view."""
    if not paths:
        st.caption("(none)")
        return
    thumbs = cached.thumbnails(list(paths), size, square=True)
    captions = list(captions) if captions is not None else [None] * len(paths)
    openable = rows is not None and active is not None and bool(key)
    cols = st.columns(columns)
    for k, (p, cap) in enumerate(zip(paths, captions)):
        uri = thumbs.get(p)
        with cols[k % columns]:
            if uri:
                st.image(uri, caption=cap, width=size)
            else:
                st.caption(f"unreadable: {cap or display_text(p)}")
            if openable and st.button(
                services.short_name(p),
                key=f"{key}_open_{int(rows[k])}",
                type="tertiary",
                help=f"{display_text(str(p))}: open it large",
            ):
                from . import sample_view

                sample_view.request(int(rows[k]), active.run_id, page)


def sidebar_status(slot=None) -> None:
    """The session's summary in the sidebar (in ``slot``, a placeholder made before the page ran)."""
    state = get_state()
    ds = cached.get_dataset(state.dataset_key)
    with slot.container() if slot is not None else st.sidebar:
        st.markdown("**Session**")
        st.caption(f"Dataset: {ds.name} ({len(ds)} images)" if ds else "Dataset: none")
        st.caption(
            "Models: " + (", ".join(state.embedding_models) if cached.get_features(state.embedding_key) else "none")
        )
        st.caption(f"Selection: {state.active_run}" if state.active_run else "Selection: none")
