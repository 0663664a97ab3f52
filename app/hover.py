"""Image thumbnails on hover for a keyed ``st.plotly_chart``.

Plotly's own hover label holds text only, so this small ``st.components.v2`` component (no
build step, no iframe) finds the chart in the page by its widget key, listens to its
``plotly_hover`` / ``plotly_unhover`` events and shows a card with the hovered image and its
path beside the cursor. The chart's points must carry the row index as ``customdata[0]``.

The thumbnails travel to the browser once per session and thumbnail set (``version``): the
browser keeps them and reports the version it holds in the component state (``have``); later
reruns send only the version. A browser that lost them (a reload) asks again.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import streamlit as st

MAX_POINTS = 5000  # hover images up to this many points: ~1-6 kB each, sent once per session
THUMB_PX = 64

# The card lives in document.body (fixed position), so it can float over the chart.
_JS = r"""
export default function (component) {
  const { data, setStateValue } = component;
  const store = (window.__coresetHover = window.__coresetHover || {});
  const version = data.version;
  if (data.thumbs) {
    for (const old of Object.keys(store)) if (old !== version) delete store[old];  // one set at a time
    store[version] = { thumbs: data.thumbs, paths: data.paths };
    setStateValue("have", version);
  } else if (!store[version]) {
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
  const hide = () => { card.style.display = "none"; };

  const onHover = (ev) => {
    const entry = store[version];
    const pt = ev && ev.points && ev.points[0];
    if (!entry || !pt || !pt.customdata) return hide();
    const row = Number(Array.isArray(pt.customdata) ? pt.customdata[0] : pt.customdata);
    const uri = entry.thumbs[row];
    const path = entry.paths[row] || "";
    if (!uri) return hide();
    img.src = uri;
    img.dataset.row = String(row);
    caption.textContent = path.split(/[\\/]/).slice(-2).join("/");
    card.title = path;
    const e = ev.event || {};
    const x = (e.clientX ?? 0) + 18, y = (e.clientY ?? 0) + 18;
    card.style.display = "block";
    const w = card.offsetWidth, h = card.offsetHeight;
    card.style.left = Math.max(4, Math.min(x, window.innerWidth - w - 4)) + "px";
    card.style.top = Math.max(4, Math.min(y, window.innerHeight - h - 4)) + "px";
  };

  let attached = null;
  const detach = () => {
    if (attached && attached.removeListener) {
      attached.removeListener("plotly_hover", onHover);
      attached.removeListener("plotly_unhover", hide);
    }
    attached = null;
  };
  // The chart renders (and re-renders) on its own schedule: look for it until found, and
  // again whenever Streamlit replaces its element.
  const attach = () => {
    const gd = document.querySelector(".st-key-" + data.plot + " .js-plotly-plot");
    if (gd === attached || !gd || typeof gd.on !== "function") return;
    detach();
    gd.on("plotly_hover", onHover);
    gd.on("plotly_unhover", hide);
    attached = gd;
  };
  attach();
  const timer = setInterval(attach, 400);
  return () => { clearInterval(timer); detach(); hide(); };
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
#cs-hover-card .cs-hover-path { margin-top: 4px; color: rgba(49, 51, 63, 0.75);
  overflow-wrap: anywhere; text-align: center; }
"""


def _component():
    # Registering the same definition again is a no-op; registering per call keeps it present
    # in every Streamlit runtime (AppTest starts a new one per test).
    return st.components.v2.component("coreset_hover_thumbnails", js=_JS, css=_CSS, isolate_styles=False)


def hover_thumbnails(plot_key: str, rows: Sequence[int], thumbs: Sequence[str | None], paths: Sequence[str],
                     data_key: str, key: str) -> bool:
    """Show ``thumbs[k]`` (a data URI; None = no image) and ``paths[k]`` when the chart with
    widget key ``plot_key`` is hovered on a point whose ``customdata[0]`` is ``rows[k]``.

    ``data_key`` names the images behind the rows (e.g. the embedding key and thumbnail size);
    with the rows it makes the version the browser keeps. Returns True when this run sent the
    thumbnails (the browser did not hold that version).
    """
    digest = hashlib.sha1(",".join(str(int(r)) for r in rows).encode()).hexdigest()[:12]
    version = f"{data_key}|{digest}"
    held = st.session_state.get(key)
    have = held.get("have") if hasattr(held, "get") else None
    payload: dict = {"plot": plot_key, "version": version}
    send = have != version
    if send:
        payload["thumbs"] = {str(int(r)): t for r, t in zip(rows, thumbs)}
        payload["paths"] = {str(int(r)): str(p) for r, p in zip(rows, paths)}
    _component()(data=payload, key=key, default={"have": None}, on_have_change=lambda: None)
    return send


__all__ = ["MAX_POINTS", "THUMB_PX", "hover_thumbnails"]
