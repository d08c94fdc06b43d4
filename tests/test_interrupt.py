"""A real Ctrl-C (SIGINT) during `fit`, in a subprocess: the last finished epoch is kept and
checkpointed, and resuming from that checkpoint is bit-identical to a run never interrupted.
(tests/test_learning.py simulates the interrupt in-process; this sends the signal.)"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gdsl

ROOT = Path(__file__).resolve().parents[1]
RBM = str(ROOT / "models" / "rbm.gdl")
FIT = dict(method="pcd", lr=0.1, momentum=0.5, weight_decay=0.01, batch_size=10, chains=15, progress=False)

CHILD = r"""
import json, signal, sys, time
# Ctrl-C as in a terminal even when the test runner was started in the background, where the
# shell leaves SIGINT ignored for its children
signal.signal(signal.SIGINT, signal.default_int_handler)
import numpy as np
import gdsl

path, out = sys.argv[1], sys.argv[2]
data = {"v": (np.random.default_rng(0).random((60, 4)) < 0.5).astype(np.float64)}
m = gdsl.load(%(rbm)r, seed=5, nv=4, nh=3)

def slow(model, record):
    print("epoch", record["epoch"], flush=True)
    time.sleep(0.05)  # so the signal arrives while the fit is running

hist = m.fit(data, epochs=100000, checkpoint=path, checkpoint_every=1000, callback=slow, **%(fit)r)
np.savez(out, **{k: np.asarray(v) for k, v in m.params.items()})
print("returned", len(hist), flush=True)
"""


@pytest.mark.skipif(os.name != "posix", reason="sends SIGINT")
def test_sigint_during_fit_keeps_the_last_epoch_and_resume_is_bit_identical(tmp_path):
    ck, out = tmp_path / "ck.npz", tmp_path / "params.npz"
    script = CHILD % {"rbm": RBM, "fit": FIT}
    child = subprocess.Popen([sys.executable, "-c", script, str(ck), str(out)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    for line in child.stdout:  # wait until a few epochs are done
        if line.strip() == "epoch 4":
            child.send_signal(signal.SIGINT)
            break
    rest, err = child.communicate(timeout=300)
    assert child.returncode == 0, err
    returned = int(rest.split("returned")[-1])
    assert returned >= 4 and "interrupted after epoch" in err

    data = {"v": (np.random.default_rng(0).random((60, 4)) < 0.5).astype(np.float64)}
    kept = dict(np.load(out))
    epochs = returned + 3
    reference = gdsl.load(RBM, seed=5, nv=4, nh=3)
    ref_hist = reference.fit(data, epochs=epochs, **FIT)
    # the interrupted run kept exactly the parameters of its last finished epoch
    prefix = gdsl.load(RBM, seed=5, nv=4, nh=3)
    prefix.fit(data, epochs=returned, **FIT)
    assert all(np.array_equal(kept[k], prefix.params[k]) for k in kept)
    # and its checkpoint resumes to the uninterrupted result, bit for bit
    resumed = gdsl.load(RBM, seed=999, nv=4, nh=3)
    hist = resumed.fit(data, epochs=epochs, resume=ck, **FIT)
    assert json.dumps(hist, sort_keys=True, default=float) == json.dumps(ref_hist, sort_keys=True, default=float)
    assert all(np.array_equal(resumed.params[k], reference.params[k]) for k in reference.params)
