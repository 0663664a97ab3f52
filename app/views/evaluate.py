"""Evaluate & export: subset vs random vs full, and the downloads."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from app import cached, services
from app.components import FractionETA, need_run, user_errors
from app.state import get_state
from core.evaluation.probes import list_trainers

ZIP_MAX_IMAGES = 20_000

state = get_state()
st.title("Evaluate & export")
st.caption(
    "Is the subset better than a random subset of the same size per class? A probe is trained on "
    "the subset, on random subsets (one per seed) and on the whole training pool, and scored on the "
    "test split (else a 20 % hold-out)."
)

active = need_run()
if active is None:
    st.stop()
run_id, fs, edits, result = active.run_id, active.fs, active.edits, active.result
st.caption(
    f"Run: **{run_id}** · {result.n_selected} images kept"
    + (f" (hand edits: +{len(edits.added)} / −{len(edits.dropped)})" if edits else "")
)

st.subheader("Download the subset")
scores_csv, subset_csv = cached.selection_csvs(state.runs[run_id], edits, result, fs)
d1, d2, d3, _ = st.columns([1, 1, 1, 2])
d1.download_button(
    "subset.csv",
    subset_csv,
    file_name="subset.csv",
    mime="text/csv",
    key="export_subset_csv",
    type="primary",
    icon=":material/download:",
    on_click="ignore",
)
d2.download_button(
    "scores.csv",
    scores_csv,
    file_name="scores.csv",
    mime="text/csv",
    key="export_scores_csv",
    icon=":material/download:",
    on_click="ignore",
)
too_big = result.n_selected > ZIP_MAX_IMAGES  # the zip is made in memory
d3.download_button(
    "subset.zip",
    lambda: services.subset_zip(result, fs, subset_csv),
    file_name="subset.zip",
    mime="application/zip",
    key="export_subset_zip",
    icon=":material/folder_zip:",
    on_click="ignore",
    disabled=too_big,
    help=(
        f"over {ZIP_MAX_IMAGES:,} images: use `coreset-studio evaluate ... --copy-subset DIR`"
        if too_big
        else "the kept images in a folder per class, with manifest.csv and subset.csv (made when clicked)"
    ),
)

st.subheader("Evaluate")
# On a visit (the widgets are new), a run evaluated before (in this session, or saved before a
# restart) opens with the settings of its latest evaluation, so that evaluation shows again.
last = (
    cached.evaluation(state.runs.get(run_id), state.evaluations.get(run_id, ""))
    if state.evaluations.get(run_id)
    else None
)
if last is not None and "eval_seeds" not in st.session_state:
    cfg = last.report.config
    st.session_state["eval_seeds"] = max(1, min(20, len(cfg.get("seeds", [])) or 5))
    st.session_state["eval_trainer"] = cfg.get("trainer", "linear")
    if cfg.get("eval_model") in fs.models:
        st.session_state["eval_model"] = cfg["eval_model"]
c1, c2, c3 = st.columns(3)
st.session_state.setdefault("eval_seeds", 5)
seeds = int(
    c1.number_input(
        "Seeds",
        min_value=1,
        max_value=20,
        step=1,
        key="eval_seeds",
        help="random baselines and stochastic trainers; 3 or more give error bars",
    )
)
trainer = c2.selectbox(
    "Evaluation model",
    list_trainers(images=False),
    key="eval_trainer",
    help="linear probe or a small MLP on the embeddings",
)
from core.evaluation import default_eval_model  # noqa: E402

default = default_eval_model(fs.models, result.models)
if st.session_state.get("eval_model") not in fs.models:
    st.session_state["eval_model"] = default
eval_model = c3.selectbox("Evaluation features", fs.models, key="eval_model")

ekey = services.evaluation_key(state.embedding_key, result, seeds, trainer, eval_model)
run_now = st.button("Run evaluation", key="eval_run", type="primary")
progress_slot = st.empty()  # always present, so the elements below keep their places between runs
if run_now:
    bar = progress_slot.progress(0.0, text="preparing the evaluation…")
    eta = FractionETA()
    with user_errors("Evaluation"):
        outcome = services.run_evaluation(
            fs,
            result,
            seeds=seeds,
            trainer=trainer,
            eval_model=eval_model,
            edited=bool(edits),
            step=lambda f, m: bar.progress(f, text=eta.text(f, m)),
        )
        cached.evaluation_store().put(ekey, outcome)
        cached.save_evaluation(state.runs[run_id], ekey, outcome)
        state.evaluations[run_id] = ekey
        progress_slot.empty()


def _compare_runs() -> None:
    """The session's evaluated runs side by side (when there are two or more)."""
    done = {
        rid: o
        for rid, k in state.evaluations.items()
        if rid in state.runs and (o := cached.evaluation(state.runs[rid], k)) is not None
    }
    if len(done) < 2:
        return
    st.subheader("Evaluated runs side by side")
    st.caption(
        "The latest evaluation of each run of this session; the difference is subset minus random, "
        "in percentage points, with its confidence interval over the seeds."
    )
    st.dataframe(services.comparison_frame(done), key="eval_compare", hide_index=True, width="stretch")


outcome = cached.evaluation(state.runs.get(run_id), ekey)
if outcome is None:
    st.info(
        "Press **Run evaluation** (a few seconds on the demo) for the accuracy chart and report.json / report.html."
    )
    _compare_runs()
    st.stop()
if outcome.note:
    st.warning(outcome.note, icon=":material/info:")
acc = services.accuracy_frame(outcome.report)
colours = {"subset": "#3b6fd8", "random": "#9aa5b8", "full": "#2e9e6a"}
fig = go.Figure(
    go.Bar(
        x=acc["group"],
        y=acc["accuracy"],
        error_y=dict(type="data", array=acc["std"]),
        marker_color=[colours[g] for g in acc["group"]],
        text=[f"{a:.1f} %" for a in acc["accuracy"]],
        textposition="inside",
        insidetextanchor="end",
        textfont=dict(color="white", size=14),
        customdata=acc["train images"],
        hovertemplate="%{x}: %{y:.2f} %% (%{customdata} training images)<extra></extra>",
    )
)
fig.update_layout(
    title=f"Test accuracy ({trainer} on {eval_model}), mean ± std over {seeds} seed(s)",
    yaxis_title="accuracy (%)",
    height=380,
    margin=dict(l=10, r=10, t=50, b=10),
    yaxis_range=[0, min(100, float((acc["accuracy"] + acc["std"]).max()) * 1.15 + 1)],
)
st.plotly_chart(fig, key="eval_chart", width="stretch")
cell = outcome.report.cells[0]
d = cell.difference
m1, m2, m3 = st.columns(3)
m1.metric("Subset", f"{100 * cell.method_result.mean:.1f} %", services.headline_difference(cell))
m2.metric("Random (same size per class)", f"{100 * cell.random.mean:.1f} %")
m3.metric("Full training pool", f"{100 * cell.full.mean:.1f} %")

st.subheader("Download the report")
r1, r2, r3, r4 = st.columns(4)
files = outcome.files
r1.download_button(
    "report.json",
    files["report.json"],
    file_name="report.json",
    mime="application/json",
    key="export_report_json",
    icon=":material/download:",
    on_click="ignore",
)
r2.download_button(
    "report.html",
    files["report.html"],
    file_name="report.html",
    mime="text/html",
    key="export_report_html",
    icon=":material/download:",
    on_click="ignore",
)
# the evaluated CSVs are offered only when they differ from the page's own downloads above
if "subset.csv" in files and files["subset.csv"] != subset_csv:
    r3.download_button(
        "subset.csv (evaluated)",
        files["subset.csv"],
        file_name="subset.csv",
        mime="text/csv",
        key="export_eval_subset_csv",
        icon=":material/download:",
        on_click="ignore",
    )
if "scores.csv" in files and files["scores.csv"] != scores_csv:
    r4.download_button(
        "scores.csv (evaluated)",
        files["scores.csv"],
        file_name="scores.csv",
        mime="text/csv",
        key="export_eval_scores_csv",
        icon=":material/download:",
        on_click="ignore",
    )

_compare_runs()
