"""Annealed importance sampling for log Z, forward and reverse (Neal 2001; Salakhutdinov &
Murray 2008 for RBMs; Burda, Grosse & Salakhutdinov 2015 for the reverse direction).

The groups summed out by default (an RBM's h, a DBM's h1) are summed analytically in
the weights, so the chains anneal only the rest (v; v and h2). The base model is a set of
independent units over those groups: fitted to data when data is given (the "base-rate"
model: visible biases at the logit of smoothed pixel means; annealed latents such as a
DBM's h2 at the data's mean-field posterior means), uniform otherwise; real units get a
Gaussian base. Runs are independent and are split across threads.
"""
from __future__ import annotations

import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Mapping, NamedTuple

import numpy as np

from ..abi import ONE_HOT, row_states
from .checks import numeric_array, real
from .rows import one_blas_thread_if


class AISEstimate(NamedTuple):
    """log Z and its standard deviation in the log domain (delta method over the runs)."""

    log_z: float
    sd: float


class LogProbEstimate(NamedTuple):
    """log p per sequence estimated by AIS (a model that unfolds in time, with an energy at every
    step), and its standard deviation: each step's log Z(past) has its own AIS estimate, and the
    standard deviations of a sequence's steps (delta method over the runs) add in quadrature."""

    log_prob: np.ndarray
    sd: np.ndarray


def log_z_value(log_z) -> float:
    """A finite log Z given as a number or as an AISEstimate (passing the estimate itself is natural)."""
    return real(log_z.log_z if isinstance(log_z, AISEstimate) else log_z, "log_z")


def standard_schedule(count: int | None = None) -> np.ndarray:
    """About 14,500 inverse temperatures: steps of 1e-3 to 0.5, 1e-4 to 0.9, 1e-5 to 1; with
    `count`, that many of them, evenly spaced along it (the same shape, coarser steps)."""
    full = np.concatenate([np.arange(0.0, 0.5, 1e-3), np.arange(0.5, 0.9, 1e-4),
                           np.arange(0.9, 1.0, 1e-5), [1.0]])
    if count is None:
        return full
    if count < 2:
        raise ValueError(f"count must be at least 2 (from beta = 0 to 1), got {count!r}")
    return full[np.linspace(0, len(full) - 1, count).round().astype(int)]


def checked_schedule(betas) -> np.ndarray:
    """The inverse temperatures of an AIS run: the standard schedule when None."""
    betas = standard_schedule() if betas is None else numeric_array(betas, np.float64, "betas")
    if (betas.ndim != 1 or len(betas) < 2 or betas[0] != 0.0 or betas[-1] != 1.0
            or not np.all(np.diff(betas) >= 0)):  # written so that a NaN fails it
        raise ValueError("betas must rise from 0 to 1 (inclusive), with at least two values")
    return betas


def checked_runs(runs: int) -> int:
    if runs < 2:
        raise ValueError("runs must be at least 2 (the spread of the estimate needs two)")
    return runs


def ais_segments(schedule: np.ndarray):
    """The temperatures in up to 100 consecutive segments, each starting where the last ended (the
    steps between them are the same as in one pass; the progress bar moves between segments)."""
    for idx in np.array_split(np.arange(len(schedule)), min(100, len(schedule) - 1)):
        first = max(0, idx[0] - 1)
        seg = np.ascontiguousarray(schedule[first:idx[-1] + 1])
        if len(seg) >= 2:
            yield seg


def estimate(log_z0: float, logw: np.ndarray, reverse: bool) -> AISEstimate:
    top = float(np.max(logw))
    w = np.exp(logw - top)
    mean = float(np.mean(w))
    sd = float(np.std(w, ddof=1) / math.sqrt(len(w)) / mean) if len(w) > 1 else float("inf")
    log_mean = top + math.log(mean)
    return AISEstimate(log_z0 - log_mean if reverse else log_z0 + log_mean, sd)


class AISMixin:
    """log_partition(method="ais" | "reverse-ais") for compiled energy models."""

    def _ais_split(self):
        summed = tuple(g for g in self.DEFAULT_SUMMED if self.domains[g] != "real")
        kept = tuple(g for g in self.domains if g not in summed)
        return summed, kept

    def base_model(self, data: Mapping | None = None) -> dict:
        """Independent-unit base fields per group: (bf, bq), flattened. With `data`, the data's
        groups are fitted to the data, and the kept discrete latents to the mean-field posterior
        means of (up to BASE_ROWS of) the data rows; otherwise uniform."""
        summed, kept = self._ais_split()
        if data is not None:  # names, shapes, finite values in the domain
            n = self._n_of(data)
            data = {g: self._array(g, v, n) for g, v in data.items()}
        fitted = dict(data) if data is not None else {}
        fitted.update(self._posterior_means(data, kept))
        base = {}
        for g, domain in self.domains.items():
            size = int(np.prod(self._shapes[g]))
            bf, bq = np.zeros(size), np.zeros(size)
            x = None if g not in fitted or g in summed else np.asarray(fitted[g], np.float64)
            if x is not None:
                x = x.reshape(len(x), -1)
            if domain == "real" and g not in summed:
                mean = x.mean(0) if x is not None else np.zeros(size)
                var = np.maximum(x.var(0), 1e-3) if x is not None else np.ones(size)
                bq, bf = 0.5 / var, mean / var
            elif x is not None and domain == "binary":
                p = (x.sum(0) + 1.0) / (len(x) + 2.0)  # smoothed: never exactly 0 or 1
                bf = np.log(p) - np.log1p(-p)
            elif x is not None and domain == "spin":
                p = (((x + 1.0) / 2.0).sum(0) + 1.0) / (len(x) + 2.0)  # data (+-1) or posterior means
                bf = 0.5 * (np.log(p) - np.log1p(-p))
            elif x is not None and domain in ONE_HOT:
                counts = _state_counts(x, domain, self._categories[g]) + 1.0  # smoothed
                # logits relative to the last state's (the all-zero row of categorical_off, whose logit is 0)
                ref = counts[:, -1:] if domain == "categorical_off" else counts.sum(-1, keepdims=True)
                bf = np.log(counts[:, :self._categories[g]] / ref).reshape(-1)
            base[g] = (np.ascontiguousarray(bf, self.dtype), np.ascontiguousarray(bq, self.dtype))
        return base

    BASE_ROWS = 5000

    def _posterior_means(self, data: Mapping | None, kept) -> dict:
        """Mean-field posterior means of the kept discrete latent groups given evenly spaced data
        rows. A base close to the model's typical latent state matters: a DBM's h2 is sparse,
        and from a uniform h2 the forward chains settle in the wrong modes (docs/evaluation.md)."""
        latent = [g for g in kept if data is not None and g not in data and self.domains[g] != "real"]
        if not latent:
            return {}
        n = self._n_of(data)
        rows = np.linspace(0, n - 1, min(n, self.BASE_ROWS)).round().astype(int)
        q = self.mean_field({g: np.asarray(v)[rows] for g, v in data.items()})
        return {g: q[g] for g in latent}

    def _log_z0(self, base, summed) -> float:
        """log of the base model's normaliser over all groups (summed groups uniform)."""
        total = 0.0
        for g, domain in self.domains.items():
            bf, bq = (b.astype(np.float64) for b in base[g])
            if domain == "binary":
                total += float(np.sum(np.logaddexp(0.0, bf)))
            elif domain == "spin":
                total += float(np.sum(np.logaddexp(-bf, bf)))
            elif domain in ONE_HOT:
                total += float(np.sum(np.logaddexp.reduce(_row_logits(bf, domain, self._categories[g]), axis=1)))
            else:
                total += float(np.sum(bf ** 2 / (4 * bq) + 0.5 * np.log(math.pi / bq)))
        return total

    def _ais(self, reverse: bool, runs: int, betas, data, workers: int, progress: bool, burn_in: int,
             start: str = "data"):
        plan = self._ais_plan(reverse, runs, betas, data, workers, burn_in, start)
        parts = len(plan["chunks"])
        from .model import _progress

        bar = _progress(len(plan["schedule"]) - 1, progress, "reverse AIS" if reverse else "AIS")
        done = 0
        # one BLAS thread per part while the parts run: two parts each with two BLAS threads ran
        # the 784 x 500 RBM's AIS 1.8x slower than one part (rows.in_parts says the same of sweeps)
        with one_blas_thread_if(parts > 1), ThreadPoolExecutor(max_workers=parts) as pool:
            for seg in ais_segments(plan["schedule"]):
                oks = list(pool.map(lambda part: self._ais_part_steps(plan, part, seg), range(parts)))
                if not all(oks):
                    raise ValueError(self._precision_problem() + " during annealing")
                done += len(seg) - 1
                bar(done)
        return self._ais_result(plan)

    def _ais_plan(self, reverse: bool, runs: int, betas, data, parts: int, burn_in: int, start: str) -> dict:
        """Everything an AIS run needs, its chains split into `parts` (each with its own random streams,
        drawn here in order: a part's work depends only on what it is given, wherever it runs)."""
        summed, kept = self._ais_split()
        betas = checked_schedule(betas)
        checked_runs(runs)
        if reverse and start == "data" and data is None:
            raise ValueError("reverse AIS starts its chains at data: pass data={...} (or start='chains' "
                             "after a persistent-chain fit)")
        if reverse and start == "chains" and self._persistent_chains() is None:
            raise ValueError("start='chains' needs the persistent chains of a fit in this session "
                             "(method='pcd' or 'variational'); pass data={...} and start='data' instead")
        if data is not None:
            n = self._n_of(data)
            data = {g: self._array(g, v, n) for g, v in data.items()}
        base = self.base_model(data)
        log_z0 = self._log_z0(base, summed)
        state = self._ais_start(reverse, runs, base, data, kept, burn_in, start)
        at_one = {g: v.copy() for g, v in state.items()} if reverse else None  # the start is at beta = 1
        parts = min(parts, runs)
        bounds = np.linspace(0, runs, parts + 1).astype(int)
        spans = list(zip(bounds[:-1], bounds[1:]))
        return {"reverse": reverse, "summed": summed, "betas": len(betas), "log_z0": log_z0, "at_one": at_one,
                "base": base, "schedule": np.ascontiguousarray(betas[::-1] if reverse else betas),
                "chunks": [{g: np.ascontiguousarray(v[a:b]) for g, v in state.items()} for a, b in spans],
                "streams": [self._streams(b - a) for a, b in spans],
                "logws": [np.zeros(b - a) for a, b in spans],
                "masks": [self._masks({}, b - a) for a, b in spans],
                "flags": {g: g in summed for g in self.domains}, "free": {g: True for g in self.domains}}

    def _ais_part_steps(self, plan: dict, part: int, seg: np.ndarray) -> bool:
        """Anneal part `part` of the chains over the temperatures `seg` (in place)."""
        return self.call("ais_steps", state=plan["chunks"][part], masks=plan["masks"][part], free=plan["free"],
                         bases=plan["base"], summed=plan["flags"], betas=seg, rng=plan["streams"][part],
                         logw=plan["logws"][part])

    def _ais_result(self, plan: dict) -> AISEstimate:
        reverse, summed = plan["reverse"], plan["summed"]
        logw = np.concatenate(plan["logws"])
        at_one = plan["at_one"]
        if at_one is None:  # forward: the final states are at beta = 1
            at_one = {g: np.concatenate([c[g] for c in plan["chunks"]]) for g in self.domains}
        floor = self._state_floor(at_one, summed)
        result = estimate(plan["log_z0"], logw, reverse)
        self.last_ais = {"log_weights": logw, "log_z0": plan["log_z0"], "reverse": reverse, "betas": plan["betas"],
                         "state_floor": floor, "states": at_one}
        if result.log_z < floor:
            warnings.warn(f"{'reverse ' if reverse else ''}AIS estimate log Z = {result.log_z:.2f} is below "
                          f"{floor:.2f}, the log-mass of one of its own states at beta = 1: the estimate has "
                          f"not converged (try a longer schedule, more runs, or data= for a fitted base "
                          f"model)", RuntimeWarning, stacklevel=4)
        return result

    def _state_floor(self, state, summed) -> float:
        """max over the chains of -F(x) (the summed groups summed out): log Z is at least the
        log-mass of any one state, so an estimate below this is certainly wrong."""
        st = {g: np.ascontiguousarray(v, np.float64) for g, v in state.items()}
        return float(np.max(-self._free_energy(st, summed, self._params64(), np.float64)))

    def _persistent_chains(self):
        """The chains the last persistent-chain fit left behind, or None."""
        state = getattr(self, "_state", None)
        if state is None or state["config"].get("method") not in ("pcd", "variational"):
            return None
        return state["chains"]

    def _ais_start(self, reverse, runs, base, data, kept, burn_in, start="data"):
        """Forward: exact draws from the base model. Reverse: chains started at data rows (latents
        drawn given them) or at the last fit's persistent chains, then `burn_in` free Gibbs
        sweeps of the model."""
        state = self.random_state(runs)  # summed groups: uniform, as at beta = 0
        if not reverse:
            rng = self._rng
            for g in kept:
                bf, bq = (b.astype(np.float64) for b in base[g])
                shape = (runs,) + self._shapes[g]
                domain = self.domains[g]
                if domain == "binary":
                    x = rng.random((runs, bf.size)) < 1 / (1 + np.exp(-bf))
                elif domain == "spin":
                    x = np.where(rng.random((runs, bf.size)) < 1 / (1 + np.exp(-2 * bf)), 1.0, -1.0)
                elif domain in ONE_HOT:
                    k = self._categories[g]
                    logits = _row_logits(bf, domain, k)
                    p = np.exp(logits - np.logaddexp.reduce(logits, axis=1, keepdims=True))
                    u = rng.random((runs, len(p), 1))
                    states = p.shape[1]
                    x = np.eye(states)[(u > np.cumsum(p, axis=1)[None]).sum(-1).clip(max=states - 1)][..., :k]
                else:
                    x = bf / (2 * bq) + rng.standard_normal((runs, bf.size)) / np.sqrt(2 * bq)
                state[g] = np.ascontiguousarray(np.asarray(x, dtype=self.dtype).reshape(shape))
            return state
        if start == "chains":  # the fit already ran these chains at the model (up to its last steps)
            chains = self._persistent_chains()
            n = next(iter(chains.values())).shape[0]
            rows = self._rng.choice(n, size=runs, replace=runs > n)
            state = {g: np.ascontiguousarray(chains[g][rows]) for g in self.domains}
            return self._run_gibbs(state, self._masks({}, runs), burn_in)
        n = next(iter(data.values())).shape[0]
        rows = self._rng.choice(n, size=runs, replace=runs > n)
        for g, v in data.items():
            state[g] = np.ascontiguousarray(v[rows])
        if any(g not in data for g in self.domains):  # latents drawn given the data
            state = self._run_gibbs(state, self._masks({g: True for g in data}, runs), 10)
        # then free sweeps at beta = 1, so the chains approach the model itself: reverse AIS
        # needs its start drawn from the model (from the data alone it is biased whenever the
        # model and the data differ)
        return self._run_gibbs(state, self._masks({}, runs), burn_in)

    def variational_bound(self, data: Mapping, log_z: float, **mean_field_options) -> np.ndarray:
        """log p(data) >= -E_q[E] + H(q) - log Z with q the fully factorised mean-field
        posterior over the other groups (binary, spin or categorical), per sample."""
        log_z = log_z_value(log_z)
        q = self.mean_field(data, **mean_field_options)
        latent = [g for g in self.domains if g not in data]
        for g in latent:
            if self.domains[g] == "real":
                raise ValueError(f"the variational bound needs discrete latents; {g} is real")
        n = self._n_of(data)
        st = {g: np.asarray(v, np.float64) for g, v in q.items()}
        energy = self._free_energy({g: np.ascontiguousarray(v) for g, v in st.items()}, (),
                                   self._params64(), np.float64)  # multilinear: E at the means = E_q[E]
        entropy = np.zeros(n)
        for g in latent:
            m = np.clip(st[g].reshape(n, -1), 1e-12, 1 - 1e-12)
            if self.domains[g] == "binary":
                entropy -= np.sum(m * np.log(m) + (1 - m) * np.log1p(-m), axis=1)
            elif self.domains[g] == "spin":
                p = np.clip((m + 1) / 2, 1e-12, 1 - 1e-12)
                entropy -= np.sum(p * np.log(p) + (1 - p) * np.log1p(-p), axis=1)
            else:
                entropy -= np.sum(m * np.log(m), axis=1)
        return -energy + entropy - log_z


def estimates(log_z0: np.ndarray, logw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward AIS estimates of many partition functions at once: logw (rows, runs), one row
    per partition function. (log Z per row, its standard deviation in the log domain)."""
    top = logw.max(axis=1, keepdims=True)
    w = np.exp(logw - top)
    mean = w.mean(axis=1)
    sd = w.std(axis=1, ddof=1) / math.sqrt(logw.shape[1]) / mean
    return log_z0 + top[:, 0] + np.log(mean), sd


def base_from_means(m: np.ndarray, domain: str, k: int | None) -> np.ndarray:
    """The fields of independent units whose means are m (rows, elements): a discrete group's
    base fitted to mean-field means (clipped away from 0 and 1, so every state keeps some mass)."""
    if domain == "binary":
        p = np.clip(m, BASE_CLIP, 1.0 - BASE_CLIP)
        return np.log(p) - np.log1p(-p)
    if domain == "spin":
        p = np.clip((m + 1.0) / 2.0, BASE_CLIP, 1.0 - BASE_CLIP)
        return 0.5 * (np.log(p) - np.log1p(-p))
    units = np.clip(m.reshape(len(m), -1, k), BASE_CLIP, 1.0)
    if domain == "categorical_off":  # logits relative to the all-zero state's
        off = np.clip(1.0 - m.reshape(len(m), -1, k).sum(-1, keepdims=True), BASE_CLIP, 1.0)
        return np.log(units / off).reshape(len(m), -1)
    return np.log(units).reshape(len(m), -1)


BASE_CLIP = 1e-6


def row_log_z0(bf: np.ndarray, domain: str, k: int | None) -> np.ndarray:
    """log of the normaliser of independent discrete units with fields bf (rows, elements), per row."""
    if domain == "binary":
        return np.logaddexp(0.0, bf).sum(axis=1)
    if domain == "spin":
        return np.logaddexp(-bf, bf).sum(axis=1)
    rows = bf.reshape(len(bf), -1, k)
    if domain == "categorical_off":
        rows = np.concatenate([rows, np.zeros(rows.shape[:-1] + (1,))], axis=-1)
    return np.logaddexp.reduce(rows, axis=-1).sum(axis=1)


def row_draws(rng: np.random.Generator, bf: np.ndarray, n: int, domain: str, k: int | None) -> np.ndarray:
    """n draws of independent discrete units, draw c from the fields of row c % rows of bf."""
    f = bf[np.arange(n) % len(bf)]
    if domain == "binary":
        return (rng.random(f.shape) < 1.0 / (1.0 + np.exp(-f))).astype(np.float64)
    if domain == "spin":
        return np.where(rng.random(f.shape) < 1.0 / (1.0 + np.exp(-2.0 * f)), 1.0, -1.0)
    logits = f.reshape(n, -1, k)
    if domain == "categorical_off":
        logits = np.concatenate([logits, np.zeros(logits.shape[:-1] + (1,))], axis=-1)
    p = np.exp(logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True))
    u = rng.random(p.shape[:-1] + (1,))
    states = p.shape[-1]
    idx = (u > np.cumsum(p, axis=-1)).sum(-1).clip(max=states - 1)
    return np.eye(states)[idx][..., :k].reshape(n, -1)


def _row_logits(bf: np.ndarray, domain: str, k: int) -> np.ndarray:
    """The base model's logits of every state of each one-hot row, (rows, states): the K unit
    logits, and 0 for the all-zero row of a categorical_off group."""
    rows = bf.reshape(-1, k)
    if domain == "categorical_off":
        rows = np.concatenate([rows, np.zeros((len(rows), 1))], axis=1)
    return rows


def _state_counts(x: np.ndarray, domain: str, k: int) -> np.ndarray:
    """How often each row of a one-hot group takes each state in x (samples, ...): (rows, states)."""
    units = x.reshape(len(x), -1, k)
    counts = units.sum(0)
    if row_states(domain, k) > k:  # the all-zero state: the mass the units leave
        counts = np.concatenate([counts, (1.0 - units.sum(-1)).sum(0)[:, None]], axis=1)
    return counts
