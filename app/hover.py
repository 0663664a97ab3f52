"""Image thumbnails on hover for a keyed ``st.plotly_chart``.

Plotly's own hover label holds text only, so this small ``st.components.v2`` component (no
build step, no iframe) finds the chart in the page by its widget key, listens to its
``plotly_hover`` / ``plotly_unhover`` events and shows a card with the hovered image and its
path beside the cursor, placed so that it never covers plotly's own hover label (which
carries the scores). The chart's points must carry the row index as ``customdata[0]``.

Two ways to get the thumbnails to the browser:

* **eager** (up to :data:`EAGER_MAX` points, default 2,000; ``CORESET_STUDIO_HOVER_EAGER_MAX``
  changes it): all thumbnails travel once per session and thumbnail set (``version``); the
  browser keeps them and reports the version it holds in the component state (``have``), so
  later reruns send only the version, and a browser that lost them (a reload) asks again.
  Hovering is instant.
* **lazy** (more points): the card asks for the hovered row (state ``want``, debounced); the
  component sits in an ``st.fragment``, so only it reruns and answers with that row's
  thumbnail, which the browser keeps. The first hover of a point takes one short round trip.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence

import streamlit as st

from core.text import display_text

EAGER_MAX_ENV = "CORESET_STUDIO_HOVER_EAGER_MAX"
EAGER_MAX = 2000  # 64 px JPEG data URIs: ~1.4 kB (Fashion-MNIST) to ~2.7 kB (photos) each, once per session
THUMB_PX = 64

# The card lives in document.body (fixed position), so it can float over the chart. State
# that must outlive one call of this function (it runs again whenever its data changes) sits
# in window.__coresetHover.
_JS = r"""
export default function (component) {
  const { data, setStateValue } = component;
  const g = (window.__coresetHover = window.__coresetHover || { sets: {}, current: null, asks: 0 });
  const version = data.version;
  if (!g.sets[version]) {
    for (const old of Object.keys(g.sets)) delete g.sets[old];  // one set at a time
    g.sets[version] = { thumbs: {}, paths: {}, complete: false };
  }
  const entry = g.sets[version];
  if (data.thumbs) {
    Object.assign(entry.thumbs, data.thumbs);
    Object.assign(entry.paths, data.paths || {});
    if (!data.lazy && !entry.complete) {
      entry.complete = true;
      setStateValue("have", version);
    }
  } else if (!data.lazy && !entry.complete) {
    setStateValue("have", null);  // lost (page reloaded): ask Python to send them again
  }

  let card = document.getElementById("cs-hover-card");
  if (!card) {
    card = document.createElement("div");
    card.id = "cs-hover-card";
    card.setAttribute("role", "tooltip");
    card.innerHTML = '<img alt="hovered image"><div class="cs-hover-path"></div>';
    document.body.appendChild(card);
  }
  const img = card.querySelector("img");
  const caption = card.querySelector(".cs-hover-path");
  const hide = () => { card.style.display = "none"; g.current = null; };

  // Beside plotly's own hover label, never on it: left of the point first (plotly puts its
  // label to the right), else above, below or right of the label; the first that fits.
  const place = (cur) => {
    const w = card.offsetWidth, h = card.offsetHeight, W = window.innerWidth, H = window.innerHeight;
    const label = attached && attached.querySelector(".hoverlayer .hovertext");
    const r = label ? label.getBoundingClientRect()
                    : { left: cur.x, right: cur.x, top: cur.y, bottom: cur.y };
    const gap = 14;
    const spots = [
      [cur.x - w - gap, cur.y - h / 2],
      [Math.min(r.left, cur.x), r.top - h - gap],
      [Math.min(r.left, cur.x), r.bottom + gap],
      [r.right + gap, cur.y - h / 2],
    ];
    const fits = ([x, y]) => x >= 4 && y >= 4 && x + w <= W - 4 && y + h <= H - 4
      && (x + w <= r.left || x >= r.right || y + h <= r.top || y >= r.bottom);
    const [x, y] = spots.find(fits) || spots[0];
    card.style.left = Math.max(4, Math.min(x, W - w - 4)) + "px";
    card.style.top = Math.max(4, Math.min(y, H - h - 4)) + "px";
    card.dataset.spot = String(Math.max(0, spots.findIndex(fits)));
  };

  const fill = () => {
    const cur = g.current;
    if (!cur) return;
    const has = Object.prototype.hasOwnProperty.call(entry.thumbs, cur.row);
    const path = entry.paths[cur.row] || "";
    if (has && !entry.thumbs[cur.row]) return hide();  // unreadable image: no card
    if (!has && !data.lazy) return hide();
    card.classList.toggle("cs-loading", !has);
    if (has) img.src = entry.thumbs[cur.row]; else img.removeAttribute("src");
    img.dataset.row = String(cur.row);
    caption.textContent = has ? path.split(/[\\/]/).slice(-2).join("/") : "loading…";
    card.title = path;
    card.style.display = "block";
    place(cur);
    if (!has && data.lazy) {
      clearTimeout(g.timer);  // ask for the row the pointer rests on, not every row it crosses
      g.timer = setTimeout(() => {
        if (g.current && g.current.row === cur.row) setStateValue("want", { row: cur.row, n: ++g.asks });
      }, 120);
    }
  };

  const onHover = (ev) => {
    const pt = ev && ev.points && ev.points[0];
    if (!pt || pt.customdata == null) return hide();
    const row = String(Number(Array.isArray(pt.customdata) ? pt.customdata[0] : pt.customdata));
    const e = ev.event || {};
    g.current = { row, x: e.clientX ?? 0, y: e.clientY ?? 0 };
    fill();
    requestAnimationFrame(() => { if (g.current && g.current.row === row) place(g.current); });
  };

  // A click on a dot is reported as {row, n} (plotly's own click selection does not work in
  // its lasso mode, the chart's default; plotly_click does).
  const onClick = (ev) => {
    const pt = ev && ev.points && ev.points[0];
    if (!pt || pt.customdata == null) return;
    const row = Number(Array.isArray(pt.customdata) ? pt.customdata[0] : pt.customdata);
    g.clicks = (g.clicks || 0) + 1;
    setStateValue("clicked", { row, n: g.clicks });
  };

  let attached = null;
  const detach = () => {
    if (attached && attached.removeListener) {
      attached.removeListener("plotly_hover", onHover);
      attached.removeListener("plotly_unhover", hide);
      attached.removeListener("plotly_click", onClick);
    }
    attached = null;
  };
  const selector = ".st-key-" + data.plot + " .js-plotly-plot";
  // The chart renders (and re-renders) on its own schedule: look for it until found, and
  // again whenever Streamlit replaces its element.
  const attach = () => {
    const gd = document.querySelector(selector);
    if (gd === attached || !gd || typeof gd.on !== "function") return;
    detach();
    gd.on("plotly_hover", onHover);
    gd.on("plotly_unhover", hide);
    gd.on("plotly_click", onClick);
    attached = gd;
  };
  attach();
  fill();  // an answer for the row under the pointer has just arrived
  const timer = setInterval(attach, 400);
  return () => {
    clearInterval(timer);
    detach();
    setTimeout(() => { if (!document.querySelector(selector)) hide(); }, 500);  // the page changed
  };
}
"""

_CSS = """
#cs-hover-card {
  position: fixed; z-index: 1000; display: none; pointer-events: none;
  background: var(--st-background-color, #fff); border: 1px solid rgba(49, 51, 63, 0.2);
  border-radius: 8px; padding: 6px; box-shadow: 0 4px 14px rgba(0, 0, 0, 0.18);
  max-width: 180px; font-size: 12px;
}
#cs-hover-card img { display: block; width: 128px; height: 128px; object-fit: contain;
  image-rendering: pixelated; margin: 0 auto; }
#cs-hover-card.cs-loading img { visibility: hidden; }
#cs-hover-card .cs-hover-path { margin-top: 4px; color: rgba(49, 51, 63, 0.75);
  overflow-wrap: anywhere; text-align: center; }
"""


def eager_max() -> int:
    """Points up to which all thumbnails are sent at once (``$CORESET_STUDIO_HOVER_EAGER_MAX``)."""
    raw = os.environ.get(EAGER_MAX_ENV, "").strip()
    try:
        return max(0, int(raw)) if raw else EAGER_MAX
    except ValueError:
        return EAGER_MAX


def _component():
    # Registering the same definition again is a no-op; registering per call keeps it present
    # in every Streamlit runtime (AppTest starts a new one per test).
    return st.components.v2.component("coreset_hover_thumbnails", js=_JS, css=_CSS, isolate_styles=False)


def _state(key: str) -> Mapping:
    held = st.session_state.get(key)
    return held if hasattr(held, "get") else {}


def hover_thumbnails(
    plot_key: str,
    rows: Sequence[int],
    paths: Sequence[str],
    data_key: str,
    key: str,
    thumbnails: Callable[[Sequence[str]], Mapping[str, str | None]],
) -> str:
    """Show the image of ``paths[k]`` when the chart with widget key ``plot_key`` is hovered on a
    point whose ``customdata[0]`` is ``rows[k]``.

    ``thumbnails(paths)`` returns ``{path: data URI or None}`` (None: unreadable, no card).
    ``data_key`` names the images behind the rows (e.g. the embedding key and thumbnail size);
    with the rows it makes the version the browser keeps. Returns the mode of this run:
    ``"sent"`` (eager, thumbnails sent now), ``"held"`` (eager, the browser has them) or
    ``"lazy"`` (its component's key is ``key + "_lazy"``).
    """
    rows = [int(r) for r in rows]
    digest = hashlib.sha1(",".join(map(str, rows)).encode()).hexdigest()[:12]
    version = f"{data_key}|{digest}"
    paths = [str(p) for p in paths]
    if len(rows) > eager_max():
        _lazy(plot_key, version, dict(zip(rows, paths)), f"{key}_lazy", thumbnails)
        return "lazy"
    payload: dict = {"plot": plot_key, "version": version}
    send = _state(key).get("have") != version
    if send:
        with st.spinner("Making thumbnails for the hover cards…"):
            thumbs = thumbnails(paths)
        payload["thumbs"] = {str(r): thumbs.get(p) for r, p in zip(rows, paths)}
        payload["paths"] = {str(r): display_text(p) for r, p in zip(rows, paths)}
    _component()(
        data=payload,
        key=key,
        default={"have": None, "clicked": None},
        on_have_change=lambda: None,
        on_clicked_change=lambda: None,
    )
    return "sent" if send else "held"


def clicked(key: str) -> tuple[int, int] | None:
    """The last dot clicked on the chart of the component ``key``: ``(row, n)``, ``n`` counting
    the clicks of the page (a new click, even on the same dot, has a new ``n``); None before one."""
    for k in (key, f"{key}_lazy"):
        got = _state(k).get("clicked")
        try:
            if got:
                return int(got["row"]), int(got["n"])
        except (KeyError, TypeError, ValueError):
            continue
    return None


@st.fragment
def _lazy(
    plot_key: str,
    version: str,
    path_of: Mapping[int, str],
    key: str,
    thumbnails: Callable[[Sequence[str]], Mapping[str, str | None]],
) -> None:
    """The lazy component: answers the row the browser asked for (its own rerun only)."""
    payload: dict = {"plot": plot_key, "version": version, "lazy": True}
    want = _state(key).get("want")
    try:
        row = int(want["row"]) if want else None
    except (KeyError, TypeError, ValueError):
        row = None
    if row is not None and row in path_of:
        path = path_of[row]
        payload["thumbs"] = {str(row): thumbnails([path]).get(path)}
        payload["paths"] = {str(row): display_text(path)}
    # a click reruns this fragment only: the sample view it opens is the page's, so rerun the page
    click = _state(key).get("clicked")
    seen_key = f"{key}_click_seen"
    if click and st.session_state.get(seen_key) != click:
        st.session_state[seen_key] = click
        st.rerun(scope="app")
    _component()(
        data=payload,
        key=key,
        default={"want": None, "clicked": None},
        on_want_change=lambda: None,
        on_clicked_change=lambda: None,
    )


__all__ = ["EAGER_MAX", "EAGER_MAX_ENV", "THUMB_PX", "clicked", "eager_max", "hover_thumbnails"]
