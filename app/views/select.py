"""Select: run a selection method, see the class budgets, the ranking and compare runs."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from app import cached, sample_view, services
from app.components import ActiveRun, ProgressBar, need_features, review_queue, user_errors
from app.state import RunSpec, get_state
from core.selection import BUDGET_STRATEGIES, get_selector, list_selectors
from core.selection.auto import below_random, describe_choice

state = get_state()


def _saved_runs() -> None:
    """The runs of this dataset saved in the workspace (they survive a restart), with Delete."""
    records = cached.saved_runs(state)
    if not records:
        return
    with st.expander(f"Saved runs of this dataset ({len(records)})", expanded=False):
        st.caption(
            "Every run is saved in the workspace with its config, hand edits and evaluations, and comes "
            "back after a restart of the app. Runs made on other models open once those models are "
            "embedded on the Models page."
        )
        st.dataframe(
            services.saved_runs_frame(records, state.embedding_key),
            key="select_saved_runs",
            hide_index=True,
            width="stretch",
        )
        here = [r.run_id for r in records]
        c1, c2 = st.columns([3, 1])
        victim = c1.selectbox("Run to delete", here, key="select_delete_pick")
        if c2.button("Delete run", key="select_delete", icon=":material/delete:"):
            cached.delete_saved_run(state, next(r for r in records if r.run_id == victim))
            st.session_state.pop("select_active", None)
            st.rerun()


st.title("Select")
st.caption(
    "Score every training image and keep a fraction of each class. **auto** (the default) tries "
    "several methods inside your training images, against random subsets of the same size, and uses the "
    "one that does best for this fraction; or pick a method yourself."
)

fs = need_features()
if fs is None:
    st.stop()

methods = ["auto"] + [m for m in list_selectors() if m != "auto"]
c1, c3 = st.columns([2, 2])
method = c1.selectbox(
    "Method",
    methods,
    key="select_method",
    format_func=lambda m: f"{m} (recommended)" if m == "auto" else m,
    help="\n\n".join(f"**{m}**: {get_selector(m).summary}" for m in methods),
)
budget = c3.selectbox(
    "Class budget",
    list(BUDGET_STRATEGIES),
    key="select_budget",
    help="paper: round(p·N_c) per class; proportional/uniform/difficulty: round(p·N) in total; manual: your counts",
)

spec_cls = get_selector(method)
if spec_cls.prefix_consistent and budget != "manual":
    how = "its ranking is kept, so another fraction is re-sliced from it at once (no re-run)"
elif spec_cls.uses_fraction:
    how = "what it keeps depends on the fraction, so a new fraction runs it again"
else:
    how = "a new fraction runs it again"
st.caption(f"**{method}**: {spec_cls.summary} ({how}.)")

counts: tuple = ()
if budget == "manual":  # before the form: its counts start from the paper budget at the last run's fraction
    start_pct = int(st.session_state.get("select_fraction", 10))
    start_seed = int(st.session_state.get("select_seed", 0))
    base = cached.selection(
        RunSpec(state.embedding_key, method, start_pct / 100, "paper", start_seed, dataset_key=state.dataset_key or "")
    )
    frame = services.budget_frame(base)[["class", "size", "budget"]].rename(columns={"budget": "count"})
    st.markdown("**Manual class budgets** (edit the counts; start: the paper budget)")
    edited = st.data_editor(
        frame,
        key="select_manual_counts",
        hide_index=True,
        disabled=["class", "size"],
        column_config={"count": st.column_config.NumberColumn(min_value=0, step=1)},
    )
    counts = tuple((str(c), int(n)) for c, n in zip(edited["class"], edited["count"].fillna(0)))

# The fraction, seed and parameters are sent with the Run button, together (a form): the run
# gets exactly the values on the screen, however they were set (mouse, keyboard, typing).
with st.form("select_form", border=False, enter_to_submit=False):
    f1, f2 = st.columns([5, 1])
    pct = f1.slider("Fraction kept (%)", min_value=1, max_value=90, value=10, step=1, key="select_fraction")
    seed = int(f2.number_input("Seed", min_value=0, value=0, step=1, key="select_seed"))
    params: dict = {}
    infos = spec_cls.params_cls.describe()
    if infos:
        with st.expander(f"Parameters of {method}", expanded=False):
            cols = st.columns(min(4, len(infos)))
            for k, info in enumerate(infos):
                wkey = f"select_param_{method}_{info.name}"
                with cols[k % len(cols)]:
                    if info.name == "model":
                        params[info.name] = st.selectbox(
                            info.name,
                            [""] + list(fs.models),
                            key=wkey,
                            help=info.help,
                            format_func=lambda m: m or "(all models)",
                        )
                    elif info.type == "choice":
                        params[info.name] = st.selectbox(
                            info.name,
                            list(info.choices),
                            key=wkey,
                            help=info.help,
                            index=list(info.choices).index(info.default),
                        )
                    elif info.type == "bool":
                        params[info.name] = st.checkbox(info.name, value=bool(info.default), key=wkey, help=info.help)
                    elif info.type == "int":
                        params[info.name] = int(
                            st.number_input(
                                info.name,
                                value=int(info.default),
                                step=1,
                                key=wkey,
                                help=info.help,
                                min_value=int(info.minimum) if info.minimum is not None else None,
                                max_value=int(info.maximum) if info.maximum is not None else None,
                            )
                        )
                    elif info.type == "float":
                        params[info.name] = float(
                            st.number_input(
                                info.name,
                                value=float(info.default),
                                key=wkey,
                                help=info.help,
                                format="%.3f",
                                min_value=float(info.minimum) if info.minimum is not None else None,
                                max_value=float(info.maximum) if info.maximum is not None else None,
                            )
                        )
                    else:
                        params[info.name] = st.text_input(info.name, value=str(info.default), key=wkey, help=info.help)
    run_clicked = st.form_submit_button("Run selection", key="select_run", type="primary")
non_default = tuple(sorted((i.name, params[i.name]) for i in infos if params.get(i.name) != i.default))

if run_clicked:
    spec = RunSpec(
        state.embedding_key, method, pct / 100, budget, seed, non_default, counts, dataset_key=state.dataset_key or ""
    )
    with user_errors("Selection"):
        slot = st.empty()
        bar = ProgressBar(slot, f"Running {method}")
        with st.spinner(f"Running {method}…"):
            made = cached.selection(spec, progress=bar.update)
        slot.empty()
        problem = cached.save_run(spec, state.embedding_models, made) if made is not None else None
        if problem:
            st.warning(problem, icon=":material/warning:")
        state.runs[spec.run_id] = spec
        state.active_run = spec.run_id
        st.session_state["select_active"] = spec.run_id

run_ids = state.runs_for_embedding()
if not run_ids:
    st.info("Press **Run selection** to score the images.")
    _saved_runs()
    st.stop()
if state.active_run not in run_ids:
    state.active_run = run_ids[-1]
if st.session_state.get("select_active") not in run_ids:
    st.session_state["select_active"] = state.active_run
st.divider()
active = st.selectbox("Run shown", run_ids, key="select_active")
state.active_run = active
spec = state.runs[active]
result = services.apply_edits(cached.selection(spec), state.edits_for(active).added, state.edits_for(active).dropped)

if spec.method == "auto":
    choice = describe_choice(result.details, result.fraction)
    (st.warning if below_random(result.details, result.details.get("chosen", "")) else st.success)(
        choice[0].upper() + choice[1:] + ".", icon=":material/auto_awesome:"
    )
    if below_random(result.details, result.details.get("chosen", "")):
        st.warning("The pool estimate puts even the best candidate below random subsets: treat this subset with care.")
    if result.details.get("estimates"):
        with st.expander("What auto tried (pool estimate, k-fold inside the training images)"):
            st.dataframe(services.auto_estimates_frame(result.details), key="select_auto_estimates", hide_index=True)
            st.caption(services.AUTO_ESTIMATE_NOTE)
else:
    check = cached.pool_check(spec) if len(result.table) <= cached.LABEL_ISSUES_MAX else None
    if check and below_random({"estimates": [check]}, check["candidate"]):
        st.warning(
            f"The pool estimate puts **{spec.method}** below random subsets of the same size at "
            f"{spec.fraction:.0%}: {check['gain']:+.1f} pp [{check['gain_low']:+.1f}, {check['gain_high']:+.1f}] "
            "(k-fold inside your training images). Consider **auto**, or random.",
            icon=":material/warning:",
        )
    elif check:
        st.caption(
            f"Pool estimate of {spec.method} against random subsets of the same size: "
            f"{check['gain']:+.1f} pp [{check['gain_low']:+.1f}, {check['gain_high']:+.1f}]."
        )
if result.details.get("resliced"):
    st.caption(f"Re-sliced at {result.fraction:.0%} from {spec.method}'s stored ranking (not run again).")

head = services.headline(result)
m1, m2, m3, m4 = st.columns(4)
m1.metric("Kept", f"{head.kept} / {head.pool}")
m2.metric("Classes kept", head.classes)
m3.metric(
    "Suspected mislabels",
    services.count_text(head.mislabels),
    help=services.mislabel_help(len(fs.models))
    if head.mislabels is not None
    else f"Not computed for pools above {cached.LABEL_ISSUES_MAX:,} images.",
)
m4.metric("Time", f"{result.timing_s.get('total', 0):.2f} s")
if head.mislabels is not None and len(fs.models) == 1 and head.mislabels:
    st.caption(
        f"{head.mislabels} images look more like another class to the one model embedded; "
        "a second model makes this sharper (an image is flagged only if every model agrees)."
    )
if state.edits_for(active):
    e = state.edits_for(active)
    st.caption(f"Edited by hand on the Explore page: +{len(e.added)} added, −{len(e.dropped)} dropped.")

bf = services.budget_frame(result)
fig = px.bar(
    bf.melt(id_vars="class", value_vars=["kept", "dropped"], var_name="status", value_name="images"),
    x="class",
    y="images",
    color="status",
    barmode="stack",
    height=300,
    title="Kept vs total per class",
    color_discrete_map={"kept": "#3b6fd8", "dropped": "#d0d7e5"},
)
fig.update_layout(margin=dict(l=10, r=10, t=40, b=10), legend_title_text="")
st.plotly_chart(fig, key="select_budget_chart", width="stretch")

st.markdown(
    "**Ranking** (kept first, in selection order; click a row to open the image, a column header to sort the page)"
)
fc1, fc2, fc3 = st.columns([3, 1, 1])
classes = fc1.multiselect("Filter by class", sorted(bf["class"]), key="select_filter_class")
only_kept = fc2.checkbox("Kept only", key="select_only_kept")
RANKING_PAGE = 500
order = services.ranking_order(result, classes, only_kept)
n_rows = len(order)
n_pages = max(1, -(-n_rows // RANKING_PAGE))
page = (
    int(
        fc3.number_input(
            f"Page (of {n_pages})", min_value=1, max_value=n_pages, value=1, step=1, key="select_ranking_page"
        )
    )
    - 1
)
page = min(page, n_pages - 1)
view = services.ranking_page(order, fs, page, RANKING_PAGE)
page_paths = [str(p) for p in fs.paths[view["index"].to_numpy()]] if fs.paths is not None else []
thumbs = cached.thumbnails(page_paths, 48)
view["thumbnail"] = [thumbs.get(p) for p in page_paths]
picked = st.dataframe(
    view,
    key="select_ranking",
    hide_index=True,
    width="stretch",
    height=420,
    on_select="rerun",
    selection_mode="single-row",
    column_config={
        "thumbnail": st.column_config.ImageColumn("", width="small"),
        "selected": st.column_config.CheckboxColumn("kept"),
    },
)
st.caption(
    f"Rows {page * RANKING_PAGE + 1:,}–{page * RANKING_PAGE + len(view):,} of {n_rows:,}"
    + (f"; {n_pages} pages of {RANKING_PAGE}" if n_pages > 1 else "")
)
sel_rows = list(getattr(getattr(picked, "selection", None), "rows", []) or [])
base_result = cached.selection(spec)
active_run = ActiveRun(active, fs, state.edits_for(active), result, base_result)
sample_view.request_once(
    "ranking",
    (active, page, tuple(sel_rows)),
    int(view["index"].iloc[sel_rows[0]]) if sel_rows and sel_rows[0] < len(view) else None,
    active,
    "select",
)

review_queue(result, fs, active, state.edits_for(active), base_result.selected)

_saved_runs()

if len(run_ids) > 1:
    st.markdown("**Compare runs**")
    chosen = st.multiselect("Runs side by side", run_ids, default=run_ids[-2:], key="select_compare")
    if chosen:
        results = {
            rid: services.apply_edits(
                cached.selection(state.runs[rid]), state.edits_for(rid).added, state.edits_for(rid).dropped
            )
            for rid in chosen
        }
        st.dataframe(services.compare_summary_frame(results), key="select_compare_summary", hide_index=True)
        if len(chosen) == 2:
            a, b = chosen
            st.caption(f"Per class: images kept by each run and by both ({a} · {b})")
            st.dataframe(
                services.overlap_by_class(results[a], results[b]), key="select_overlap_classes", hide_index=True
            )
        st.caption("Shared images (images kept by both runs)")
        st.dataframe(services.shared_counts_frame(results), key="select_shared")
        st.caption("Overlap: shared images / size of the smaller subset")
        st.dataframe(services.overlap_frame(results), key="select_overlap")

sample_view.show(active_run, "select")  # last: the image opened from the ranking, if any
