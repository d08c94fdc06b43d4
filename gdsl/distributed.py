"""Independent work spread over a Dask cluster: AIS runs, sampling chains, repeated fits.

Pass a `dask.distributed.Client` (an optional extra: `pip install 'gdsl[distributed]'`); with
`client=None` the same work runs here, part after part, and gives the same numbers: the work
is cut into parts the same way, and each part's random streams are drawn from the model's
generator before anything is sent, so where a part runs does not change what it computes.

Workers never receive numba functions (pickling compiled functions is fragile). A task
carries the model as data: its .gdl text, sizes, constants, dtype and parameter arrays. Each
worker process builds the module from the text once (from its on-disk cache when the text was
compiled there before: share GDSL_CACHE_DIR, or run `gdsl warmup` on the workers) and keeps
it for later tasks. docs/scaling.md.
"""
from __future__ import annotations

import hashlib
import itertools
from typing import Mapping, Sequence

import numpy as np

_MODULES: dict = {}  # per process: sha256 of a model's text -> its compiled module


def model_spec(model) -> dict:
    """What a worker needs to rebuild `model`: plain data, no compiled code."""
    # workers run numba's kernels (their long runs are what the cluster is for), or the numpy tier
    # if the model itself is on it: the same draws as the local model's for the same seeds
    return {"text": model.SOURCE_TEXT, "name": model.NAME, "sizes": dict(model.sizes), "consts": dict(model.consts),
            "dtype": model.dtype.name, "params": {k: np.array(v) for k, v in model.params.items()},
            "jit": "numpy" if getattr(model, "jit", "numba") == "numpy" else "numba"}


def rebuild(spec: Mapping, seed=None):
    """The model of `spec` in this process (its module compiled or loaded once per process)."""
    from .driver import load_text

    key = hashlib.sha256(spec["text"].encode("utf-8")).hexdigest()
    module = _MODULES.get(key)
    if module is None:
        module = _MODULES[key] = load_text(spec["text"], f"<{spec['name']} from a gdsl.distributed task>")
    m = module.Model(seed=seed, dtype=spec["dtype"], jit=spec.get("jit", "numba"), **spec["sizes"], **spec["consts"])
    m.params = spec["params"]
    m.threads = 1  # the cluster's worker processes are the parallelism: no threads on top of them
    return m


def _run(client, fn, payloads: Sequence) -> list:
    """fn(payload) for each payload, on the cluster (in order of the payloads) or here."""
    if client is None:
        return [fn(p) for p in payloads]
    return client.gather(client.map(fn, payloads, pure=False))


# ------------------------------------------------------------------ annealed importance sampling
def log_partition(model, client=None, method: str = "ais", runs: int = 100, betas=None, data=None,
                  parts: int | None = None, burn_in: int = 1000, start: str = "data"):
    """`model.log_partition(method="ais" | "reverse-ais", ...)` with the runs cut into `parts` (default:
    the cluster's worker count), each annealed on a worker. The same `parts` locally
    (`model.log_partition(..., workers=parts)`) gives the same estimate for the same model seed."""
    from .runtime.ais import AISEstimate
    from .runtime.checks import whole

    if method not in ("ais", "reverse-ais"):
        raise ValueError(f"method must be 'ais' or 'reverse-ais', got {method!r}")
    parts = _parts(client, parts)
    plan = model._ais_plan(method == "reverse-ais", whole(runs, "runs"), betas, data, parts,
                           whole(burn_in, "burn_in"), start)
    spec = model_spec(model)
    payloads = [{"spec": spec, "chunk": plan["chunks"][k], "streams": plan["streams"][k], "logw": plan["logws"][k],
                 "masks": plan["masks"][k], "base": plan["base"], "flags": plan["flags"], "free": plan["free"],
                 "schedule": plan["schedule"]} for k in range(len(plan["chunks"]))]
    for k, (ok, chunk, logw) in enumerate(_run(client, _ais_part, payloads)):
        if not ok:
            raise ValueError(model._precision_problem() + " during annealing")
        plan["chunks"][k], plan["logws"][k] = chunk, logw
    result = model._ais_result(plan)
    return AISEstimate(result.log_z, result.sd)


def _ais_part(p: Mapping):
    from .runtime.ais import ais_segments

    m = rebuild(p["spec"])
    plan = {"chunks": [p["chunk"]], "streams": [p["streams"]], "logws": [p["logw"]], "masks": [p["masks"]],
            "base": p["base"], "flags": p["flags"], "free": p["free"]}
    ok = all(m._ais_part_steps(plan, 0, seg) for seg in ais_segments(p["schedule"]))
    return ok, plan["chunks"][0], plan["logws"][0]


# ------------------------------------------------------------------ sampling
def sample(model, n: int, client=None, parts: int | None = None, **options) -> dict:
    """n samples from independent chains in `parts` parts (default: the cluster's worker count), each
    part a `sample(n / parts, **options)` of the model seeded from the model's generator; the parts
    are stacked in order. The same call without a client gives the same samples."""
    from .runtime.checks import whole

    n, parts = whole(n, "n", 1), _parts(client, parts)
    if n % parts:
        raise ValueError(f"n ({n}) must be a multiple of parts ({parts})")
    spec = model_spec(model)
    seeds = model._rng.integers(0, 2 ** 63, size=parts)
    payloads = [{"spec": spec, "seed": int(s), "n": n // parts, "options": options} for s in seeds]
    drawn = _run(client, _sample_part, payloads)
    return {g: np.concatenate([d[g] for d in drawn]) for g in drawn[0]}


def _sample_part(p: Mapping) -> dict:
    return rebuild(p["spec"], seed=p["seed"]).sample(p["n"], **p["options"])


# ------------------------------------------------------------------ repeated fits
def sweep(model, grid, data: Mapping, client=None, repeats: int = 1, **fit_options) -> list[dict]:
    """Fit a copy of `model` (its current parameters as the start) for every combination of `grid`
    (a dict of lists, every combination, or a list of dicts) and each of `repeats` seeds; return one
    dict per fit: `options` (the combination), `seed`, `history` and `params`. `fit_options` are the
    options every fit shares. The same call without a client gives the same fits."""
    from .runtime.checks import whole

    combos = _combinations(grid)
    repeats = whole(repeats, "repeats", 1)
    spec = model_spec(model)
    data = {g: np.asarray(v) for g, v in data.items()}
    if client is not None:
        data = client.scatter(data, broadcast=True)  # sent once to every worker, not once per fit
    seeds = model._rng.integers(0, 2 ** 63, size=len(combos) * repeats)
    payloads = [{"spec": spec, "data": data, "seed": int(seeds[k]), "options": {**fit_options, **combo}}
                for k, combo in enumerate(c for c in combos for _ in range(repeats))]
    return _run(client, _fit_part, payloads)


def _fit_part(p: Mapping) -> dict:
    m = rebuild(p["spec"], seed=p["seed"])
    options = dict(p["options"])
    options.setdefault("progress", False)
    history = m.fit(p["data"], **options)
    return {"options": p["options"], "seed": p["seed"], "history": list(history),
            "params": {k: np.array(v) for k, v in m.params.items()}}


def _combinations(grid) -> list[dict]:
    if isinstance(grid, Mapping):
        keys = list(grid)
        for k in keys:
            if isinstance(grid[k], (str, bytes)) or not isinstance(grid[k], Sequence):
                raise ValueError(f"grid[{k!r}] must be a list of values to try, got {grid[k]!r}")
        return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]
    combos = list(grid)
    if not combos or not all(isinstance(c, Mapping) for c in combos):
        raise ValueError("grid must be a dict of lists or a non-empty list of dicts of fit options")
    return [dict(c) for c in combos]


def _parts(client, parts) -> int:
    from .runtime.checks import whole

    if parts is not None:
        return whole(parts, "parts", 1)
    if client is None:
        return 1
    return max(1, len(client.scheduler_info().get("workers", {})))
