"""Progress bars (issue 23 item 6): tqdm draws them; the runtime's adapter passes what it knows.

The time left must count only the steps this bar has seen: a fit resumed at epoch 336 of 500
whose first epoch here took 30 s has 163 x 30 s left, not the 15 s that counting the 336
earlier epochs as instantaneous would give."""
import io

import numpy as np

from conftest import load_model
from gdsl.runtime.progress import ProgressBar


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _bar(total, first=0):
    out = io.StringIO()
    bar = ProgressBar(total, "training", stream=out, first=first)
    clock = _Clock()
    bar._bar._time = clock  # tqdm reads its clock through this attribute
    bar._bar.start_t = bar._bar.last_print_t = clock.now
    return bar, clock, out


def test_time_left_is_time_per_step_times_steps_left():
    bar, clock, out = _bar(10)
    clock.now += 8.0
    bar._bar.mininterval = 0.0
    bar(4)  # 2 s per step, 6 steps left
    assert out.getvalue().endswith("4/10 [00:08<00:12,  2.00s/it]")


def test_resumed_bar_counts_only_its_own_steps():
    bar, clock, out = _bar(500, first=336)
    clock.now += 30.0
    bar(337)
    assert out.getvalue().endswith("337/500 [00:30<1:21:30, 30.00s/it]")  # 163 x 30 s
    bar.note("loss=1.5")
    clock.now += 30.0
    bar(500)  # the last step closes the bar, with the metrics after it
    text = out.getvalue()
    assert "500/500" in text and "loss=1.5" in text and text.endswith("\n")


def test_fit_is_quiet_unless_asked(capsys):
    m = load_model("rbm")
    data = {"v": (np.random.default_rng(0).random((20, 4)) < 0.5).astype(np.float32)}
    m.fit(data, epochs=2, progress=False)
    assert capsys.readouterr().err == ""
    m.fit(data, epochs=2, progress=True)
    err = capsys.readouterr().err
    assert "training" in err and "2/2" in err
