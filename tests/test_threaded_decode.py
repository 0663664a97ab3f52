"""Decoding in threads of the engine's process (core.extract.ThreadedBatches): the batches of a
sequential decode, in order, a bounded number ahead, stopped when the consumer stops."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from core.cli import main
from core.extract import ExtractionCancelled, ThreadedBatches, default_decode_threads, embed_images, make_loader
from tests._embed_helpers import fake_embedder, make_images


def _mixed_paths(tmp_path: Path) -> list[str]:
    good = make_images(tmp_path / "good", 11, size=(40, 30), fmt="jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    return good[:3] + [str(bad)] + good[3:7] + [str(tmp_path / "missing.png")] + good[7:]


def _decode_threads_alive() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("coreset-decode")]


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_threaded_batches_equal_a_sequential_decode(tmp_path, threads, batch_size):
    paths = _mixed_paths(tmp_path)
    tf = fake_embedder().transform
    ref = list(make_loader(paths, tf, batch_size, 0, torch.device("cpu")))  # DataLoader in this thread
    got = list(ThreadedBatches(paths, tf, batch_size, threads))
    assert len(got) == len(ref) == len(ThreadedBatches(paths, tf, batch_size, threads))
    for (i_ref, x_ref, bad_ref), (i_got, x_got, bad_got) in zip(ref, got):
        assert i_got.tolist() == i_ref.tolist()
        assert (x_ref is None) == (x_got is None)
        if x_ref is not None:
            assert torch.equal(x_got, x_ref)
        assert [j for j, _ in bad_got] == [j for j, _ in bad_ref] and all(r for _, r in bad_got)
    assert not _decode_threads_alive()


class _Recording:
    """Stands in for the decoded files: records which indices were decoded, slowly."""

    def __init__(self, n: int) -> None:
        self.n, self.started, self.lock = n, [], threading.Lock()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        with self.lock:
            self.started.append(i)
        time.sleep(0.002)
        return i, torch.zeros(3, 2, 2), None


def test_threaded_batches_decode_a_bounded_window_ahead_and_stop_when_closed():
    tb = ThreadedBatches([], lambda im: im, batch_size=4, threads=2, ahead_batches=2)
    tb.files = _Recording(400)  # type: ignore[assignment]
    window = 2 + 2 * 4
    it = iter(tb)
    consumed = 0
    for _ in range(5):
        idx, _xs, _bad = next(it)
        consumed += len(idx)
        deadline = time.monotonic() + 5.0  # a slow model: the threads run as far ahead as they may
        while max(tb.files.started) < consumed + window - 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.02)
        assert max(tb.files.started) == consumed + window - 1  # they decode ahead, never beyond the window
    it.close()  # the consumer stops (an error, a cancel): what was not started never is
    seen = len(tb.files.started)
    time.sleep(0.05)
    assert len(tb.files.started) == seen < 400
    assert not _decode_threads_alive()


def test_engine_decodes_in_a_thread_by_default_with_the_same_features(tmp_path):
    paths = _mixed_paths(tmp_path)
    assert default_decode_threads(0) == 1 and default_decode_threads(2) == 0
    emb = fake_embedder()
    between = embed_images(emb, paths, batch_size=3, num_workers=0, decode_threads=0)
    threaded = embed_images(emb, paths, batch_size=3, num_workers=0)  # the default: one thread
    assert np.array_equal(threaded.ok, between.ok) and between.ok.sum() == 11
    assert np.array_equal(threaded.features[threaded.ok], between.features[between.ok])
    assert [p for p, _ in threaded.problems] == [p for p, _ in between.problems]


def test_a_cancelled_run_leaves_no_decoding_thread(tmp_path):
    paths = make_images(tmp_path, 40)
    polls = iter(range(1000))
    with pytest.raises(ExtractionCancelled):
        embed_images(fake_embedder(), paths, batch_size=2, decode_threads=2, cancel=lambda: next(polls) >= 3)
    assert not _decode_threads_alive()


def test_cli_refuses_a_negative_decode_thread_count(image_tree, tmp_path, capsys):
    out = tmp_path / "f.npz"
    assert (
        main(["embed", str(image_tree), "--models", "effnet-lite0", "--decode-threads", "-1", "--out", str(out)]) == 2
    )
    assert "--decode-threads must be 0 or more" in capsys.readouterr().err and not out.exists()
