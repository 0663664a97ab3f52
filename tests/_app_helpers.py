"""Helpers for the AppTest suites: a fast fake embedder and apps driven up to a given page."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app" / "main.py")
FAKE = "fake-app"
TIMEOUT = 90


def register_fake() -> None:
    from core.embedders import register_embedder

    from ._embed_helpers import fake_embedder

    register_embedder(
        FAKE,
        lambda weights=None, workspace=None: fake_embedder(FAKE, dim=8),
        description="fake test embedder",
        family="test",
        availability="offline",
        dim=8,
        overwrite=True,
    )


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def state(at: AppTest):
    return at.session_state["app_state"]


def start() -> AppTest:
    """The app on its first page, demo preloaded, with empty process-wide caches.

    The app's caches (st.cache_resource / st.cache_data) live for the whole process, as in a
    server; clearing them keeps each test independent of the ones that ran before it.
    """
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    return at


def embedded(at: AppTest | None = None) -> AppTest:
    """Demo embedded with the fake model (Models page)."""
    at = at or start()
    at.switch_page("views/models.py").run()
    at.multiselect(key="models_pick").set_value([FAKE]).run()
    at.button(key="models_compute").click().run()
    assert not errors(at) and not at.exception, (errors(at), at.exception)
    return at


def selected(at: AppTest | None = None, method: str = "ram_apl", pct: int = 10) -> AppTest:
    """Demo embedded and one selection run (Select page)."""
    at = embedded(at)
    at.switch_page("views/select.py").run()
    at.selectbox(key="select_method").set_value(method)
    at.slider(key="select_fraction").set_value(pct)
    at.button(key="select_run").click().run()
    assert not errors(at) and not at.exception, (errors(at), at.exception)
    return at
