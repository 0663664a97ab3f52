"""Coreset Studio: ``streamlit run app/main.py``.

Five pages (Data, Models, Select, Explore, Evaluate & export; their scripts are in ``app/views/``,
not ``app/pages/``: a ``pages/`` folder beside the main script makes Streamlit run its legacy
multipage mode, in which a run can skip this script and go straight to a page) over :mod:`core`. The demo
dataset is preloaded on the first visit unless ``CORESET_STUDIO_PRELOAD=none``. The URL
carries a session id (``?s=...``), so a reload keeps the session's work (:func:`app.state.get_state`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run app/main.py` puts app/ on the path, not the repo
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app import cached  # noqa: E402
from app.components import sidebar_status, user_errors  # noqa: E402
from app.state import get_state, keep_session_in_url  # noqa: E402

st.set_page_config(page_title="Coreset Studio", page_icon="✂️", layout="wide")

state = get_state()
st.session_state["_script_run"] = st.session_state.get("_script_run", 0) + 1  # app.sample_view.RUN_COUNTER_KEY
keep_session_in_url()
if not state.preloaded:
    state.preloaded = True
    if os.environ.get("CORESET_STUDIO_PRELOAD", "demo").lower() == "demo" and state.dataset_key is None:
        with user_errors("Loading the demo dataset"):
            state.dataset_key = cached.put_dataset(cached.demo_dataset())
            state.dataset_label = "demo"

pages = [
    st.Page("views/data.py", title="Data", icon=":material/folder_open:", url_path="data", default=True),
    st.Page("views/models.py", title="Models", icon=":material/memory:", url_path="models"),
    st.Page("views/select.py", title="Select", icon=":material/content_cut:", url_path="select"),
    st.Page("views/explore.py", title="Explore", icon=":material/scatter_plot:", url_path="explore"),
    st.Page("views/evaluate.py", title="Evaluate & export", icon=":material/download:", url_path="evaluate"),
]
page = st.navigation(pages)
# The sidebar summary is drawn before the page runs (what is drawn after a page's st.stop()
# is dropped) and drawn again in its place after it, to show what the page just did.
sidebar_slot = st.sidebar.empty()
sidebar_status(sidebar_slot)
try:
    page.run()
finally:  # also after st.stop()
    cached.persist_edits(state)  # hand edits survive a restart (saved runs: core.runs)
    sidebar_status(sidebar_slot)
