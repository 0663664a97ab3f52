"""Models: embed the dataset with one or more foundation models (cached)."""

from __future__ import annotations

import time
import warnings

import pandas as pd
import streamlit as st

from app import cached
from app.components import need_dataset, user_errors
from app.state import get_state
from core.cache import CacheWriteWarning
from core.embedders import DEFAULT_EMBEDDER, list_embedders, weights_status

state = get_state()
st.title("Models")
st.caption(
    "Each model turns every image into a feature vector. Embeddings are cached on disk by file "
    "content: computing again, or coming back later, is only a look-up."
)

ds = need_dataset()
if ds is None:
    st.stop()

infos = list_embedders()
names = [i.name for i in infos]
status_of = {n: weights_status(n) for n in names}
# Models that load here (offline or already in the hub cache) are offered together, so "select
# all" never picks one that cannot load; the others take a local weights file first.
loadable = [n for n in names if status_of[n] in ("offline", "cached")]
needs = [n for n in names if n not in loadable]
default = [m for m in (state.embedding_models or [DEFAULT_EMBEDDER]) if m in loadable]
picked_ready = st.multiselect(
    "Models",
    loadable,
    default=default,
    key="models_pick",
    help="These load here: the effnet-lite models work offline, others are already in the hub cache.",
)
picked_hub = st.multiselect(
    "Models that need their weights (a local weights file, or internet once)",
    needs,
    default=[m for m in (state.embedding_models or []) if m in needs],
    key="models_pick_hub",
    format_func=lambda m: f"{m} (needs weights)",
)

weights: dict[str, str] = {}
rows = []
for info in infos:
    rows.append(
        {
            "model": info.name,
            "weights": status_of[info.name],
            "dim": info.dim,
            "paper model": info.paper_model,
            "description": info.description,
        }
    )
for name in picked_ready + picked_hub:
    if status_of[name] == "offline":
        continue
    path = st.text_input(
        f"Local weights file for {name} (optional: .safetensors, .bin or .pth state dict)", key=f"models_weights_{name}"
    )
    if path.strip():
        weights[name] = path.strip()
picked = picked_ready + picked_hub
table = pd.DataFrame(rows)
table.loc[table["model"].isin(list(weights)), "weights"] = "local file"
with st.expander("Available models", expanded=False):
    st.dataframe(table, key="models_table", hide_index=True, width="stretch")
if picked:
    st.caption(
        "Weights: " + " · ".join(f"**{m}**: {'local file' if m in weights else weights_status(m)}" for m in picked)
    )

c1, c2, c3, c4 = st.columns(4)
device = c1.selectbox(
    "Device", ["auto", "cpu", "cuda", "mps"], key="models_device", help="auto = CUDA, then Apple MPS, then the CPU"
)
RUNTIMES = {"torch": "PyTorch", "onnx": "ONNX Runtime (CPU)"}
runtime = c4.selectbox(
    "Runtime",
    list(RUNTIMES),
    format_func=RUNTIMES.__getitem__,
    key="models_runtime",
    help="ONNX Runtime runs the same model on the CPU, exported at its first use and checked against "
    "PyTorch (same features, same cache); about 1.6x faster on a 2-core CPU (bench/README.md)",
)
batch_size = c2.number_input(
    "Batch size",
    min_value=1,
    max_value=1024,
    value=None,
    step=8,
    key="models_batch_size",
    placeholder="auto: 8 on the CPU, 64 on a GPU",
    help="images per forward pass; empty = auto",
)
workers = c3.number_input(
    "Decoding workers",
    min_value=0,
    max_value=16,
    value=None,
    step=1,
    key="models_workers",
    placeholder="auto",
    help="processes decoding images; 0 decodes in a thread of the app process, next to the model; "
    "empty = auto (0 on a machine with 2 CPUs or fewer)",
)
batch_size = None if batch_size is None else int(batch_size)
workers = None if workers is None else int(workers)

key = cached.embedding_key(ds.fingerprint, picked, weights) if picked else None
ready = key is not None and cached.get_features(key) is not None


def _request_cancel() -> None:
    st.session_state["models_cancelled"] = True


compute = st.button(
    "Compute embeddings" if not ready else "Use these embeddings (cached)",
    key="models_compute",
    type="primary",
    disabled=not picked,
)
if compute:
    st.session_state["models_cancelled"] = False
    if ready:
        state.embedding_key, state.embedding_models = key, list(picked)
    else:
        from core.embedding import embed_dataset

        cancel_slot, bar_slot = st.empty(), st.empty()
        cancel_slot.button("Cancel", key="models_cancel", on_click=_request_cancel)
        bar = bar_slot.progress(0.0, text=f"loading {', '.join(picked)} (checking every model's weights first)…")
        started: dict[str, tuple[float, int]] = {}

        def progress(model: str, done: int, total: int) -> None:
            t0, d0 = started.setdefault(model, (time.perf_counter(), done))
            dt = time.perf_counter() - t0
            rate = (done - d0) / dt if dt > 0 else 0.0
            eta = f" · about {(total - done) / rate:.0f} s left" if rate > 0 and done < total else ""
            bar.progress(
                min(1.0, done / max(total, 1)), text=f"{model}: {done}/{total} images · {rate:.0f} images/s{eta}"
            )

        try:
            with user_errors("Embedding"), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", CacheWriteWarning)
                # every model is loaded before any embedding starts: a model without weights fails
                # at once, not after the others have been embedded
                for name in picked:
                    cached.embedder(name, weights.get(name))
                run = embed_dataset(
                    ds,
                    picked,
                    weights=weights,
                    device=device,
                    batch_size=batch_size,
                    num_workers=workers,
                    backend=runtime,
                    progress=progress,
                    make_embedder=cached.embedder,
                    cancel=lambda: bool(st.session_state.get("models_cancelled")),
                )
                st.session_state["models_cache_warnings"] = [
                    str(w.message) for w in caught if issubclass(w.category, CacheWriteWarning)
                ]
                cached.put_features(key, run.features)
                state.embedding_key, state.embedding_models = key, list(picked)
                state.embedding_stats = run.stats
                state.embedding_problems = [(p.location, p.reason) for p in run.problems]
        finally:  # done, failed or cancelled: the bar and the Cancel button go
            cancel_slot.empty()
            bar_slot.empty()
        if cached.get_features(key) is not None:
            st.rerun()
elif st.session_state.get("models_cancelled"):
    st.warning(
        "Embedding cancelled. The images embedded so far are cached; computing again resumes there.",
        icon=":material/stop_circle:",
    )
    st.session_state["models_cancelled"] = False

for text in st.session_state.get("models_cache_warnings", []):
    st.warning(
        f"The embeddings are ready but were not cached on disk, so they will be computed again next time: {text}",
        icon=":material/warning:",
    )
fs = cached.get_features(state.embedding_key)
st.divider()
if fs is None:
    st.info("No embeddings yet: pick models and press **Compute embeddings**.")
    st.stop()
st.success(f"Embeddings ready: {', '.join(state.embedding_models)} · {len(fs)} images", icon=":material/check_circle:")
if state.embedding_stats:
    stats = pd.DataFrame([{"model": m, **s} for m, s in state.embedding_stats.items()])
    st.dataframe(stats, key="models_stats", hide_index=True, width="stretch")
if state.embedding_problems:
    st.warning(f"{len(state.embedding_problems)} image(s) could not be embedded and were left out.")
    st.dataframe(
        pd.DataFrame(state.embedding_problems, columns=["file", "reason"]), key="models_problems", hide_index=True
    )
st.page_link("views/select.py", label="Next: select a subset", icon=":material/content_cut:")
