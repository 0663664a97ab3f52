"""AppTest: the Models page (compute with a fake model, cache, weights status, errors)."""

from __future__ import annotations

import pytest

from app import cached

from ._app_helpers import FAKE, embedded, errors, start, state

pytestmark = pytest.mark.usefixtures("fake_app_model")


def test_compute_embeddings_stores_features_and_stats():
    at = embedded()
    st_ = state(at)
    assert st_.embedding_models == [FAKE] and st_.embedding_key
    fs = cached.get_features(st_.embedding_key)
    assert len(fs) == 1200 and fs.features[FAKE].shape == (1200, 8)
    stats = at.dataframe[-1].value
    assert stats["model"].tolist() == [FAKE] and int(stats["computed"].iloc[0]) == 1200
    assert any("Embeddings ready" in s.value for s in at.success)


def test_returning_costs_nothing():
    at = embedded()
    key = state(at).embedding_key
    at.switch_page("views/select.py").run()
    at.switch_page("views/models.py").run()
    # the same models: the button offers the cached result and state is unchanged
    assert at.button(key="models_compute").label == "Use these embeddings (cached)"
    assert at.multiselect(key="models_pick").value == [FAKE]
    at.button(key="models_compute").click().run()
    assert state(at).embedding_key == key and not errors(at)


def test_weights_status_is_shown_and_local_file_field_appears():
    at = start()
    at.switch_page("views/models.py").run()
    table = at.dataframe[0].value.set_index("model")["weights"]
    assert table["effnet-lite0"] == "offline" and table[FAKE] == "offline"
    assert table["clip-vit-b32"] in ("needs download", "cached")
    at.multiselect(key="models_pick").set_value(["effnet-lite0"]).run()
    at.multiselect(key="models_pick_hub").set_value(["clip-vit-b32"]).run()
    assert [t.key for t in at.text_input] == ["models_weights_clip-vit-b32"]  # offline models need no file
    at.text_input(key="models_weights_clip-vit-b32").set_value("/some/file.safetensors").run()
    assert "clip-vit-b32**: local file" in at.caption[-1].value or any("local file" in c.value for c in at.caption)


def test_model_without_weights_shows_error_and_keeps_earlier_embeddings():
    at = embedded()
    before = state(at).embedding_key
    at.multiselect(key="models_pick").set_value([]).run()
    at.multiselect(key="models_pick_hub").set_value(["clip-vit-b32"]).run()
    at.button(key="models_compute").click().run()
    assert len(errors(at)) == 1, errors(at)
    msg = errors(at)[0]
    assert "clip-vit-b32" in msg and "Local weights file" in msg
    assert not at.exception
    assert state(at).embedding_key == before and cached.get_features(before) is not None


def test_bad_local_weights_file_shows_error(tmp_path):
    bad = tmp_path / "weights.pth"
    bad.write_bytes(b"not a checkpoint")
    at = start()
    at.switch_page("views/models.py").run()
    at.multiselect(key="models_pick").set_value([]).run()
    at.multiselect(key="models_pick_hub").set_value(["dinov2-vits14"]).run()
    at.text_input(key="models_weights_dinov2-vits14").set_value(str(bad)).run()
    at.button(key="models_compute").click().run()
    assert len(errors(at)) == 1 and "Embedding failed" in errors(at)[0]
    assert not at.exception and state(at).embedding_key is None


def test_cancel_stops_embedding_keeps_earlier_results_and_caches_the_rows_done():
    """The Cancel button sets a flag that the engine polls between batches; simulate the click
    landing after the first batches by flipping that flag from inside the model."""
    import streamlit as st

    from core.embedders import register_embedder

    from ._embed_helpers import fake_embedder

    slow = "fake-cancel"
    clicked = []

    def factory(weights=None, workspace=None):
        emb = fake_embedder(slow, dim=8)
        forward = emb.model.forward

        def forward_then_click_cancel(x):
            out = forward(x)
            if emb.model.seen >= 64 and not clicked:  # the user clicks once
                clicked.append(True)
                st.session_state["models_cancelled"] = True
            return out

        emb.model.forward = forward_then_click_cancel
        return emb

    register_embedder(slow, factory, description="test", family="test", availability="offline", dim=8, overwrite=True)
    try:
        at = embedded()
        before = state(at).embedding_key
        at.multiselect(key="models_pick").set_value([slow]).run()
        at.button(key="models_compute").click().run()
        assert not errors(at) and not at.exception
        assert any("cancelled" in w.value for w in at.warning)
        assert state(at).embedding_key == before and cached.get_features(before) is not None
        # the rows embedded before the cancel are cached: computing again embeds only the rest
        at.button(key="models_compute").click().run()
        stats = state(at).embedding_stats[slow]
        assert 64 <= stats["cached"] < 1200 and stats["cached"] + stats["computed"] == 1200
    finally:
        from core.embedders import unregister_embedder

        unregister_embedder(slow)


def test_models_are_loaded_once_and_kept_for_the_next_dataset(image_tree, monkeypatch):
    from app import services
    from core.embedders import register_embedder

    from ._embed_helpers import fake_embedder

    made = []

    def factory(weights=None, workspace=None):
        made.append(weights)
        return fake_embedder(FAKE, dim=8)

    register_embedder(FAKE, factory, description="fake", family="test", availability="offline", dim=8, overwrite=True)
    at = embedded()
    assert len(made) == 1 and len(cached.get_features(state(at).embedding_key)) == 1200
    # another dataset, the same model: computed with the loaded model, not a new one
    monkeypatch.setenv(services.ROOTS_ENV, str(image_tree))
    at.switch_page("views/data.py").run()
    at.radio(key="data_source").set_value("Folder on the server").run()
    at.text_input(key="data_folder").set_value(str(image_tree))
    at.button(key="data_load_folder").click().run()
    at.switch_page("views/models.py").run()
    at.multiselect(key="models_pick").set_value([FAKE]).run()
    at.button(key="models_compute").click().run()
    assert not errors(at) and len(cached.get_features(state(at).embedding_key)) == 9
    assert len(made) == 1


def test_batch_size_and_workers_default_to_auto_and_pass_through(monkeypatch):
    import core.embedding

    real, seen = core.embedding.embed_dataset, []

    def spy(*args, **kwargs):
        seen.append((kwargs["batch_size"], kwargs["num_workers"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(core.embedding, "embed_dataset", spy)
    for batch, workers in ((None, None), (16, 0)):
        at = start()
        at.switch_page("views/models.py").run()
        assert at.number_input(key="models_batch_size").value is None  # auto
        assert at.number_input(key="models_workers").value is None
        if batch is not None:
            at.number_input(key="models_batch_size").set_value(batch)
            at.number_input(key="models_workers").set_value(workers)
        at.multiselect(key="models_pick").set_value([FAKE]).run()
        at.button(key="models_compute").click().run()
        assert not errors(at) and seen[-1] == (batch, workers)


def test_the_onnx_runtime_is_picked_on_the_page_and_gives_the_torch_features(monkeypatch):
    import shutil

    import numpy as np
    import onnxruntime  # noqa: F401 - a dev dependency: missing, this fails loudly

    import core.embedding

    real, seen = core.embedding.embed_dataset, []

    def spy(*args, **kwargs):
        seen.append(kwargs["backend"])
        return real(*args, **kwargs)

    monkeypatch.setattr(core.embedding, "embed_dataset", spy)
    feats = {}
    from core.cache import cache_root

    for runtime in ("torch", "onnx"):
        cached.feature_store().clear()
        shutil.rmtree(cache_root(), ignore_errors=True)  # the disk cache too: each runtime computes
        at = start()
        at.switch_page("views/models.py").run()
        assert at.selectbox(key="models_runtime").value == "torch"  # the default
        at.selectbox(key="models_runtime").set_value(runtime)
        at.selectbox(key="models_device").set_value("cpu")
        at.multiselect(key="models_pick").set_value([FAKE]).run()
        at.button(key="models_compute").click().run()
        assert not errors(at) and seen[-1] == runtime
        stats = at.dataframe[-1].value
        assert stats["backend"].tolist() == [{"torch": "torch", "onnx": "onnxruntime"}[runtime]]
        assert stats["computed"].tolist() == [1200]  # computed by this runtime, not read from the cache
        feats[runtime] = cached.get_features(state(at).embedding_key).features[FAKE]
    np.testing.assert_allclose(
        feats["onnx"], feats["torch"], rtol=0, atol=1e-5 * max(1.0, np.abs(feats["torch"]).max())
    )


def test_a_cache_that_cannot_be_written_is_shown_and_the_embeddings_still_arrive(monkeypatch):
    import errno
    import os

    from ._app_helpers import FAKE, errors, start

    def full_disk(path, *a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr("core.cache.atomic_save_npz", full_disk)
    at = start()
    at.switch_page("views/models.py").run()
    at.multiselect(key="models_pick").set_value([FAKE]).run()
    at.button(key="models_compute").click().run()
    assert not errors(at) and not at.exception
    warns = [w.value for w in at.warning if "not cached on disk" in w.value]
    assert len(warns) == 1 and "No space left on device" in warns[0] and "--workspace" in warns[0]
    from app import cached

    assert cached.get_features(at.session_state["app_state"].embedding_key) is not None


def test_every_models_weights_are_checked_before_any_embedding(monkeypatch):
    """A hub model without weights picked beside an offline one fails at once: nothing is
    embedded first, and neither the progress bar nor the Cancel button stays on screen."""
    import core.embedding

    calls = []
    real = core.embedding.embed_dataset
    monkeypatch.setattr(core.embedding, "embed_dataset", lambda *a, **k: calls.append(a) or real(*a, **k))
    at = start()
    at.switch_page("views/models.py").run()
    # models that cannot load here are not among the ones offered together ("select all" is safe)
    offered = at.multiselect(key="models_pick").options
    assert FAKE in offered and "effnet-lite0" in offered and "clip-vit-b32" not in offered
    assert "clip-vit-b32 (needs weights)" in at.multiselect(key="models_pick_hub").options
    at.multiselect(key="models_pick").set_value([FAKE]).run()
    at.multiselect(key="models_pick_hub").set_value(["clip-vit-b32"]).run()
    at.button(key="models_compute").click().run()
    assert len(errors(at)) == 1 and "clip-vit-b32" in errors(at)[0]
    assert calls == []  # failed before embedding anything
    assert not at.get("progress") and not [b for b in at.button if b.key == "models_cancel"]
    assert any("No embeddings yet" in i.value for i in at.info)
