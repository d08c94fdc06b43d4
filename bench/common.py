"""Shared by the benchmark scripts. Imported before numpy: BLAS threads are fixed at load time."""
from __future__ import annotations

import os
import statistics
import time


# BLAS, OpenMP, MKL, numba, and gdsl's own thread count (m.threads: chains and minibatch rows
# cut over threads); all set to the same number so that both sides of a ratio use as many
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS", "GDSL_THREADS")


def set_blas_threads(argv) -> str:
    """Pin BLAS (and numba) threads from `--threads N` (default 1) before numpy is imported,
    so both sides of a ratio run with the same setting."""
    threads = argv[argv.index("--threads") + 1] if "--threads" in argv else "1"
    for var in THREAD_VARS:
        os.environ.setdefault(var, threads)
    return os.environ["OPENBLAS_NUM_THREADS"]


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# ---------------------------------------------------------------- runs in child processes


def all_cores() -> int:
    """The cores this process may run on (the affinity mask where there is one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def have_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def run_child(cmd: list[str], threads: int) -> dict:
    """Run `cmd` in a fresh process with every thread-count variable set to `threads` before it
    starts (so BLAS, OpenMP and numba pools are sized at their load), and return the JSON object
    it prints on its last line of stdout."""
    import json
    import subprocess

    env = dict(os.environ)
    for var in THREAD_VARS:
        env[var] = str(threads)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def alternate(sides, thread_counts, rounds: int, run):
    """Call run(side, threads) for every side and thread count, `rounds` times, one process at a
    time: within a round the thread counts in turn, and for each the sides one after the other,
    the sides' order reversed every other round (so neither side always runs first). Returns
    {(side, threads): [result of each round]}."""
    out = {(s, n): [] for s in sides for n in thread_counts}
    for r in range(rounds):
        for n in thread_counts:
            for side in (sides if r % 2 == 0 else list(reversed(sides))):
                out[side, n].append(run(side, n))
    return out


def versus_table(times, thread_counts, unit: str, scale: float, ours="gdsl", theirs="torch",
                 theirs_name="PyTorch") -> dict:
    """Print the side-by-side table from {(side, threads): [per-run median seconds, one per round]}
    and return {threads: (ours median, theirs median, median of the per-round ratios, per-round
    ratios)}. A round's ratio compares two neighbouring runs, so a slow spell of the machine
    slows both; the median of those ratios is the figure the targets are judged on."""
    summary = {}
    print(f"  | threads | {ours} median | {theirs_name} median | {theirs_name} / {ours}: median of per-round "
          f"ratios (ratio of medians) | per-round ratios |")
    print("  | --- | --- | --- | --- | --- |")
    for n in thread_counts:
        a, b = times[ours, n], times[theirs, n]
        ma, mb = statistics.median(a), statistics.median(b)
        pairs = [y / x for x, y in zip(a, b)]
        summary[n] = (ma, mb, statistics.median(pairs), pairs)
        runs = lambda xs: ", ".join(f"{x * scale:.3f}" for x in xs)  # noqa: E731
        print(f"  | {n} | {ma * scale:.3f} {unit} (runs {runs(a)}) | {mb * scale:.3f} {unit} (runs {runs(b)}) | "
              f"**{statistics.median(pairs):.2f}x** ({mb / ma:.2f}x) | {', '.join(f'{p:.2f}' for p in pairs)} |")
    return summary


def verdict(ok: bool, text: str) -> None:
    print(f"  {'PASS' if ok else 'FAIL'}: {text}")


def load_binarised_mnist(path, n_train: int, n_valid: int, log) -> tuple:
    """(train, valid, test) float64 from ../shared/data/binarized_mnist.npz (nothing is
    downloaded: a missing file ends the bench with where to look)."""
    import sys

    import numpy as np

    if not path.exists():
        sys.exit(f"no data at {path} (see ../shared/data/README.md; nothing is downloaded)")
    with np.load(path) as f:
        train = f["train"][:n_train].astype(np.float64)
        valid = f["valid"][:n_valid].astype(np.float64)
        test = f["test"].astype(np.float64)
    log(f"binarised MNIST: {len(train)} training, {len(valid)} validation, {len(test)} test images; "
        f"load average {load_average()}")
    return train, valid, test
