"""Fault matrix of issue #10 ("nothing lost, nothing leaked"): interrupts, write failures,
cache shards of another width, temporaries of killed runs, ``check --strict``.

Every case states the exact behaviour: the exit status, a message naming the file or folder
and what to do, and that nothing finished is lost (checked through the cache and a counter
of the images the model actually embedded).
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from core import extract
from core.cache import CacheCorruptionWarning, CacheWriteWarning, EmbeddingCache
from core.cli import main
from core.cli._common import Terminated
from core.datasets import load_dataset
from core.embedders import register_embedder, unregister_embedder
from core.extract import embed_images
from core.features import load_features
from core.workspace import atomic_write_with, clean_stale_temps, pid_alive, resolve_workspace, temp_prefix
from tests import _slow_embedder
from tests._embed_helpers import fake_embedder, make_images

REPO = Path(__file__).resolve().parents[1]
HOUR = 3600.0


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=30)
    assert not pid_alive(proc.pid)
    return proc.pid


def _age(path: Path, seconds: float) -> None:
    """Set the mtime of ``path`` and everything inside it ``seconds`` into the past."""
    t = time.time() - seconds
    for p in [path, *(path.rglob("*") if path.is_dir() else [])]:
        os.utime(p, (t, t), follow_symlinks=False)


@pytest.fixture
def fake_model():
    """``fault-fake`` (6-d fake embedder) in the registry for one test."""
    register_embedder(
        "fault-fake",
        lambda weights=None, workspace=None: fake_embedder("fault-fake", 6, "w-ff"),
        description="test",
        family="timm",
        availability="offline",
        dim=6,
        overwrite=True,
    )
    yield "fault-fake"
    unregister_embedder("fault-fake")


def _identity() -> str:
    return fake_embedder("fault-fake", 6, "w-ff").identity


# ============================================================================ 1. interrupts
class _Boom(RuntimeError):
    pass


# (where the exception is raised, exception type, batches finished before it)
INTERRUPTS = [
    ("forward", KeyboardInterrupt, 0),
    ("forward", KeyboardInterrupt, 2),
    ("forward", KeyboardInterrupt, 4),
    ("forward", Terminated, 2),
    ("forward", _Boom, 3),
    ("progress", KeyboardInterrupt, 0),
    ("progress", KeyboardInterrupt, 1),
    ("progress", KeyboardInterrupt, 5),
    ("progress", Terminated, 3),
    ("progress", _Boom, 2),
    ("decode", KeyboardInterrupt, 0),
    ("decode", KeyboardInterrupt, 3),
    ("decode", Terminated, 1),
]


@pytest.mark.parametrize(
    "where,exc_type,finished", INTERRUPTS, ids=[f"{w}-{e.__name__}-after{k}" for w, e, k in INTERRUPTS]
)
def test_interrupt_keeps_every_finished_row_and_the_rerun_embeds_only_the_rest(tmp_path, where, exc_type, finished):
    n, bs = 12, 2
    paths = make_images(tmp_path / "img", n)
    reference = embed_images(fake_embedder(), paths, batch_size=bs, num_workers=0).features
    emb = fake_embedder()
    cache = EmbeddingCache(tmp_path / "cache")
    calls = {"forward": 0, "progress": 0}
    forward = emb._forward

    def raising_forward(model, x):
        calls["forward"] += 1
        if calls["forward"] == finished + 1:
            raise exc_type("stop")
        return forward(model, x)

    def progress(done, total):
        calls["progress"] += 1  # call 1 reports the cached rows, call k+1 follows batch k
        if calls["progress"] == finished + 1:
            raise exc_type("stop")

    if where == "forward":
        emb._forward = raising_forward
    elif where == "decode":  # num_workers=0: decoding runs in this process, before batch `finished`
        target, real_open = paths[finished * bs], extract.open_rgb

        def open_rgb(path):
            if path == target:
                raise exc_type("stop")
            return real_open(path)

    with pytest.MonkeyPatch.context() as mp:
        if where == "decode":
            mp.setattr(extract, "open_rgb", open_rgb)
        with pytest.raises(exc_type):
            embed_images(
                emb,
                paths,
                cache=cache,
                batch_size=bs,
                num_workers=0,
                progress=progress if where == "progress" else None,
            )
    kept = finished * bs
    assert cache.count(emb.identity) == kept
    rerun_emb = fake_embedder()
    again = embed_images(rerun_emb, paths, cache=EmbeddingCache(tmp_path / "cache"), batch_size=bs, num_workers=0)
    assert (again.n_cached, again.n_computed) == (kept, n - kept)
    assert rerun_emb.model.seen == n - kept  # the model ran only on the rest
    np.testing.assert_allclose(again.features, reference, atol=1e-5, rtol=0)


class _Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


# (seconds one batch takes, flush every N rows, shards on disk after each of the 5 batches, shards at the end)
FLUSHES = [
    (0.0, 1024, [0, 0, 0, 0, 0], 1),  # fast work: one write at the end
    (1.0, 1024, [0, 0, 0, 0, 1], 1),  # 5 s reached at batch 5
    (2.0, 1024, [0, 0, 1, 1, 1], 2),  # 6 s at batch 3, then 4 s pending until the end
    (6.0, 1024, [1, 2, 3, 4, 5], 5),  # every batch is over 5 s
    (0.0, 4, [0, 1, 1, 2, 2], 3),  # the row count alone
]


@pytest.mark.parametrize("seconds_per_batch,every,during,at_end", FLUSHES)
def test_rows_are_written_every_few_seconds_of_work(tmp_path, monkeypatch, seconds_per_batch, every, during, at_end):
    clock = _Clock()
    monkeypatch.setattr(extract, "_clock", clock)
    monkeypatch.setattr(extract, "CACHE_FLUSH_EVERY", every)
    assert extract.CACHE_FLUSH_SECONDS == 5.0
    paths = make_images(tmp_path / "img", 10)
    emb = fake_embedder()
    forward = emb._forward

    def timed_forward(model, x):
        clock.t += seconds_per_batch
        return forward(model, x)

    emb._forward = timed_forward
    cache = EmbeddingCache(tmp_path / "cache")
    seen: list[int] = []

    def progress(done, total):
        if done:
            seen.append(len(list(cache.folder(emb.identity).glob("shard-*.npz"))))

    res = embed_images(emb, paths, cache=cache, batch_size=2, num_workers=0, progress=progress)
    assert seen == during
    assert len(list(cache.folder(emb.identity).glob("shard-*.npz"))) == at_end
    assert res.ok.all() and cache.count(emb.identity) == 10


def _write_sitecustomize(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text("from tests import _slow_embedder\n_slow_embedder.register()\n")
    return folder


def _counted(counter: Path) -> dict[int, int]:
    per_pid: dict[int, int] = {}
    if counter.exists():
        for line in counter.read_text().splitlines():
            pid, k = line.split()
            per_pid[int(pid)] = per_pid.get(int(pid), 0) + int(k)
    return per_pid


def _embed_cmd(data: Path, out: Path, ws: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "core.cli",
        "embed",
        str(data),
        "--models",
        _slow_embedder.NAME,
        "--batch-size",
        "2",
        "--num-workers",
        "0",
        "--workspace",
        str(ws),
        "--out",
        str(out),
        *extra,
    ]


def _env(tmp_path: Path, counter: Path, slow_s: float) -> dict[str, str]:
    site = _write_sitecustomize(tmp_path / "site")
    env = dict(os.environ)
    env.update(
        PYTHONPATH=f"{site}{os.pathsep}{REPO}",
        FAULTS_COUNTER=str(counter),
        FAULTS_SLOW_S=str(slow_s),
        HF_HUB_OFFLINE="1",
    )
    return env


# (signal, rows the model has embedded when it is sent, exit status, message)
SIGNALS = [
    (signal.SIGINT, 4, 130, "interrupted"),
    (signal.SIGINT, 20, 130, "interrupted"),
    (signal.SIGTERM, 4, 143, "terminated (SIGTERM)"),
    (signal.SIGTERM, 20, 143, "terminated (SIGTERM)"),
]


@pytest.mark.slow
@pytest.mark.parametrize("sig,after,status,message", SIGNALS, ids=[f"{s.name}-after{a}" for s, a, _, _ in SIGNALS])
def test_signal_during_cli_embed_keeps_finished_rows(tmp_path, sig, after, status, message):
    """A real ``python -m core.cli embed`` killed by a signal, then run again."""
    n, bs = 40, 2  # 20 batches of 0.15 s: the late signal still has 1.5 s of work to interrupt
    data = tmp_path / "data"
    make_images(data / "a", n // 2)
    make_images(data / "b", n // 2, start=100)
    ws, out, counter = tmp_path / "ws", tmp_path / "f.npz", tmp_path / "counter.txt"
    proc = subprocess.Popen(
        _embed_cmd(data, out, ws),
        env=_env(tmp_path, counter, 0.15),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        while sum(_counted(counter).values()) < after:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the embedder never got going"
            time.sleep(0.02)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == status, err
    assert message in err and "Traceback" not in err
    cache = EmbeddingCache(ws / "embeddings")
    assert "kept in the embedding cache" in err and str(cache.root) in err and "only the rest" in err
    assert not out.exists()
    ident = fake_embedder(_slow_embedder.NAME, _slow_embedder.DIM, _slow_embedder.WEIGHTS_ID).identity
    kept = cache.count(ident)
    computed_first = sum(_counted(counter).values())
    # every finished batch is kept; at most the batch in flight when the signal came is lost
    assert computed_first - bs <= kept <= computed_first and kept >= after - bs and kept < n
    assert not [p for p in ws.rglob("*") if p.name.endswith(".tmp")]
    counter.unlink()

    done = subprocess.run(
        _embed_cmd(data, out, ws),
        env=_env(tmp_path, counter, 0.0),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert sum(_counted(counter).values()) == n - kept  # only the rest was embedded
    assert f"{n - kept} computed, {kept} from cache" in done.stderr
    fs = load_features(out)
    assert len(fs) == n
    ref = embed_images(
        fake_embedder(_slow_embedder.NAME, 6, _slow_embedder.WEIGHTS_ID), list(fs.paths), batch_size=bs, num_workers=0
    ).features
    np.testing.assert_allclose(fs.features[_slow_embedder.NAME], ref, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_sigterm_with_no_cache_says_nothing_was_kept(tmp_path):
    data = tmp_path / "data"
    make_images(data / "a", 20)
    counter = tmp_path / "counter.txt"
    proc = subprocess.Popen(
        _embed_cmd(data, tmp_path / "f.npz", tmp_path / "ws", "--no-cache"),
        env=_env(tmp_path, counter, 0.15),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while sum(_counted(counter).values()) < 2:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143
    assert "nothing was kept (--no-cache)" in err and "run without --no-cache" in err
    assert not (tmp_path / "ws" / "embeddings").exists()


def test_sigterm_handler_is_scoped_to_the_command(fake_model, image_tree, tmp_path, monkeypatch, capsys):
    """main() turns SIGTERM into Terminated while a command runs and restores the handler after."""
    before = signal.getsignal(signal.SIGTERM)

    def embed_then_sigterm(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises at once; this never finishes
        raise AssertionError("SIGTERM did not interrupt")

    monkeypatch.setattr("core.embedding.embed_dataset", embed_then_sigterm)
    code = main(["embed", str(image_tree), "--models", fake_model, "--out", str(tmp_path / "f.npz")])
    err_text = capsys.readouterr().err
    assert code == 143 and "terminated (SIGTERM)" in err_text and "stopped before the end" in err_text
    assert signal.getsignal(signal.SIGTERM) is before


# ============================================================================ 2. write failures
def _failing_save(err: int, calls: list):
    def save(path, *args, **kwargs):
        calls.append(Path(path))
        raise OSError(err, os.strerror(err), str(path))

    return save


CACHE_ERRORS = [errno.EACCES, errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EIO]


@pytest.mark.parametrize("err", CACHE_ERRORS, ids=[errno.errorcode[e] for e in CACHE_ERRORS])
def test_unwritable_cache_warns_once_and_still_writes_the_output(
    fake_model, image_tree, tmp_path, monkeypatch, capsys, err
):
    calls: list[Path] = []
    monkeypatch.setattr("core.cache.atomic_save_npz", _failing_save(err, calls))
    monkeypatch.setattr(extract, "CACHE_FLUSH_EVERY", 2)  # several flushes would each fail
    ws, out = tmp_path / "ws", tmp_path / "f.npz"
    code = main(
        [
            "embed",
            str(image_tree),
            "--models",
            fake_model,
            "--batch-size",
            "2",
            "--workspace",
            str(ws),
            "--out",
            str(out),
        ]
    )
    err_text = capsys.readouterr().err
    assert code == 0, err_text
    assert len(calls) == 1  # one failed write, then no more attempts
    warnings_shown = [line for line in err_text.splitlines() if line.startswith("warning:")]
    assert len(warnings_shown) == 1
    line = warnings_shown[0]
    assert f"Cannot write the embedding cache in {ws.resolve() / 'embeddings'}" in line
    assert os.strerror(err) in line and "--workspace DIR" in line and "--no-cache" in line
    fs = load_features(out)
    assert len(fs) == 9 and np.isfinite(fs.features[fake_model]).all()


def test_workspace_under_a_regular_file_is_a_warning_not_a_lost_run(fake_model, image_tree, tmp_path, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    out = tmp_path / "f.npz"
    code = main(
        ["embed", str(image_tree), "--models", fake_model, "--workspace", str(blocker / "ws"), "--out", str(out)]
    )
    err_text = capsys.readouterr().err
    assert code == 0, err_text
    assert f"warning: Cannot write the embedding cache in {blocker / 'ws' / 'embeddings'}" in err_text
    assert "--workspace DIR" in err_text and "Traceback" not in err_text
    assert len(load_features(out)) == 9


def test_try_store_warning_class_and_message(tmp_path, monkeypatch):
    monkeypatch.setattr("core.cache.atomic_save_npz", _failing_save(errno.ENOSPC, []))
    cache = EmbeddingCache(tmp_path / "c")
    with pytest.warns(CacheWriteWarning, match="No space left on device") as record:
        assert cache.try_store("a" * 64, ["x"], np.ones((1, 3))) is False
        assert cache.try_store("a" * 64, ["y"], np.ones((1, 3))) is False  # no second warning
    assert len(record) == 1 and str(tmp_path / "c") in str(record[0].message)
    assert isinstance(cache.write_error, OSError) and cache.write_error.errno == errno.ENOSPC
    with pytest.raises(OSError):  # store itself still raises, for callers that want to handle it
        EmbeddingCache(tmp_path / "d").store("a" * 64, ["x"], np.ones((1, 3)))


OUTPUT_ERRORS = [errno.EACCES, errno.ENOSPC, errno.EROFS]


@pytest.mark.parametrize("err", OUTPUT_ERRORS, ids=[errno.errorcode[e] for e in OUTPUT_ERRORS])
def test_unwritable_output_exits_2_naming_it_and_keeps_the_embeddings(fake_model, image_tree, tmp_path, capsys, err):
    ws, out = tmp_path / "ws", tmp_path / "f.npz"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("core.features.atomic_save_npz", _failing_save(err, []))
        code = main(["embed", str(image_tree), "--models", fake_model, "--workspace", str(ws), "--out", str(out)])
    err_text = capsys.readouterr().err
    assert code == 2
    assert f"error: Cannot write the features file {out}: {os.strerror(err)}" in err_text
    assert "Give --out a path in a folder you can write" in err_text
    assert f"kept in the embedding cache {ws.resolve() / 'embeddings'}" in err_text
    assert "Traceback" not in err_text and not out.exists()
    assert EmbeddingCache(ws / "embeddings").count(_identity()) == 9  # nothing computed is lost
    assert (
        main(
            ["embed", str(image_tree), "--models", fake_model, "--workspace", str(ws), "--out", str(tmp_path / "g.npz")]
        )
        == 0
    )
    assert "0 computed, 9 from cache" in capsys.readouterr().err


def test_output_under_a_regular_file_exits_2(fake_model, image_tree, tmp_path, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    code = main(["embed", str(image_tree), "--models", fake_model, "--out", str(blocker / "f.npz")])
    err_text = capsys.readouterr().err
    assert code == 2 and f"Cannot write the features file {blocker / 'f.npz'}" in err_text
    assert "Traceback" not in err_text


def test_unwritable_output_with_no_cache_says_nothing_was_kept(fake_model, image_tree, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("core.features.atomic_save_npz", _failing_save(errno.ENOSPC, []))
    code = main(["embed", str(image_tree), "--models", fake_model, "--no-cache", "--out", str(tmp_path / "f.npz")])
    err_text = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err_text and "nothing was kept (--no-cache)" in err_text


# ============================================================================ 3. shard widths
WIDTHS = [(6, 4), (4, 6), (1, 1280), (6, 4, 3), (16, 8, 16)]


@pytest.mark.parametrize("widths", WIDTHS, ids=["-".join(map(str, w)) for w in WIDTHS])
def test_shards_of_other_widths_coexist_and_stay_cached(tmp_path, widths):
    """Embedders with one identity but other feature widths (another model version) share a folder."""
    paths = make_images(tmp_path / "img", 5)
    root = tmp_path / "cache"
    dims = list(dict.fromkeys(widths))
    first: dict[int, np.ndarray] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheCorruptionWarning)  # nothing may be called corrupt
        for d in widths:  # first round: a width seen before is a pure look-up
            res = embed_images(fake_embedder(dim=d), paths, cache=EmbeddingCache(root), num_workers=0)
            if d in first:
                assert (res.n_cached, res.n_computed) == (5, 0)
            else:
                assert (res.n_cached, res.n_computed) == (0, 5)
                first[d] = res.features
        for d in reversed(dims):  # later runs, fresh cache objects: every width is still cached
            emb = fake_embedder(dim=d)
            res = embed_images(emb, paths, cache=EmbeddingCache(root), num_workers=0)
            assert (res.n_cached, res.n_computed) == (5, 0) and emb.model.seen == 0
            assert res.features.shape == (5, d) and np.array_equal(res.features, first[d])
    folder = EmbeddingCache(root).folder(fake_embedder().identity)
    assert len(list(folder.glob("shard-*.npz"))) == len(dims)


def test_compaction_merges_per_width(tmp_path):
    cache = EmbeddingCache(tmp_path, max_shards=3)
    ident = "b" * 64
    for k in range(4):
        cache.store(ident, [f"id{k}"], np.full((1, 2), k, dtype=np.float32))
        cache.store(ident, [f"id{k}"], np.full((1, 5), -k, dtype=np.float32))
    fresh = EmbeddingCache(tmp_path)
    assert len(list(fresh.folder(ident).glob("shard-*.npz"))) <= 3
    for width, sign in ((2, 1), (5, -1)):
        found, feats = fresh.lookup(ident, [f"id{k}" for k in range(4)], dim=width)
        assert found.all() and feats.shape == (4, width) and feats[:, 0].tolist() == [sign * k for k in range(4)]
        assert fresh.count(ident, dim=width) == 4
    # without a width the newest one answers
    assert fresh.lookup(ident, ["id0"])[1].shape[1] in (2, 5)


def test_shard_we_may_not_read_is_skipped_not_deleted(tmp_path, monkeypatch):
    cache = EmbeddingCache(tmp_path)
    ident = "c" * 64
    cache.store(ident, ["x"], np.ones((1, 3)))
    (shard,) = cache.folder(ident).glob("shard-*.npz")
    real_load = np.load

    def load(path, *args, **kwargs):
        if Path(path) == shard:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(np, "load", load)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheCorruptionWarning)
        found, _ = EmbeddingCache(tmp_path).lookup(ident, ["x"])
    assert not found.any() and shard.exists()
    monkeypatch.setattr(np, "load", real_load)
    assert EmbeddingCache(tmp_path).lookup(ident, ["x"])[0].all()


# ============================================================================ 4. stale temporaries
def _zip_of_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "zsrc" / "set"
    make_images(tree / "cat", 2)
    make_images(tree / "dog", 2, start=10)
    archive = tmp_path / "set.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(tree.rglob("*.png")):
            zf.write(p, p.relative_to(tree.parent).as_posix())
    return archive


def _make_temp(folder: Path, name: str, kind: str, age: float, fresh_inside: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if kind == "dir":
        (path / "cat").mkdir(parents=True)
        (path / "cat" / "half.png").write_bytes(b"\x89PNG" + b"\0" * 1000)
    elif kind == "link":
        (folder / "target.txt").write_text("keep me")
        path.symlink_to(folder / "target.txt")
    else:
        path.write_bytes(b"partial")
    _age(path, age)
    if fresh_inside:
        os.utime(path / "cat" / "half.png")  # a live writer is still adding to it
    return path


# (folder, kind, name with {pid} and {rand}, pid: dead / alive, age in s, a fresh file inside, removed?)
DEAD, ALIVE = "dead", "alive"
TEMPS = [
    ("archives", "dir", ".set-0123456789abcdef.p{pid}.{rand}", DEAD, 2 * HOUR, False, True),
    ("archives", "dir", ".set-0123456789abcdef.p{pid}.{rand}", ALIVE, 2 * HOUR, False, False),
    ("archives", "dir", ".set-0123456789abcdef.p{pid}.{rand}", DEAD, 60.0, False, False),
    ("archives", "dir", ".set-0123456789abcdef.{rand}", None, 2 * HOUR, False, True),  # before pids
    ("archives", "dir", ".set-0123456789abcdef.{rand}", None, 2 * HOUR, True, False),  # still written to
    ("archives", "dir", "set-0123456789abcdef", None, 2 * HOUR, False, False),  # a finished extraction
    ("archives", "link", ".set-0123456789abcdef.p{pid}.{rand}", DEAD, 2 * HOUR, False, False),
    ("root", "file", ".settings.json.p{pid}.{rand}.tmp", DEAD, 2 * HOUR, False, True),
    ("root", "file", ".notes", None, 2 * HOUR, False, False),  # someone's hidden file
    ("root", "file", "draft.abcdefgh.tmp", None, 2 * HOUR, False, False),  # not hidden: not ours
    ("weights", "file", ".effnet.safetensors.p{pid}.{rand}.tmp", DEAD, 2 * HOUR, False, True),
    ("weights", "file", ".effnet.safetensors.{rand}.tmp", None, 2 * HOUR, False, True),
    ("cache", "file", ".shard-1-aa.npz.p{pid}.{rand}.tmp", DEAD, 2 * HOUR, False, True),
    ("cache", "file", ".shard-1-aa.npz.p{pid}.{rand}.tmp", ALIVE, 2 * HOUR, False, False),
    ("cache", "file", ".shard-1-aa.npz.{rand}.tmp", None, 2 * HOUR, False, True),
    ("cache", "file", ".meta.json.p{pid}.{rand}.tmp", DEAD, 10.0, False, False),
]


@pytest.mark.parametrize(
    "where,kind,pattern,pid_state,age,fresh_inside,removed",
    TEMPS,
    ids=[
        f"{i:02d}-{t[0]}-{t[1]}-{t[3] or 'nopid'}-{int(t[4])}s{'-busy' if t[5] else ''}-{'removed' if t[6] else 'kept'}"
        for i, t in enumerate(TEMPS)
    ],
)
def test_stale_temporaries_of_killed_runs_are_removed_by_the_next_run(
    tmp_path, where, kind, pattern, pid_state, age, fresh_inside, removed
):
    ws = tmp_path / "ws"
    pid = _dead_pid() if pid_state == DEAD else os.getpid()
    name = pattern.format(pid=pid, rand="k3x_9q0z")
    emb = fake_embedder()
    folder = {
        "archives": ws / "archives",
        "root": ws,
        "weights": ws / "weights",
        "cache": ws / "embeddings" / emb.identity,
    }[where]
    temp = _make_temp(folder, name, kind, age, fresh_inside)
    # the entry point of the next run
    if where == "archives":
        ds = load_dataset(_zip_of_tree(tmp_path), workspace=ws)
        assert len(ds) == 4
    elif where == "cache":
        paths = make_images(tmp_path / "img", 3)
        res = embed_images(emb, paths, cache=EmbeddingCache.in_workspace(ws), num_workers=0)
        assert res.ok.all()
    else:
        resolve_workspace(ws)
    assert os.path.lexists(temp) is not removed
    if kind == "link":
        assert (folder / "target.txt").read_text() == "keep me"


def test_killed_unzip_leaves_nothing_behind_for_the_next_load(tmp_path):
    """A process that dies half-way through extracting (its temp folder named as temp_prefix makes it)."""
    ws = tmp_path / "ws"
    archives = ws / "archives"
    archives.mkdir(parents=True)
    script = (
        "import os, sys, tempfile; from pathlib import Path; from core.workspace import temp_prefix;"
        f"t = Path(tempfile.mkdtemp(prefix=temp_prefix('set-0123456789abcdef'), dir={str(archives)!r}));"
        "(t / 'cat').mkdir(); (t / 'cat' / 'x.png').write_bytes(b'0' * 4096); print(t); os._exit(9)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    out, _ = proc.communicate(timeout=60)
    left = Path(out.strip())
    assert proc.returncode == 9 and left.is_dir() and f".p{proc.pid}." in left.name
    assert clean_stale_temps(archives) == []  # fresh: kept, whatever its pid says
    _age(left, 2 * HOUR)
    load_dataset(_zip_of_tree(tmp_path), workspace=ws)
    assert not left.exists()
    (finished,) = archives.iterdir()  # only the extraction of this load is left
    assert finished.name.startswith("set-") and (finished / ".complete").is_file()


def test_output_folder_is_cleaned_of_that_file_only(tmp_path):
    dead = _dead_pid()
    mine = _make_temp(tmp_path, f".f.npz.p{dead}.abcdefgh.tmp", "file", 2 * HOUR)
    other = _make_temp(tmp_path, f".g.npz.p{dead}.abcdefgh.tmp", "file", 2 * HOUR)
    assert clean_stale_temps(tmp_path, name="f.npz") == [mine]
    assert not mine.exists() and other.exists()


def test_atomic_writes_name_their_temporaries_with_the_pid(tmp_path):
    seen = []

    def writer(fh):
        seen.extend(p.name for p in tmp_path.iterdir())
        fh.write(b"x")

    atomic_write_with(tmp_path / "out.bin", writer)
    (name,) = seen
    assert name.startswith(temp_prefix("out.bin")) and name.endswith(".tmp") and f".p{os.getpid()}." in name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


# ============================================================================ 5. check --strict
def _with_problem(tree: Path, problem: str) -> Path:
    if problem == "not_an_image":
        (tree / "cat" / "notes.txt").write_text("x")
    elif problem == "empty_file":
        (tree / "dog" / "blank.png").write_bytes(b"")
    elif problem == "duplicate_content":  # a warning: the image is kept
        (tree / "fox" / "copy.png").write_bytes((tree / "fox" / "fox0.png").read_bytes())
    elif problem == "missing_file":  # a manifest row naming a file that is not there
        rows = ["path,label"] + [
            f"{p.relative_to(tree).as_posix()},{p.parent.name}" for p in sorted(tree.rglob("*.png"))
        ]
        rows.append("cat/gone.png,cat")
        (tree / "manifest.csv").write_text("\n".join(rows) + "\n")
    return tree


# the file each problem names in the report
PROBLEM_FILE = {
    "not_an_image": "notes.txt",
    "empty_file": "blank.png",
    "missing_file": "manifest.csv line 11",
    "duplicate_content": "copy.png",
}
# (problem added, --strict, exit status)
STRICT = [
    (None, True, 0),
    ("not_an_image", True, 1),
    ("not_an_image", False, 0),
    ("empty_file", True, 1),
    ("missing_file", True, 1),
    ("duplicate_content", True, 0),
]


@pytest.mark.parametrize(
    "problem,strict,status", STRICT, ids=[f"{p or 'clean'}-{'strict' if s else 'plain'}" for p, s, _ in STRICT]
)
def test_check_strict_exit_status(image_tree, capsys, problem, strict, status):
    data = _with_problem(image_tree, problem) if problem else image_tree
    code = main(["check", str(data), *(["--strict"] if strict else [])])
    err_text = capsys.readouterr().err
    assert code == status
    if status == 1:
        assert f"--strict: 1 file(s) or row(s) of {data} were skipped" in err_text
        assert "run without --strict" in err_text
    else:
        assert "--strict:" not in err_text
    if problem:
        assert PROBLEM_FILE[problem] in err_text  # the problem report names the file either way


def test_check_help_documents_strict(capsys):
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--strict" in text and "exit with status 1 when any file or row was skipped" in text


def test_an_extraction_folder_carries_the_pid_so_a_killed_unzip_is_cleaned(tmp_path, monkeypatch):
    """The unzip's temporary folder is named with the writer's pid: one left by a dead process
    is removed by the next run, whatever its age; this process's own is kept."""
    import tempfile

    from core.datasets.archive import extract_archive

    seen = []
    real = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **k: seen.append(k.get("prefix")) or real(*a, **k))
    ws = tmp_path / "ws"
    extract_archive(_zip_of_tree(tmp_path), workspace=ws)
    assert seen and all(p and f".p{os.getpid()}." in p for p in seen)
