"""core.extract.ThreadTuner: the CPU engine's thread count chosen by timing (busy-core resilience)."""

from __future__ import annotations

import torch

from core import extract
from core.extract import THREAD_PROBE_BATCHES, ThreadTuner


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _run(tuner: ThreadTuner, clock: _Clock, cost, batches: int) -> list[int]:
    """Feed ``batches`` batches of 8 whose seconds per image is ``cost(threads, t)``; the thread count of each."""
    used = []
    for _ in range(batches):
        t = tuner.threads()
        used.append(t)
        secs = 8 * cost(t, clock.t)
        clock.t += secs
        tuner.after(8, secs)
    return used


def test_tuner_picks_the_faster_count_and_reprobes(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(extract, "_tuner_clock", clock)
    tuner = ThreadTuner(threads=4)
    assert tuner.candidates == [4, 2]
    busy_from = 1e9

    def cost(threads, now):  # idle: 4 threads twice as fast; busy: 4 threads collapse 10x
        if now >= busy_from:
            return 0.1 if threads == 4 else 0.01
        return 0.005 if threads == 4 else 0.01

    probe = THREAD_PROBE_BATCHES + 1
    used = _run(tuner, clock, cost, 2 * probe + 20)
    assert (
        used[: 2 * probe] == [2] * probe + [4] * probe
    )  # one probe of each, the fewer first (first batch not counted)
    assert set(used[2 * probe :]) == {4} and tuner.choice == 4
    busy_from = clock.t  # a busy process arrives: the slowdown triggers a new probe at once
    used = _run(tuner, clock, cost, THREAD_PROBE_BATCHES + 2 * probe + 10)
    assert tuner.choice == 2 and used[-10:] == [2] * 10
    assert clock.t < extract.THREAD_PROBE_EVERY_S  # re-probed because of the slowdown, not the timer
    # still busy at the timed re-probe: 2 first, then 4 is dropped after its first timed batch (10x slower)
    clock.t += extract.THREAD_PROBE_EVERY_S
    used = _run(tuner, clock, cost, probe + 2 + 5)
    assert used == [2] * probe + [4, 4] + [2] * 5 and tuner.choice == 2
    busy_from = 1e9  # the machine is idle again: the timed re-probe finds 4 threads faster
    clock.t += extract.THREAD_PROBE_EVERY_S
    _run(tuner, clock, cost, 2 * probe + 5)
    assert tuner.choice == 4 and [h[0] for h in tuner.history] == [4, 2, 2, 4]


def test_tuner_with_one_thread_does_nothing_and_close_restores_the_count():
    before = torch.get_num_threads()
    assert not ThreadTuner(threads=1).active
    tuner = ThreadTuner(threads=before)
    if tuner.active:
        torch.set_num_threads(tuner.candidates[-1])
    tuner.close()
    assert torch.get_num_threads() == before
