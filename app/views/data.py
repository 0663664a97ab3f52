"""Data: bring a dataset (demo, a folder on the server, an uploaded zip, or a manifest + zip)."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from app import cached, services
from app.components import configured_roots, thumb_grid, user_errors
from app.state import get_state

state = get_state()
st.title("Data")
st.caption(
    "Bring a labelled image dataset: one folder per class, split folders (train/test/val), "
    "or a CSV manifest with path,label[,split]."
)

SOURCES = ["Demo (Fashion-MNIST)", "Folder on the server", "Upload a zip", "Upload a manifest + zip"]
source = st.radio("Source", SOURCES, key="data_source", horizontal=True)


def _loaded(ds, label: str) -> None:
    if ds.fingerprint != state.dataset_key:
        state.reset_downstream_of_dataset()
    state.dataset_key = cached.put_dataset(ds)
    state.dataset_label = label
    st.success(f"Loaded {ds.summary()}", icon=":material/check_circle:")


if source == SOURCES[0]:
    if st.button("Load the demo", key="data_load_demo", type="primary"):
        with user_errors("Loading the demo"):
            _loaded(cached.demo_dataset(), "demo")
elif source == SOURCES[1]:
    roots = services.allowed_roots(configured=configured_roots())
    st.caption(
        "Allowed folders: "
        + ", ".join(f"`{r}`" for r in roots)
        + f" (change them with `{services.ROOTS_ENV}`, or `roots = [...]` under `[coreset_studio]` "
        "in `.streamlit/secrets.toml`)."
    )
    folder = st.text_input(
        "Folder, manifest (.csv/.parquet) or .zip on the server",
        key="data_folder",
        placeholder=str(roots[0] / "my-dataset"),
    )
    if st.button("Load", key="data_load_folder", type="primary"):
        with user_errors("Loading the folder"):
            with st.spinner("Checking images…"):
                ds = services.load_server_path(folder, roots)
            _loaded(ds, folder)
elif source == SOURCES[2]:
    up = st.file_uploader(
        "Zip with one folder per class (or split folders, or a manifest inside)", type=["zip"], key="data_zip"
    )
    if st.button("Load the zip", key="data_load_zip", type="primary", disabled=up is None):
        with user_errors("Loading the zip"):
            with st.spinner("Unpacking and checking images…"):
                ds = services.load_uploaded_zip(up.getvalue(), up.name)
            _loaded(ds, up.name)
else:
    csv = st.file_uploader(
        "Manifest CSV (path,label[,split]; paths relative to the zip's top folder)",
        type=["csv"],
        key="data_manifest_csv",
    )
    images = st.file_uploader("Zip of the images", type=["zip"], key="data_manifest_zip")
    if st.button("Load the manifest", key="data_load_manifest", type="primary", disabled=csv is None or images is None):
        with user_errors("Loading the manifest"):
            with st.spinner("Unpacking and checking images…"):
                ds = services.load_uploaded_manifest(csv.getvalue(), csv.name, images.getvalue(), images.name)
            _loaded(ds, f"{csv.name} + {images.name}")

ds = cached.get_dataset(state.dataset_key)
st.divider()
if ds is None:
    st.info("No dataset loaded yet.")
    st.stop()

st.subheader(f"{ds.name}")
skipped = sum(p.severity == "skipped" for p in ds.problems)
c1, c2, c3, c4 = st.columns(4)
c1.metric("Images", len(ds))
c2.metric("Classes", len(ds.class_names))
c3.metric("Skipped files", skipped)
c4.metric("Warnings", len(ds.problems) - skipped)
st.caption(f"Source: {ds.source} · root `{ds.root}` · fingerprint `{ds.fingerprint[:12]}`")

counts = services.class_count_frame(ds)
fig = px.bar(counts, x="class", y="images", color="split", barmode="stack", title="Images per class", height=320)
fig.update_layout(margin=dict(l=10, r=10, t=40, b=10), legend_title_text="")
st.plotly_chart(fig, key="data_counts_chart", width="stretch")

st.markdown("**Browse a class** (its first 24 images)")
label = st.selectbox("Class", ds.class_names, key="data_class")
thumb_grid(services.class_paths(ds, label, limit=24), columns=12, size=56)

st.markdown(f"**Problem report** ({len(ds.problems)})")
if ds.problems:
    st.dataframe(
        ds.problems_frame().rename(columns={"location": "file"}), key="data_problems", hide_index=True, width="stretch"
    )
else:
    st.caption("No problems found: every file is a readable image inside a class folder.")
