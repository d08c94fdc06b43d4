"""`gdsl warmup` (issue 30): after it, a new process finds every kernel it calls in the cache.

Checked through numba's compile events in a second process that shares the warmed cache
directory, against a process with a cold one (which must compile, or the check proves nothing).
The model is a small RBM of its own name, so no other test has compiled it."""
from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys

MODEL = """model warm_rbm(nv = 6, nh = 3) {
    visible v[nv]: binary
    latent  h[nh]: binary
    param W[nv, nh] ~ normal(0, 0.1)
    param b[nv]
    param c[nh]
    energy -(v @ W @ h) - b @ v - c @ h
}
"""

COUNT = r"""
import sys
from numba.core import event
import gdsl
m = gdsl.load(sys.argv[1], seed=1)
with event.install_recorder("numba:compile") as rec:
    m.sample(3, steps=2)
print(sum(1 for _, ev in rec.buffer if ev.is_start))
"""


def run(args, cache):
    env = dict(os.environ, GDSL_CACHE_DIR=str(cache))
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=300)


def test_a_warmed_cache_compiles_nothing_later(tmp_path):
    model = tmp_path / "warm_rbm.gdl"
    model.write_text(MODEL)
    warm = run(["-m", "gdsl", "warmup", str(model), "--only", "sample"], tmp_path / "warm")
    assert warm.returncode == 0, warm.stderr
    assert "sample" in warm.stdout and "compiled" in warm.stdout
    after = run(["-c", COUNT, str(model)], tmp_path / "warm")
    assert after.returncode == 0, after.stderr
    assert int(after.stdout.split()[-1]) == 0
    cold = run(["-c", COUNT, str(model)], tmp_path / "cold")
    assert cold.returncode == 0, cold.stderr
    assert int(cold.stdout.split()[-1]) > 0  # the same measure sees compilation when there is some


def test_warmup_says_what_it_needs():
    p = subprocess.run([sys.executable, "-m", "gdsl", "warmup", "rbm", "--only", "nothing"], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2 and "unknown kind of work nothing" in p.stderr and "Traceback" not in p.stderr


def test_warmup_of_a_sequence_model_compiles_its_sampler_and_learner():
    """A model with a time axis is warmed on sequences (two of three steps), and the work that
    does not apply to it says so instead of failing."""
    from gdsl.warmup import warm_up

    done = dict((work, outcome) for work, outcome, _ in
                warm_up(str(Path(__file__).resolve().parent.parent / "models" / "rnn_nade.gdl"), report=None))
    assert done["sample"] == done["fit"] == done["log-prob"] == "compiled"
    assert done["free-energy"].startswith("does not apply: rnn_nade unfolds in time")
