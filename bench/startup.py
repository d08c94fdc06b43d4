"""Time to a first sample (issue 30): whole processes, each against `python -c "import numba,
numpy, scipy"` in the same run, with fresh cache directories.

    python bench/startup.py                 # the table: 3 situations x the jit modes, medians of --runs
    python bench/startup.py --models        # also every shipped model's cold first sample (slow)
    python bench/startup.py --runs 0 --models   # that table alone

Situations (what runs is `gdsl.load(rbm, nh=64)` + `sample(10, steps=10)` in a new process):
- fresh machine: gdsl's and numba's caches empty (new GDSL_CACHE_DIR and NUMBA_CACHE_DIR);
- new model: numba's cache holds gdsl's runtime helpers (warmed by another model), the model is new;
- cached: the same model again, its kernels in the cache.
A background compile the measured process leaves running is waited for before the next run, so
runs never overlap; its own time is reported apart ("background done"). gdsl's own modules are
byte-compiled first, as in an installed package.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RBM = (REPO / "models" / "rbm.gdl").read_text()

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import gdsl
from gdsl.runtime import tiers
path, jit, sizes = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
m = gdsl.load(path, seed=0, jit=jit, **sizes)
t1 = time.perf_counter()
if getattr(m, "STEPS", ()):
    m.sample(2, length=3, k=1)
elif hasattr(m, "ALL_GROUPS") and not m.BLOCKS:
    m.sample(10)
else:
    m.sample(10, steps=10)
t2 = time.perf_counter()
workers = [w.pid for w in tiers._WORKERS.values()]
print(json.dumps({"import_load": t1 - t0, "sample": t2 - t1, "tier": m._tiers.tier, "workers": workers}))
"""


def run(cmd: list[str], env: dict) -> tuple[float, dict]:
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd[:3])}\n{out.stderr[-2000:]}")
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    return wall, (json.loads(lines[-1]) if lines else {})


def wait_for(pids: list[int]) -> float:
    """Wait until the background compiles a run left have exited; seconds waited."""
    start = time.perf_counter()
    for pid in pids:
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
    return time.perf_counter() - start


def env_with(gdsl_cache: Path, numba_cache: Path) -> dict:
    env = dict(os.environ, GDSL_CACHE_DIR=str(gdsl_cache), NUMBA_CACHE_DIR=str(numba_cache))
    env.pop("GDSL_JIT", None)
    return env


def model_file(root: Path, tag: str, text: str = RBM) -> Path:
    """The model text with a comment that makes it a new model for the caches."""
    path = root / f"rbm_{tag}.gdl"
    path.write_text(f"# startup bench: {tag}\n" + text)
    return path


def one_mode(jit: str, root: Path) -> dict:
    """(wall seconds, details) of each situation for one jit mode, in a fresh pair of caches."""
    gdsl_cache, numba_cache = root / f"gdsl-{jit}", root / f"numba-{jit}"
    for d in (gdsl_cache, numba_cache):
        shutil.rmtree(d, ignore_errors=True)
    env = env_with(gdsl_cache, numba_cache)
    child = [sys.executable, "-c", CHILD]
    sizes = json.dumps({"nh": 64})
    out = {}
    first = model_file(root, f"{jit}-fresh")
    wall, info = run(child + [str(first), jit, sizes], env)
    info["background done"] = wall + wait_for(info.get("workers", []))
    out["fresh machine"] = (wall, info)
    new = model_file(root, f"{jit}-new-{time.time_ns()}")
    wall, info = run(child + [str(new), jit, sizes], env)
    info["background done"] = wall + wait_for(info.get("workers", []))
    out["new model"] = (wall, info)
    wall, info = run(child + [str(new), jit, sizes], env)
    info["background done"] = wall + wait_for(info.get("workers", []))
    out["cached"] = (wall, info)
    return out


def baseline(root: Path) -> float:
    env = env_with(root / "none", root / "none-numba")
    wall, _ = run([sys.executable, "-c", "import numba, numpy, scipy"], env)
    return wall


def byte_compile() -> None:
    """gdsl's .pyc files, as an installed package has them (pip writes them at install time; an
    editable install under PYTHONDONTWRITEBYTECODE=1 never does, and each process would compile
    gdsl's sources again: a tenth of a second that no installed user pays)."""
    import compileall

    compileall.compile_dir(str(REPO / "gdsl"), quiet=1)


def table(args) -> None:
    modes = args.modes.split(",")
    root = Path(tempfile.mkdtemp(prefix="gdsl-startup-"))
    results = {m: {} for m in modes}
    base = []
    try:
        for r in range(args.runs):
            base.append(baseline(root))
            for jit in modes:  # the modes alternate within a run
                for situation, value in one_mode(jit, root).items():
                    results[jit].setdefault(situation, []).append(value)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    b = statistics.median(base)
    print(f"`python -c \"import numba, numpy, scipy\"`: {b:.2f} s (median of {len(base)})")
    print()
    print("| situation | jit | process | ratio to importing numba | load | first sample | tier | background done |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for situation in ("fresh machine", "new model", "cached"):
        for jit in modes:
            runs = results[jit][situation]
            wall = statistics.median(w for w, _ in runs)
            load = statistics.median(i["import_load"] for _, i in runs)
            first = statistics.median(i["sample"] for _, i in runs)
            tier = runs[0][1]["tier"]
            done = [i.get("background done") for _, i in runs if i.get("workers")]
            done_text = f"{statistics.median(done):.1f} s" if done else ""
            print(f"| {situation} | {jit} | {wall:.2f} s | {wall / b:.1f}x | {load:.2f} s | {first:.2f} s | {tier} "
                  f"| {done_text} |")


def every_model(args) -> None:
    """Each shipped model's cold first sample (fresh caches, default sizes) per jit mode."""
    root = Path(tempfile.mkdtemp(prefix="gdsl-startup-models-"))
    modes = args.modes.split(",")
    print("| model | " + " | ".join(f"{m}: first sample" for m in modes) + " | tier (background) |")
    print("| --- | " + " | ".join("---" for _ in modes) + " | --- |")
    try:
        for path in sorted((REPO / "models").glob("*.gdl")):
            cells, tier = [], ""
            for jit in modes:
                env = env_with(root / f"g-{path.stem}-{jit}", root / f"n-{path.stem}-{jit}")
                wall, info = run([sys.executable, "-c", CHILD, str(path), jit, "{}"], env)
                wait_for(info.get("workers", []))
                cells.append(f"{info['sample']:.2f} s")
                if jit == "background":
                    tier = info["tier"]
            print(f"| {path.stem} | " + " | ".join(cells) + f" | {tier} |")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--modes", default="numba,background")
    parser.add_argument("--models", action="store_true", help="also every shipped model's cold first sample")
    args = parser.parse_args()
    byte_compile()
    if args.runs > 0:  # --runs 0 --models: the models' table alone
        table(args)
    if args.models:
        print()
        every_model(args)


if __name__ == "__main__":
    main()
