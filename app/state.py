"""The app's session state, typed, in one place.

Everything a page needs to remember lives in one :class:`AppState` stored under
``st.session_state["app_state"]`` (reach it with :func:`get_state`). Heavy objects
(datasets, feature sets, selection results, evaluation reports) are *not* stored here:
the state holds their keys (fingerprints) and :mod:`app.cached` looks them up.
Widget values stay in ``st.session_state`` under each widget's explicit key.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

STATE_KEY = "app_state"
SESSION_ID_KEY = "app_session_id"


@dataclass(frozen=True)
class RunSpec:
    """One selection run: everything that determines its result (and its cache key)."""

    embedding_key: str
    method: str
    fraction: float
    budget: str
    seed: int
    params: tuple[tuple[str, Any], ...] = ()
    budget_counts: tuple[tuple[str, int], ...] = ()
    #: the dataset's fingerprint: where the run is saved (not part of the run's key or id)
    dataset_key: str = field(default="", compare=False)

    @property
    def run_id(self) -> str:
        """A short readable name, unique per distinct spec."""
        extra = ""
        if self.params:
            extra = " " + ",".join(f"{k}={v}" for k, v in self.params)
        if self.budget_counts:  # a content hash: stable across processes, distinct per count set
            digest = hashlib.sha256(json.dumps(sorted(self.budget_counts)).encode()).hexdigest()[:8]
            extra += f" manual:{digest}"
        return f"{self.method} {self.fraction * 100:g}% {self.budget} seed {self.seed}{extra}"

    def to_json(self) -> str:
        return json.dumps(
            {
                "method": self.method,
                "fraction": self.fraction,
                "budget": self.budget,
                "seed": self.seed,
                "params": dict(self.params),
                "budget_counts": dict(self.budget_counts),
            },
            sort_keys=True,
        )

    @property
    def key(self) -> str:
        """What determines the result: the embedding and the config (the key of the caches and
        of the saved run)."""
        return f"{self.embedding_key}|{self.to_json()}"

    def to_config(self) -> dict:
        """The run's config as saved with it (:class:`core.runs.RunStore`)."""
        return {"embedding_key": self.embedding_key, **json.loads(self.to_json())}

    @classmethod
    def from_config(cls, config: dict, dataset_key: str = "") -> RunSpec:
        """The spec back from :meth:`to_config` (raises KeyError/TypeError/ValueError on a bad one)."""
        return cls(
            str(config["embedding_key"]),
            str(config["method"]),
            float(config["fraction"]),
            str(config["budget"]),
            int(config["seed"]),
            tuple(sorted(dict(config.get("params", {})).items())),
            tuple(sorted((str(k), int(v)) for k, v in dict(config.get("budget_counts", {})).items())),
            dataset_key=dataset_key,
        )


@dataclass
class Edits:
    """Images the person added to / dropped from a run's subset (row indices of the features)."""

    added: set[int] = field(default_factory=set)
    dropped: set[int] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.added or self.dropped)


@dataclass
class AppState:
    """What the app remembers for one browser session."""

    # Data page
    dataset_key: str | None = None  # Dataset.fingerprint, key into cached.dataset_store()
    dataset_label: str | None = None  # what was loaded, for people ("demo", a path, an upload)
    # Models page
    embedding_key: str | None = None  # key into cached.feature_store()
    embedding_models: list[str] = field(default_factory=list)
    embedding_stats: dict[str, dict] = field(default_factory=dict)
    embedding_problems: list[tuple[str, str]] = field(default_factory=list)
    # Select page
    runs: dict[str, RunSpec] = field(default_factory=dict)  # run_id -> spec, in creation order
    active_run: str | None = None
    edits: dict[str, Edits] = field(default_factory=dict)  # run_id -> edits
    # Evaluate page
    evaluations: dict[str, str] = field(default_factory=dict)  # run_id (+ edits) -> evaluation key
    # saved runs (core.runs.RunStore): embedding keys whose saved runs were restored, and the
    # edits as last saved per run id (to save only what changed)
    restored: set[str] = field(default_factory=set)
    saved_edits: dict[str, tuple] = field(default_factory=dict)
    # bookkeeping
    preloaded: bool = False

    def edits_for(self, run_id: str) -> Edits:
        return self.edits.setdefault(run_id, Edits())

    def runs_for_embedding(self) -> list[str]:
        """Run ids made on the current embedding, oldest first."""
        return [rid for rid, spec in self.runs.items() if spec.embedding_key == self.embedding_key]

    def reset_downstream_of_dataset(self) -> None:
        self.embedding_key = None
        self.embedding_models = []
        self.embedding_stats = {}
        self.embedding_problems = []
        self.active_run = None


SESSION_PARAM = "s"  # URL query parameter naming the session, so a reload finds it again
MAX_SESSIONS = 64


@st.cache_resource(show_spinner=False)
def _sessions() -> OrderedDict[str, AppState]:
    """Session id -> AppState for this server process (most recent last)."""
    return OrderedDict()


def get_state() -> AppState:
    """The session's :class:`AppState` (created on first use).

    The state is also kept for the server process under a random id that travels in the URL
    (``?s=...``): reloading the page (a new Streamlit session) picks up the same datasets,
    embeddings, runs, hand edits and evaluations instead of starting over.
    """
    state = st.session_state.get(STATE_KEY)
    if isinstance(state, AppState):
        return state
    sessions = _sessions()
    sid = str(st.query_params.get(SESSION_PARAM, "") or "")
    state = sessions.get(sid) if sid else None
    if state is None:
        sid = secrets.token_hex(6)
        state = AppState()
    sessions[sid] = state
    sessions.move_to_end(sid)
    while len(sessions) > MAX_SESSIONS:
        sessions.popitem(last=False)
    st.session_state[STATE_KEY] = state
    st.session_state[SESSION_ID_KEY] = sid
    return state


def keep_session_in_url() -> None:
    """Put the session id in the URL (page changes may drop query parameters)."""
    sid = st.session_state.get(SESSION_ID_KEY)
    if sid and st.query_params.get(SESSION_PARAM) != sid:
        st.query_params[SESSION_PARAM] = sid
