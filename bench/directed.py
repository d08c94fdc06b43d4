"""Directed models on binarized MNIST: NADE log p(x) against hand-vectorised numpy, and the
training speed and test log-likelihood of NADE and a VAE. Writes docs/results-directed.md.

    python bench/directed.py                  # the full run (about 20-30 minutes on 2 cores)
    python bench/directed.py --quick          # 5,000 training rows, 1 epoch, 1,000 test rows:
                                              # a couple of minutes, checks the pipeline only
    python bench/directed.py --only logp      # or nade, vae, or a list: --only logp,vae

Set GDSL_CACHE_DIR (e.g. /tmp/gdsl-bench-cache) to keep the compiled kernels between runs.

1. logp: NADE 784x500 (models/nade.gdl) log p(x) of 10,000 test rows in float64, gdsl's
   `m.log_prob` against `nade_logp_numpy` (bench/nade_numpy.py: one pass over the pixels with
   the running pre-activation, batched over rows, sparse rank-1 updates), the same random
   parameters (W, V ~ normal(0, 0.01), zero biases, seed 0) set into the gdsl model. Medians of
   --repeats runs each, the ratio gdsl / numpy (< 1: gdsl faster), and the largest absolute
   difference of the per-row values. gdsl's kernels are warmed by a call on 10 rows first; the
   load + that first call (compile, or load from numba's cache) is reported separately.
2. nade: NADE 784x500 trained by maximum likelihood (fit method "ml", Adam, batch 100) on the
   50,000 training rows: seconds per epoch (median over the epochs, from fit's callback; an
   epoch includes fit's own per-epoch work, i.e. the shuffle and the train_loglik it measures
   on 1,000 training rows), then the exact test log p(x) (m.log_prob on the test rows).
3. vae: VAE 784-200-20 (models/vae.gdl) trained on the reparameterised ELBO (method "elbo",
   Adam, batch 100): seconds per epoch as for NADE (fit measures train_elbo on 1,000 rows per
   epoch), then on the test rows the ELBO (m.elbo, k = 1) and the importance-weighted bound
   (m.elbo, k = --iwae-k, default 50; a lower bound on log p(x) that tightens with k),
   computed in blocks of rows so the k-fold tiled batch stays small.

Before each timed fit a throwaway model is fitted on 200 rows, so compile (or cache load) of
the training kernels is excluded from the seconds per epoch. BLAS and numba threads are pinned
by --threads (default 1) before numpy is imported. The published NADE figure (-88.86 nats,
Larochelle & Murray 2011) is given for reference only: it took far more epochs than this run.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import median_time, set_blas_threads  # noqa: E402

set_blas_threads(sys.argv)   # before numpy

import numpy as np  # noqa: E402

import gdsl  # noqa: E402
from nade_numpy import load_rows, nade_logp_numpy, nade_params  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "binarized_mnist.npz"
NADE_PUBLISHED = -88.86
PARTS = ("logp", "nade", "vae")

FULL = dict(train_rows=50_000, test_rows=10_000, logp_rows=10_000, nade_epochs=8, vae_epochs=40,
            iwae_rows=10_000)
QUICK = dict(train_rows=5_000, test_rows=1_000, logp_rows=1_000, nade_epochs=1, vae_epochs=1,
             iwae_rows=1_000)


def _epochs(n: int) -> str:
    return f"{n} epoch" + ("s" if n != 1 else "")


def _first(n: int, total: int) -> str:
    return f"{n:,}" if n == total else f"the first {n:,}"


def _fmt_s(t: float) -> str:
    return f"{t:.3f} s" if t < 10 else f"{t:.1f} s"


# ---------------------------------------------------------------- 1. log p(x): gdsl vs numpy
def bench_logp(rows: int, repeats: int) -> dict:
    x = load_rows(rows).astype(np.float64)
    params = nade_params()
    print(f"\n1. NADE 784x500 log p(x), {len(x)} test rows, float64, median of {repeats}", flush=True)

    t = time.perf_counter()
    m = gdsl.load(ROOT / "models" / "nade.gdl", seed=0)
    for name, value in params.items():
        m.params[name] = value
    m.log_prob({"x": x[:10]})
    warm = time.perf_counter() - t
    print(f"  gdsl load + first log_prob on 10 rows (compile or cache load): {warm:.2f} s", flush=True)

    g_ll = m.log_prob({"x": x})
    g = median_time(lambda: m.log_prob({"x": x}), repeats)
    print(f"  gdsl  m.log_prob:       {_fmt_s(g)}", flush=True)
    n_ll = nade_logp_numpy(params, x)
    n = median_time(lambda: nade_logp_numpy(params, x), repeats)
    print(f"  numpy nade_logp_numpy:  {_fmt_s(n)}", flush=True)
    diff = float(np.max(np.abs(g_ll - n_ll)))
    ok = diff < 1e-8
    print(f"  -> gdsl / numpy = {g / n:.2f}  (< 1: gdsl faster); max |gdsl - numpy| = {diff:.2e} "
          f"({'agree' if ok else 'DISAGREE'}); mean log p = {g_ll.mean():.4f}", flush=True)
    return dict(rows=len(x), repeats=repeats, warm=warm, gdsl=g, numpy=n, ratio=g / n, diff=diff, agree=ok,
                mean=float(g_ll.mean()))


# ---------------------------------------------------------------- 2, 3. training
def timed_fit(path: Path, X: np.ndarray, sizes: dict, settings: dict, seed: int = 0):
    """(model, history, per-epoch seconds, warm-up seconds): a throwaway fit on 200 rows first,
    so compile / cache load of the training kernels is excluded."""
    t = time.perf_counter()
    warm = gdsl.load(path, seed=seed + 1, **sizes)
    warm.fit({"x": X[:200]}, **dict(settings, epochs=1), progress=False)
    warm_s = time.perf_counter() - t

    m = gdsl.load(path, seed=seed, **sizes)
    stamps = []

    def callback(model, record):
        stamps.append(time.perf_counter())
        print(f"    epoch {record['epoch']}: {stamps[-1] - (stamps[-2] if len(stamps) > 1 else t0):.1f} s, "
              + ", ".join(f"{k} {v:.2f}" for k, v in record.items() if k.startswith("train_")), flush=True)

    t0 = time.perf_counter()
    history = m.fit({"x": X}, **settings, progress=False, callback=callback)
    times = np.diff([t0] + stamps)
    return m, history, times, warm_s


def _describe(settings: dict, rows: int) -> str:
    return (f"method \"{settings['method']}\", Adam lr {settings['lr']:g}, batch {settings['batch_size']}, "
            f"{_epochs(settings['epochs'])}, {rows:,} training rows")


def bench_nade(train_x, test_x, epochs: int, lr: float) -> dict:
    settings = dict(method="ml", optimizer="adam", lr=lr, epochs=epochs, batch_size=100)
    print(f"\n2. NADE 784x500 training: {_describe(settings, len(train_x))}", flush=True)
    m, history, times, warm_s = timed_fit(ROOT / "models" / "nade.gdl", train_x, {}, settings)
    per_epoch = float(np.median(times))
    print(f"  {per_epoch:.1f} s/epoch (median of {len(times)}: {', '.join(f'{t:.1f}' for t in times)}; "
          f"warm-up fit incl. compile/cache load {warm_s:.1f} s, excluded)", flush=True)
    t = time.perf_counter()
    test_ll = float(np.mean(m.log_prob({"x": test_x})))
    eval_s = time.perf_counter() - t
    print(f"  test log p(x) (exact, {len(test_x):,} test rows): {test_ll:.2f} nats ({eval_s:.1f} s)", flush=True)
    return dict(settings=_describe(settings, len(train_x)), per_epoch=per_epoch, epochs=list(times), warm=warm_s,
                test_ll=test_ll, test_rows=len(test_x), train_loglik=history[-1].get("train_loglik"),
                train_seconds=float(np.sum(times)))


def iwae_bound(m, x: np.ndarray, k: int, block: int = 200) -> np.ndarray:
    """m.elbo(k=k) per row, computed `block` rows at a time (the kernel call tiles the rows k times)."""
    return np.concatenate([m.elbo({"x": x[s:s + block]}, k=k) for s in range(0, len(x), block)])


def bench_vae(train_x, test_x, epochs: int, lr: float, iwae_k: int, iwae_rows: int) -> dict:
    settings = dict(method="elbo", optimizer="adam", lr=lr, epochs=epochs, batch_size=100)
    print(f"\n3. VAE 784-200-20 training: {_describe(settings, len(train_x))}", flush=True)
    m, history, times, warm_s = timed_fit(ROOT / "models" / "vae.gdl", train_x, {}, settings)
    per_epoch = float(np.median(times))
    print(f"  {per_epoch:.2f} s/epoch (median of {len(times)}: {', '.join(f'{t:.2f}' for t in times)}; "
          f"warm-up fit incl. compile/cache load {warm_s:.1f} s, excluded)", flush=True)
    t = time.perf_counter()
    elbo = float(np.mean(iwae_bound(m, test_x, 1, block=1000)))
    sub = test_x[:iwae_rows]
    iwae = float(np.mean(iwae_bound(m, sub, iwae_k)))
    eval_s = time.perf_counter() - t
    print(f"  test ELBO (k = 1, {len(test_x):,} test rows): {elbo:.2f} nats; IWAE bound (k = {iwae_k}, "
          f"{_first(len(sub), len(test_x))} test rows): {iwae:.2f} nats ({eval_s:.1f} s)", flush=True)
    return dict(settings=_describe(settings, len(train_x)), per_epoch=per_epoch, epochs=list(times), warm=warm_s,
                elbo=elbo, iwae=iwae, iwae_k=iwae_k, iwae_rows=len(sub), test_rows=len(test_x),
                train_elbo=history[-1].get("train_elbo"), train_seconds=float(np.sum(times)))


# ---------------------------------------------------------------- the report
def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores; BLAS threads {os.environ['OPENBLAS_NUM_THREADS']}, "
            f"numba threads {os.environ.get('NUMBA_NUM_THREADS', '?')}; Python {platform.python_version()}, "
            f"numpy {np.__version__}")


def git_state() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "gdsl"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return f"{head}" + (" with uncommitted changes under gdsl/" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def report(results: dict, args, command: str, started: float, load: tuple, code: str) -> str:
    quick = " (**--quick**: reduced settings, a check of the pipeline, not of the numbers)" if args.quick else ""
    lines = ["# Directed models: speed and test log-likelihood", "",
             f"Written by `bench/directed.py`{quick}. Times are medians; log-likelihoods in nats per image "
             "(higher is better) on the binarized-MNIST test split.", "",
             "| what | measured | reference | settings |", "| --- | --- | --- | --- |"]
    if "logp" in results:
        r = results["logp"]
        lines.append(f"| NADE log p(x), {r['rows']:,} test rows | gdsl `m.log_prob` {_fmt_s(r['gdsl'])} | "
                     f"numpy `nade_logp_numpy` {_fmt_s(r['numpy'])}; **gdsl / numpy = {r['ratio']:.2f}** "
                     f"(< 1: gdsl faster) | 784x500, float64, median of {r['repeats']}; same parameters "
                     f"(W, V ~ N(0, 0.01), zero biases, seed 0); max abs difference {r['diff']:.1e} "
                     f"({'agree' if r['agree'] else '**disagree**'}); mean log p {r['mean']:.2f} |")
        lines.append(f"| NADE log p(x) compile / cache load | {r['warm']:.2f} s | | `gdsl.load` + the first "
                     f"`log_prob` on 10 rows; excluded from the time above |")
    if "nade" in results:
        r = results["nade"]
        lines.append(f"| NADE 784x500 training | {r['per_epoch']:.1f} s/epoch | | {r['settings']}; median of "
                     f"{_epochs(len(r['epochs']))} ({', '.join(f'{t:.1f}' for t in r['epochs'])} s); warm-up fit "
                     f"{r['warm']:.1f} s excluded |")
        lines.append(f"| NADE test log p(x), exact | {r['test_ll']:.2f} | {NADE_PUBLISHED} (Larochelle & Murray "
                     f"2011), for reference only: trained far longer than our "
                     f"{_epochs(len(r['epochs']))} | `m.log_prob` on {r['test_rows']:,} test rows "
                     f"after the training above; train log-likelihood (1,000 rows) {r['train_loglik']:.2f} |")
    if "vae" in results:
        r = results["vae"]
        lines.append(f"| VAE 784-200-20 training | {r['per_epoch']:.2f} s/epoch | | {r['settings']}; median of "
                     f"{_epochs(len(r['epochs']))}; warm-up fit {r['warm']:.1f} s excluded |")
        lines.append(f"| VAE test ELBO (k = 1) | {r['elbo']:.2f} | | `m.elbo(k=1)` on {r['test_rows']:,} test "
                     f"rows (one draw per row); train ELBO (1,000 rows) {r['train_elbo']:.2f} |")
        lines.append(f"| VAE test IWAE bound (k = {r['iwae_k']}) | {r['iwae']:.2f} | | `m.elbo(k={r['iwae_k']})`"
                     f" on {_first(r['iwae_rows'], r['test_rows'])} test rows: a lower bound on log p(x) |")
    elapsed = time.perf_counter() - started
    lines += ["",
              f"- machine: {machine()}",
              f"- load average at start / end: {load[0]:.2f} / {load[1]:.2f} (other work on the machine slows "
              "the timings)",
              f"- date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}; "
              f"code: {code if git_state() == code else f'{code} at the start, {git_state()} at the end'}; whole run {elapsed / 60:.1f} min",
              f"- command: `{command}`", ""]
    return "\n".join(lines)


KEPT_FROM = "\n## RNADE"  # this and every later section of the results file are kept


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="reduced settings: a check of the pipeline")
    ap.add_argument("--only", default=",".join(PARTS), help="comma-separated subset of logp,nade,vae")
    ap.add_argument("--threads", default="1", help="BLAS and numba threads (default 1: per-core numbers)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per side for log p (median)")
    ap.add_argument("--nade-epochs", type=int, default=None)
    ap.add_argument("--vae-epochs", type=int, default=None)
    ap.add_argument("--nade-lr", type=float, default=1e-3)
    ap.add_argument("--vae-lr", type=float, default=1e-3)
    ap.add_argument("--iwae-k", type=int, default=50)
    ap.add_argument("--out", default=str(ROOT / "docs" / "results-directed.md"))
    args = ap.parse_args()
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    bad = [p for p in parts if p not in PARTS]
    if bad:
        ap.error(f"unknown part(s) {', '.join(bad)}: choose from {', '.join(PARTS)}")
    cfg = dict(QUICK if args.quick else FULL)
    if args.nade_epochs is not None:
        cfg["nade_epochs"] = args.nade_epochs
    if args.vae_epochs is not None:
        cfg["vae_epochs"] = args.vae_epochs
    command = "GDSL_CACHE_DIR=" + os.environ["GDSL_CACHE_DIR"] + " " if "GDSL_CACHE_DIR" in os.environ else ""
    command += "python bench/directed.py" + "".join(f" {a}" for a in sys.argv[1:])

    started = time.perf_counter()
    code = git_state()
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{machine()}; load average at start {load0:.2f}; GDSL_CACHE_DIR="
          f"{os.environ.get('GDSL_CACHE_DIR', '(default)')}", flush=True)
    results = {}
    if "logp" in parts:
        results["logp"] = bench_logp(cfg["logp_rows"], args.repeats)
    if "nade" in parts or "vae" in parts:
        data = np.load(DATA)
        train_x = data["train"][:cfg["train_rows"]].astype(np.float64)
        test_x = data["test"][:cfg["test_rows"]].astype(np.float64)
        if "nade" in parts:
            results["nade"] = bench_nade(train_x, test_x, cfg["nade_epochs"], args.nade_lr)
        if "vae" in parts:
            results["vae"] = bench_vae(train_x, test_x, cfg["vae_epochs"], args.vae_lr, args.iwae_k,
                                       min(cfg["iwae_rows"], len(test_x)))
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    text = report(results, args, command, started, (load0, load1), code)
    print("\n" + text)
    Path(args.out).write_text(text + _kept_sections(Path(args.out)))
    print(f"wrote {args.out}")


def _kept_sections(path: Path) -> str:
    """The hand-written sections other benches append (from the first one on, e.g. RNADE's):
    rewriting this bench's part must not delete them."""
    if not path.exists():
        return ""
    old = path.read_text()
    at = old.find(KEPT_FROM)
    return "\n" + old[at:] if at >= 0 else ""


if __name__ == "__main__":
    main()
