"""AppTest: a reload (a new Streamlit session with the same ``?s=`` id) keeps the session's work."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from app import cached
from app.state import SESSION_PARAM

from ._app_helpers import APP, FAKE, TIMEOUT, errors, selected, state

pytestmark = pytest.mark.usefixtures("fake_app_model")


def test_a_reload_keeps_runs_and_hand_edits_and_a_new_visit_starts_anew():
    at = selected()
    st_ = state(at)
    run_id = st_.active_run
    first = int(cached.selection(st_.runs[run_id]).selected[0])
    st_.edits_for(run_id).dropped.add(first)
    sid = at.query_params[SESSION_PARAM]
    assert len(sid) == 12

    again = AppTest.from_file(APP, default_timeout=TIMEOUT)  # the same URL, loaded anew
    again.query_params[SESSION_PARAM] = sid
    again.run()
    again.switch_page("views/evaluate.py").run()
    assert not errors(again) and not again.exception
    assert state(again).active_run == run_id and state(again).edits_for(run_id).dropped == {first}
    assert any("99 images kept (hand edits: +0 / −1)" in c.value for c in again.caption)
    assert again.query_params[SESSION_PARAM] == sid

    fresh = AppTest.from_file(APP, default_timeout=TIMEOUT).run()  # no id: a session of its own
    assert state(fresh).runs == {} and fresh.query_params[SESSION_PARAM] not in ("", sid)
    stale = AppTest.from_file(APP, default_timeout=TIMEOUT)  # an unknown id: also a new session
    stale.query_params[SESSION_PARAM] = "0123456789ab"
    stale.run()
    assert state(stale).runs == {} and stale.query_params[SESSION_PARAM] != "0123456789ab"


def test_work_evicted_from_memory_says_how_to_get_it_back():
    at = selected()
    st_ = state(at)
    cached.feature_store().clear()  # as when many other embeddings pushed it out
    at.switch_page("views/explore.py").run()
    assert any("are no longer in the app's memory" in i.value and FAKE in i.value for i in at.info)
    cached.dataset_store().clear()
    at.switch_page("views/select.py").run()
    assert any("dataset (demo) is no longer in the app's memory" in i.value for i in at.info)
    assert not at.exception and st_.runs  # the session's runs are still there


def test_manual_run_ids_are_content_hashes():
    from app.state import RunSpec

    a = RunSpec("k", "ram_apl", 0.1, "manual", 0, (), (("a", 1), ("b", 2)))
    b = RunSpec("k", "ram_apl", 0.1, "manual", 0, (), (("a", 2), ("b", 1)))
    same = RunSpec("k", "ram_apl", 0.1, "manual", 0, (), (("a", 1), ("b", 2)))
    assert a.run_id != b.run_id and a.run_id == same.run_id
    import hashlib
    import json

    assert a.run_id.endswith(hashlib.sha256(json.dumps(sorted(a.budget_counts)).encode()).hexdigest()[:8])


def test_the_sidebar_summary_is_there_on_every_page_right_after_a_switch():
    at = selected()
    run_id = state(at).active_run
    for page in ("views/explore.py", "views/evaluate.py", "views/data.py", "views/select.py"):
        at.switch_page(page).run()
        captions = [c.value for c in at.sidebar.caption]
        assert any(c.startswith("Dataset: ") and "(1200 images)" in c for c in captions), (page, captions)
        assert f"Selection: {run_id}" in captions, (page, captions)
