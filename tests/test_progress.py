"""The text progress bar: its estimate of the time left, including for a resumed fit."""
import io

from gdsl.runtime import progress
from gdsl.runtime.progress import ProgressBar


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _last_eta(stream):
    line = stream.getvalue().split("\r")[-1]
    return float(line.rsplit("eta ", 1)[1].rstrip("s\n"))


def test_eta_is_time_per_step_times_steps_left(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    out = io.StringIO()
    bar = ProgressBar(10, "work", stream=out)
    clock.now = 8.0
    bar(4)  # 2 s per step, 6 steps left
    assert _last_eta(out) == 12.0


def test_resumed_bar_counts_only_its_own_steps(monkeypatch):
    # a fit resumed at epoch 336 of 500 whose first epoch here took 30 s has 163 x 30 s left, not
    # the 15 s that counting the 336 earlier epochs as instantaneous would give
    clock = _Clock()
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    out = io.StringIO()
    bar = ProgressBar(500, "training", stream=out, first=336)
    clock.now = 30.0
    bar(337)
    assert _last_eta(out) == 163 * 30.0
    clock.now = 60.0
    bar(500)
    assert out.getvalue().endswith("500/500 60.0s eta 0.0s\n")
