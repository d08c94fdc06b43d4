"""Sampler speed, measured side by side with what it competes against.

    python bench/gibbs.py            # all three targets
    python bench/gibbs.py --quick    # fewer repetitions

1. One block-Gibbs sweep of the 784x500 RBM over 100 chains (float32) against
   the two matrix products a sweep needs (numpy/BLAS, same process): target <= 1.5x.
2. Site updates per second on a 256x256 Ising lattice: target >= 50 million per core; and over
   64 chains on one thread and on every core, for the Ising model and for a spin glass with a
   coupling per bond (issue 24: >= 250 million per second on 2 cores); and the Ising lattice by
   multi-spin coding, 64 chains a word, against a numpy checkerboard heat bath (>= 1 billion
   per second on 2 cores).
3. Cold `gdsl compile` + first sample of models/rbm.gdl (< 10 s) and loading it
   again from the cache (< 1 s), each in a fresh process.
4. Side by side with PyTorch (CPU; needs torch, the `bench` extra): the same sweep of the
   784x500 RBM over 100 chains, float32 (block v given h, then block h given v: a product,
   a bias, a sigmoid and a Bernoulli draw each), written in PyTorch in bench/torch_rbm.py.
   Each run is a fresh process with its thread count set before it starts (1 and all
   cores), runs alternating between the sides; gdsl's sweep is timed in its kernel as in 1,
   PyTorch's as its loop of sweeps. Both samplers are first checked on a small RBM against
   exact marginals (bench/rbm_check.py). Printed: medians, ratios, and the issue's PCD-epoch
   targets applied to the sweep (>= 2x faster than PyTorch at equal threads; >= 1.6x from
   the second core) as PASS/FAIL lines.

    python bench/gibbs.py --only torch --quick     # one round of runs, 5 timings each
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from common import median_time, set_blas_threads  # noqa: E402  (bench/ is on sys.path when run as a script)

set_blas_threads(sys.argv)

import numpy as np  # noqa: E402

import gdsl  # noqa: E402


def rbm_sweep(repeats: int) -> None:
    m = gdsl.load(ROOT / "models" / "rbm.gdl", seed=0)
    n, steps = 100, 20
    st = m.random_state(n)
    masks = m._masks({}, n)
    args = m.kernel_args(st)
    gibbs = m.KERNELS["gibbs"]
    mask_args = [masks[g] for g in m.group_names]
    rng = m._streams(n)
    gibbs(*args, *mask_args, True, True, rng, 1)  # compile

    sweep = median_time(lambda: gibbs(*args, *mask_args, True, True, rng, steps), repeats) / steps
    api = median_time(lambda: m.gibbs(st, steps=1), repeats)

    W = m.params["W"]
    V = st["v"]
    H = st["h"]

    def products():
        np.dot(V, W)
        np.dot(H, W.T)

    products()
    mm = median_time(lambda: [products() for _ in range(steps)], repeats) / steps
    print(f"RBM 784x500, 100 chains, float32: sweep {sweep * 1e3:.3f} ms (in-kernel median), "
          f"two matrix products {mm * 1e3:.3f} ms -> ratio {sweep / mm:.2f} (target <= 1.5)")
    print(f"  one sweep through the Python API m.gibbs(state, 1): {api * 1e3:.3f} ms "
          f"(ratio {api / mm:.2f}, includes input validation and copies)")


# an Edwards-Anderson spin glass: a coupling per bond (the "general couplings" of issue 24)
SPIN_GLASS = """model spin_glass(n = 256, m = 256) {
    visible s[n, m]: spin
    param Jv[n, m]
    param Jh[n, m]
    energy -sum[i, j](Jv[i, j] * s[i, j] * s[i + 1, j]) - sum[i, j](Jh[i, j] * s[i, j] * s[i, j + 1])
}
"""
LATTICE_CHAINS = 64  # two parts of 32 rows (runtime/rows.MIN_ROWS) on two threads


def lattice(repeats: int) -> None:
    m = gdsl.load(ROOT / "models" / "ising.gdl", n=256, m=256, seed=0)
    st = m.random_state(1)
    masks = m._masks({}, 1)
    gibbs = m.KERNELS["gibbs"]
    rng = m._streams(1)
    args = m.kernel_args(st)
    gibbs(*args, masks["s"], True, rng, 1)
    steps = 50
    t = median_time(lambda: gibbs(*args, masks["s"], True, rng, steps), repeats)
    rate = 256 * 256 * steps / t
    print(f"Ising 256x256, 1 chain: {rate / 1e6:.1f} million site updates/s on one core (target >= 50)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spin_glass.gdl"
        path.write_text(SPIN_GLASS)
        glass = gdsl.load(path, seed=0)
        r = np.random.default_rng(0)
        glass.params = {name: r.normal(0.0, 1.0, (256, 256)).astype(glass.dtype) for name in ("Jv", "Jh")}
        for label, model in (("Ising (uniform couplings)", m), ("spin glass (a coupling per bond)", glass)):
            lattice_threads(label, model, repeats)
    lattice_multispin(m, repeats)


def numpy_heat_bath(x: np.ndarray, J: float, field: float, rng, steps: int) -> None:
    """The checkerboard heat bath of the Ising model as it is written in numpy: x (chains, n, m) of
    +-1 in float32, free boundaries, every site of one colour at once."""
    n, m = x.shape[1:]
    colour = (np.add.outer(np.arange(n), np.arange(m)) % 2)[None]
    for _ in range(steps):
        for c in (0, 1):
            nb = np.zeros_like(x)
            nb[:, 1:] += x[:, :-1]
            nb[:, :-1] += x[:, 1:]
            nb[:, :, 1:] += x[:, :, :-1]
            nb[:, :, :-1] += x[:, :, 1:]
            up = rng.random(x.shape, dtype=np.float32) * (1.0 + np.exp(-2.0 * (J * nb + field))) < 1.0
            x[...] = np.where(colour == c, np.where(up, 1.0, -1.0), x)


def lattice_multispin(m, repeats: int) -> None:
    """Multi-spin coding (m.sample(..., multispin=True)): 64 chains a word, one word per thread, against
    the numpy checkerboard heat bath over the same chains in the same process."""
    from common import all_cores

    J, field = float(m.params["J"]), float(m.params["field"])
    lat = m._multispin()
    steps = 20
    rates = {}
    for threads in sorted({1, all_cores()}):
        m.threads = threads
        chains = 64 * threads
        packed, rng = lat.start(m.random_state(chains))
        lat.run(packed, rng, 1)
        rates[threads] = 256 * 256 * chains * steps / median_time(lambda: lat.run(packed, rng, steps),
                                                                  max(3, repeats // 4))
    x = m.random_state(64)["s"].astype(np.float32)
    r = np.random.default_rng(0)
    numpy_rate = 256 * 256 * 64 * 2 / median_time(lambda: numpy_heat_bath(x, J, field, r, 2), 3)
    top = max(rates)
    line = ", ".join(f"{rate / 1e6:.0f} million/s on {t} thread{'s' if t > 1 else ''} ({64 * t} chains)"
                     for t, rate in rates.items())
    print(f"Ising 256x256 by multi-spin coding: {line}; numpy checkerboard heat bath over 64 chains "
          f"{numpy_rate / 1e6:.0f} million/s (ratio {rates[1] / numpy_rate:.0f}x on one thread)"
          + (f"; target >= 1000 million/s on 2 cores: {'PASS' if rates[top] >= 1e9 else 'FAIL'}" if top > 1 else ""))


def lattice_threads(label: str, m, repeats: int) -> None:
    """Site updates per second over LATTICE_CHAINS chains, on one thread and on every core (the
    kernel called on each part's rows, as m.gibbs does, without copying the state)."""
    from gdsl.runtime.rows import in_parts

    from common import all_cores

    st = m.random_state(LATTICE_CHAINS)
    masks = m._masks({}, LATTICE_CHAINS)["s"]
    rng = m._streams(LATTICE_CHAINS)
    gibbs = m.KERNELS["gibbs"]
    steps = 5

    def sweep(threads):
        in_parts(lambda a, b: gibbs(*m.kernel_args({"s": st["s"][a:b]}), masks[a:b], True, rng[a:b], steps),
                 LATTICE_CHAINS, threads)

    rates = {}
    for threads in sorted({1, all_cores()}):
        sweep(threads)
        rates[threads] = 256 * 256 * LATTICE_CHAINS * steps / median_time(lambda: sweep(threads), max(3, repeats // 4))
    line = ", ".join(f"{rate / 1e6:.0f} million/s on {t} thread{'s' if t > 1 else ''}" for t, rate in rates.items())
    top = max(rates)
    print(f"{label} 256x256, {LATTICE_CHAINS} chains: {line}"
          + (f" ({rates[top] / rates[1]:.2f}x); target >= 250 million/s on 2 cores: "
             f"{'PASS' if rates[top] >= 250e6 else 'FAIL'}" if top > 1 else ""))
    return rates


def cold_and_warm() -> None:
    code = ("import time; t=time.perf_counter(); import gdsl; "
            "m = gdsl.load({path!r}, seed=0); s = m.sample(10, steps=1); "
            "print(f'{{time.perf_counter()-t:.3f}}')")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, GDSL_CACHE_DIR=cache)
        cmd = [sys.executable, "-c", code.format(path=str(ROOT / "models" / "rbm.gdl"))]
        cold = float(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout)
        warm = [float(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout)
                for _ in range(3)]
    print(f"models/rbm.gdl: cold compile + first sample {cold:.2f} s (target < 10); "
          f"from the cache {statistics.median(warm):.2f} s median of 3 (target < 1), fresh processes")


# ---------------------------------------------------------------- side by side with PyTorch, one process per run
TORCH_WORKER = ROOT / "bench" / "torch_rbm.py"
VS_CHAINS, VS_STEPS = 100, 20


def gdsl_child(args) -> None:
    """The gdsl side of versus_torch: `gibbs.py --child gdsl --threads N --repeats R` in a process of
    its own. Prints one JSON line: R timings of one sweep (VS_STEPS sweeps per kernel call, as in
    rbm_sweep) and, with --check, the small-model check through the Python API (m.gibbs)."""
    import json

    from rbm_check import SMALL_NH, SMALL_NV, small_model_check

    m = gdsl.load(ROOT / "models" / "rbm.gdl", seed=0)
    st = m.random_state(VS_CHAINS)
    masks = m._masks({}, VS_CHAINS)
    kargs = m.kernel_args(st)
    gibbs = m.KERNELS["gibbs"]
    mask_args = [masks[g] for g in m.group_names]
    rng = m._streams(VS_CHAINS)
    gibbs(*kargs, *mask_args, True, True, rng, 2)  # compile or load, and warm up
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        gibbs(*kargs, *mask_args, True, True, rng, VS_STEPS)
        times.append((time.perf_counter() - t) / VS_STEPS)
    out = {"side": "gdsl", "times": times, "dtype": str(m.params["W"].dtype)}
    if args.check:
        small = gdsl.load(ROOT / "models" / "rbm.gdl", nv=SMALL_NV, nh=SMALL_NH, seed=1)

        def sample(W, b, c, v, h, steps):
            for name, value in (("W", W), ("b", b), ("c", c)):
                small.params[name] = np.asarray(value, dtype=small.params[name].dtype)
            s = small.gibbs({"v": v.astype(small.dtype), "h": h.astype(small.dtype)}, steps=steps)
            return s["v"], s["h"]

        out["check"] = small_model_check(sample)
    print(json.dumps(out))


def versus_torch(quick: bool, rounds: int | None, thread_counts: list[int]) -> None:
    from common import all_cores, alternate, have_module, load_average, run_child, verdict, versus_table

    if not have_module("torch"):
        print("PyTorch: torch is not installed; skipped (pip install -e '.[bench]')")
        return
    rounds = rounds or (1 if quick else 3)
    repeats = 5 if quick else 21
    thread_counts = thread_counts or sorted({1, all_cores()})
    print(f"Side by side with PyTorch (CPU): RBM 784x500, {VS_CHAINS} chains, float32, one block-Gibbs sweep; "
          f"each run a fresh process, median of {repeats} timings of {VS_STEPS} sweeps; {rounds} round(s) of runs "
          f"alternating between the sides, threads {thread_counts}; load average at start {load_average()}")
    checks = {}

    def run(side, n):
        check = (side, n) not in checks  # the sampler check once per side and thread count
        if side == "gdsl":
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "gdsl", "--threads", str(n),
                   "--repeats", str(repeats)]
        else:
            cmd = [sys.executable, str(TORCH_WORKER), "gibbs", "--threads", str(n), "--repeats", str(repeats),
                   "--steps", str(VS_STEPS), "--chains", str(VS_CHAINS)]
        res = run_child(cmd + (["--check"] if check else []), n)
        if check:
            checks[side, n] = res["check"]
        print(f"    {side:5s} threads {n}: sweep median {statistics.median(res['times']) * 1e3:.3f} ms "
              f"(load average {load_average()})", flush=True)
        return res

    results = alternate(["gdsl", "torch"], thread_counts, rounds, run)
    medians = {k: [statistics.median(r["times"]) for r in v] for k, v in results.items()}
    print("  milliseconds per sweep (each run: median of its timings; table: median over runs)")
    summary = versus_table(medians, thread_counts, "ms", 1e3)
    from rbm_check import SMALL_CHAINS, SMALL_NH, SMALL_NV, SMALL_STEPS

    print(f"  sampler check: RBM {SMALL_NV}x{SMALL_NH} (W ~ N(0, 1)), {SMALL_CHAINS} chains, {SMALL_STEPS} sweeps, "
          f"final states against exact P(v_i = 1) and E[v_i h_j] ({SMALL_NV + SMALL_NV * SMALL_NH} statistics):")
    for (side, n), c in sorted(checks.items()):
        print(f"    {side:5s} threads {n}: largest error {c['max_err_v']:.4f} (marginals), {c['max_err_vh']:.4f} "
              f"(correlations); largest |z| {c['max_z']:.2f}")
    verdict(all(c["max_z"] < 4.5 for c in checks.values()),
            "both samplers draw from the model: every statistic within 4.5 standard errors of the exact value")
    lo, hi = min(thread_counts), max(thread_counts)
    for n in thread_counts:
        verdict(summary[n][2] >= 2.0, f"gdsl's sweep >= 2x faster than PyTorch's at {n} thread(s): "
                                      f"{summary[n][2]:.2f}x, median of per-round ratios (the epoch target of issue 24, "
                                      f"applied to the sweep)")
    if hi > lo:
        per_round = [a / b for a, b in zip(medians["gdsl", lo], medians["gdsl", hi])]
        scale = statistics.median(per_round)
        torch_scale = statistics.median(a / b for a, b in zip(medians["torch", lo], medians["torch", hi]))
        verdict(scale >= 1.6, f"the second core gives gdsl's sweep >= 1.6x: {lo} -> {hi} threads {scale:.2f}x, "
                              f"median of per-round ratios {', '.join(f'{p:.2f}' for p in per_round)} "
                              f"(PyTorch {torch_scale:.2f}x)")
    print(f"  load average at end of the comparison {load_average()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", default="1", help="BLAS threads for both sides (default 1: per-core numbers)")
    ap.add_argument("--only", choices=("rbm", "lattice", "cold", "torch"), help="run one of the benchmarks")
    ap.add_argument("--rounds", type=int, default=None,
                    help="PyTorch comparison: rounds of alternating runs (default 3, --quick 1)")
    ap.add_argument("--vs-threads", default=None,
                    help="PyTorch comparison: thread counts, comma-separated (default: 1 and all cores)")
    ap.add_argument("--child", choices=("gdsl",), help=argparse.SUPPRESS)
    ap.add_argument("--repeats", type=int, default=5, help=argparse.SUPPRESS)
    ap.add_argument("--check", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        gdsl_child(args)
        return
    from common import load_average

    repeats = 5 if args.quick else 21
    print(f"BLAS threads: {os.environ['OPENBLAS_NUM_THREADS']}; medians of {repeats} runs; "
          f"load average at start {load_average()}")
    if args.only in (None, "rbm"):
        rbm_sweep(repeats)
    if args.only in (None, "lattice"):
        lattice(repeats)
    if args.only in (None, "cold"):
        cold_and_warm()
    if args.only in (None, "torch"):
        versus_torch(args.quick, args.rounds,
                     [int(t) for t in args.vs_threads.split(",")] if args.vs_threads else [])
    print(f"load average at end {load_average()}")


if __name__ == "__main__":
    main()
