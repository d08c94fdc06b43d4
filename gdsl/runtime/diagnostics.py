"""MCMC diagnostics through ArviZ: the draws of `sample(n, chains=C)` as an InferenceData.

`sample` runs C chains and records n / C draws from each, chain after chain along the first
axis (rows c * (n / C) ... (c + 1) * (n / C) - 1 are chain c). `to_inferencedata` reshapes every
group to (chain, draw, ...) and adds scalar statistics per draw that summarise the state: the
energy of each draw (for an energy model, given the whole state) and the mean of each group.
ArviZ then gives R-hat and effective sample sizes (`arviz.summary`, `arviz.rhat`, `arviz.ess`).
ArviZ is an optional extra (`pip install gdsl[diagnostics]`), imported only here.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from .checks import mapping, whole


def to_inferencedata(samples: Mapping, chains: int, model=None):
    """`samples` from `model.sample(n, chains=chains, ...)` as an `arviz.InferenceData`.

    Its posterior group holds each variable with dims (chain, draw, <name>_dim_0, ...), one
    `<name>_mean` per group (the mean over the group's elements in each draw) and, with `model`
    given and able to compute it, `energy` (E of each whole draw; with latent groups summed out
    of the draws it is not available)."""
    try:
        import arviz as az
    except ImportError:
        raise ImportError("diagnostics need ArviZ: pip install 'gdsl[diagnostics]'") from None
    samples = mapping(samples, "samples")
    if not samples:
        raise ValueError("samples is empty: pass the dict that sample(...) returned")
    chains = whole(chains, "chains", 1)
    arrays = {g: np.asarray(v, dtype=np.float64) for g, v in samples.items()}
    n = len(next(iter(arrays.values())))
    for g, a in arrays.items():
        if a.ndim == 0 or len(a) != n:
            raise ValueError(f"samples[{g!r}] must have the draws along its first axis, {n} like the others; "
                             f"got shape {a.shape}")
    if n % chains or n // chains < 4:
        raise ValueError(f"{n} draws cannot be split into {chains} chains of at least 4 draws each; "
                         f"sample(n, chains=...) with n a multiple of chains")
    draws = n // chains
    posterior = {g: a.reshape((chains, draws) + a.shape[1:]) for g, a in arrays.items()}
    for g, a in arrays.items():
        posterior[f"{g}_mean"] = a.reshape(n, -1).mean(1).reshape(chains, draws)
    if model is not None:
        energy = _energy(model, samples)
        if energy is not None:
            posterior["energy"] = energy.reshape(chains, draws)
    return az.from_dict(posterior=posterior)


def _energy(model, samples) -> np.ndarray | None:
    domains = getattr(model, "domains", {})
    if not domains or set(domains) - set(samples):
        return None
    return np.asarray(model.energy({g: samples[g] for g in domains}), dtype=np.float64)
