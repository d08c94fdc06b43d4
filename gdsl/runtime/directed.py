"""The runtime of models with directed conditionals (belief nets, NADE, VAEs, DBN hybrids, GANs).

The generated module's kernels compute per-row log p (the model's conditionals) and
log q (the guide), their gradients by reverse mode, and ancestral draws. This class
turns them into `sample`, `log_prob`, `log_joint`, `elbo`, `gradients` and `fit`.
For a chain graph (an energy over the top groups, e.g. a DBN) the top is sampled by
the energy part's block Gibbs and log_joint adds its unnormalised -E.
"""
from __future__ import annotations

import itertools
import math
from typing import Mapping

import numpy as np

from .checks import mapping, numeric_array, real, whole
from .ais import log_z_value
from .model import DEFAULT_MAX_STATES, ModelBase, _LogSumExp, _progress
from .rows import in_parts

CHUNK_FLOATS = 1 << 21  # the values of one kernel call: ~16 MB of float64, mostly cache-resident


class DirectedModel(ModelBase):
    ALL_GROUPS: tuple = ()
    DIRECTED: tuple = ()
    GUIDE: tuple = ()
    UNDIRECTED: tuple = ()
    FAMILIES: dict = {}
    GUIDE_FAMILIES: dict = {}
    AUTOREGRESSIVE: tuple = ()
    REPARAM: tuple = ()
    PARENTS: tuple = ()
    PARAMS_P: tuple = ()
    PARAMS_Q: tuple = ()
    DISCRIMINATOR: tuple = ()  # a GAN: the visible groups its discriminator reads
    PARAMS_D: tuple = ()  # ... and the discriminator's parameters
    DENOISER: dict = {}  # a denoising autoencoder's chain: visible, corrupt, states, prev (runtime/denoising.py)
    DBN_LAYERS: tuple = ()  # the stack greedy training trains (runtime/dgreedy.py)
    DBN_REFUSED = None  # or why the model is not such a stack
    LAYER_RBM = None  # the compiled binary RBM each layer is trained as

    def __init__(self, seed=None, dtype="float64", **overrides):
        super().__init__(seed=seed, dtype=dtype, **overrides)
        self.all_domains = {name: domain for name, _, domain in self.ALL_GROUPS}
        self.all_roles = {name: role for name, role, _ in self.ALL_GROUPS}
        self._p64_cache = (None, None)

    def _dcall(self, kernel: str, n: int, state: dict, eps: dict, **families):
        """Call a directed kernel on `n` rows: float64 state, noise and parameters (gdsl.abi)."""
        return self.call(kernel, n_rows=n, all_state=state, eps=eps, params=self._p64, **families)

    # ------------------------------------------------------------------ what it supports
    def supported(self) -> tuple:
        """The public methods this model supports (the energy methods only with an energy part)."""
        out = ["log_prob", "log_joint", "sample"]
        if self.DENOISER:
            return ("sample", "corrupt", "reconstruct_log_prob", "reconstruction_mean", "denoising_gradients",
                    "fit", "save", "load_params")
        if self.GUIDE:
            out += ["elbo", "log_q", "sample_guide"]
        if self.DISCRIMINATOR:
            out += ["generate", "discriminate", "adversarial_gradients"]
        out += ["gradients", "fit", "save", "load_params"]
        if self.UNDIRECTED:
            out += ["energy", "free_energy", "gibbs", "mean_field", "conditional_mean", "log_partition"]
        return tuple(out)

    def _need_energy(self, what: str, instead: str = "") -> None:
        """Refuse an energy-model method on a purely directed model, saying what it has instead
        (without this, e.g. energy() ended in a raw KeyError: 'free_energy' from the kernel table)."""
        if self.UNDIRECTED:
            return
        raise ValueError(f"{self.NAME} is a directed model and has no {what}: every variable is defined by "
                         f"a conditional, so p is normalised and there is no energy, Gibbs sampler or mean "
                         f"field. {instead + ' ' if instead else ''}{self.NAME} supports: "
                         f"{', '.join(self.supported())}")

    def _energy_groups_hint(self, name) -> str:
        if name is None or (name in self.all_domains and name not in self.domains):
            if not self.UNDIRECTED:
                return (f"; {self.NAME} is a directed model without an energy part: it supports "
                        f"{', '.join(self.supported())}")
            return (f"; {'' if name is None else name + ' is defined by a conditional, and '}the energy methods "
                    f"cover the energy part only ({', '.join(self.domains)})")
        return ""

    def random_state(self, n: int) -> dict:
        self._need_energy("random_state()", "sample(n) draws from the model itself.")
        return super().random_state(n)

    def kernel_args(self, state):
        self._need_energy("kernel_args()")
        return super().kernel_args(state)

    def energy(self, state: Mapping) -> np.ndarray:
        self._need_energy("energy()", "log_joint(state) gives log p(state) of a full state.")
        return super().energy(state)

    def free_energy(self, evidence: Mapping) -> np.ndarray:
        self._need_energy("free_energy()", "log_prob(data) gives log p(data), the other variables summed out.")
        return super().free_energy(evidence)

    def gibbs(self, state: Mapping, steps: int = 1, clamp: Mapping | None = None) -> dict:
        self._need_energy("gibbs()", "sample(n, clamp=..., mask=...) draws samples (ancestral, with Gibbs "
                                   "sweeps when clamped descendants need them).")
        return super().gibbs(state, steps, clamp)

    def mean_field(self, evidence: Mapping, *args, **kw):
        self._need_energy("mean_field()", "sample_guide(data) and log_q(state) use the guide q(latents | "
                                        "visibles)." if self.GUIDE else "sample(n, clamp=...) conditions by sampling.")
        return super().mean_field(evidence, *args, **kw)

    def conditional_mean(self, state: Mapping, group: str) -> np.ndarray:
        self._need_energy("conditional_mean()", "sample(n, clamp=...) conditions by sampling.")
        return super().conditional_mean(state, group)

    def log_partition(self, method: str = "exact", *args, **kw):
        self._need_energy("log_partition()", "p is normalised (log Z = 0): log_prob(data) needs no log Z.")
        return super().log_partition(method, *args, **kw)

    def variational_bound(self, data: Mapping, log_z: float, **options) -> np.ndarray:
        self._need_energy("variational_bound()", "elbo(data, k=...) is the bound of a directed model"
                                               + ("." if self.GUIDE else " (with a guide block)."))
        return super().variational_bound(data, log_z, **options)

    def base_model(self, data: Mapping | None = None) -> dict:
        self._need_energy("base_model (the AIS base model)", "p is normalised (log Z = 0): there is nothing to anneal.")
        return super().base_model(data)

    def reconstruction_error(self, data: Mapping) -> float:
        self._need_energy("reconstruction_error()", "elbo(data) and log_prob(data) measure the fit.")
        return super().reconstruction_error(data)

    def pseudo_log_likelihood(self, data: Mapping, seed: int = 0) -> np.ndarray:
        self._need_energy("pseudo_log_likelihood()", "log_prob(data) is exact for small latent spaces.")
        return super().pseudo_log_likelihood(data, seed)

    def predict_proba(self, data: Mapping, target: str) -> np.ndarray:
        self._need_energy("predict_proba()", "log_joint(state) of each class, normalised, gives p(class | data) "
                          "when the rest is observed.")
        return super().predict_proba(data, target)

    def predict(self, data: Mapping, target: str) -> np.ndarray:
        self._need_energy("predict()")
        return super().predict(data, target)

    def why_not_summable(self, summed) -> str | None:
        for g in summed:
            if g in self.all_domains and g not in self.domains:
                return (f"{g} is defined by a conditional, not by the energy: only the energy part's groups "
                        f"({', '.join(self.domains) or 'none'}) can be summed out")
        return super().why_not_summable(summed)

    # ------------------------------------------------------------------ metadata
    @property
    def group_names(self) -> list[str]:
        return [g for g, _, _ in self.ALL_GROUPS]

    @property
    def visible(self) -> list[str]:
        return [g for g, role, _ in self.ALL_GROUPS if role == "visible"]

    @property
    def latent(self) -> list[str]:
        return [g for g, role, _ in self.ALL_GROUPS if role == "latent"]

    @property
    def _p64(self) -> dict:
        version, cached = self._p64_cache
        if version != self._version or cached is None:
            cached = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in self._p.items()}
            self._p64_cache = (self._version, cached)
        return cached

    def _row_floats(self) -> int:
        return int(self.row_floats(self.sizes)) + sum(int(np.prod(self._shapes[g])) for g in self.group_names)

    def _chunks(self, n: int, floats_per_row: int | None = None):
        per_row = floats_per_row or self._row_floats()
        size = max(1, min(n, CHUNK_FLOATS // per_row))
        for start in range(0, n, size):
            yield slice(start, min(n, start + size))

    # ------------------------------------------------------------------ states
    def _state64(self, data: Mapping, need, n=None) -> tuple[dict, int]:
        n = self._n_of(data) if n is None else n
        missing = [g for g in need if g not in data]
        if missing:
            raise ValueError(f"{self.NAME} needs values for {', '.join(missing)}")
        for k in data:
            if k not in self.all_domains:
                raise ValueError(f"{self.NAME} has no variable {k!r} (it has: {', '.join(self.group_names)})")
        st = {}
        for g in self.group_names:
            if g in data:
                st[g] = np.ascontiguousarray(self._array(g, data[g], n), dtype=np.float64)
            else:
                st[g] = np.zeros((n,) + self._shapes[g])
        return st, n

    def _eps_zeros(self, n):
        return {g: np.zeros((n,) + self._shapes[g]) for g in self.REPARAM}

    def _forward(self, mode: str, st: dict, eps: dict, n: int):
        logp, logq = np.empty(n), np.empty(n)

        def part(a: int, b: int) -> None:  # rows a:b, in chunks that fit the cache
            for sl in self._chunks(b - a):
                sl = slice(a + sl.start, a + sl.stop)
                self._dcall(f"{mode}_forward", sl.stop - sl.start, {k: v[sl] for k, v in st.items()},
                            {k: v[sl] for k, v in eps.items()}, logp=logp[sl], logq=logq[sl])

        in_parts(part, n, self.threads)  # rows are independent: the same values on any thread count
        return logp, (logq if self.GUIDE else None)

    def _minibatch(self, arrays: dict, rows) -> dict:
        """The learner's minibatch: these rows of every array (a sequence model also cuts the padding)."""
        return {g: v[rows] for g, v in arrays.items()}

    def _backward(self, mode: str, st: dict, eps: dict, n: int, seed_p, seed_q):
        """(logp, logq, grads) with grads = d/dparams of sum_r seed_p[r] log p_r + seed_q[r] log q_r.

        The rows are cut into `self.threads` parts, each summing its gradient in its own arrays;
        the parts' sums are added in order (so a thread count always gives the same result)."""
        logp, logq = np.empty(n), np.empty(n)
        seed_p = np.ascontiguousarray(np.broadcast_to(seed_p, (n,)), dtype=np.float64)
        seed_q = np.ascontiguousarray(np.broadcast_to(seed_q, (n,)), dtype=np.float64)

        def part(a: int, b: int) -> dict:
            grads = {k: np.zeros(self._shapes[k]) for k in self._p}
            flat = {k: g if g.ndim else g.reshape(1) for k, g in grads.items()}
            for sl in self._chunks(b - a, self._row_floats() * 2):
                sl = slice(a + sl.start, a + sl.stop)
                self._dcall(f"{mode}_backward", sl.stop - sl.start, {k: v[sl] for k, v in st.items()},
                            {k: v[sl] for k, v in eps.items()}, seed_p=seed_p[sl], seed_q=seed_q[sl],
                            logp=logp[sl], logq=logq[sl], grads=flat)
            return grads

        parts = in_parts(part, n, self.threads)
        grads = parts[0]
        for other in parts[1:]:
            for k in grads:
                grads[k] += other[k]
        return logp, (logq if self.GUIDE else None), grads

    # ------------------------------------------------------------------ densities
    def log_joint(self, state: Mapping) -> np.ndarray:
        """log p(every group) per row; for a chain graph the top's -E (unnormalised: log Z not subtracted)."""
        st, n = self._state64(state, self.group_names)
        logp, _ = self._forward("joint", st, self._eps_zeros(n), n)
        if self.UNDIRECTED:
            logp = logp - self.energy({g: st[g] for g in self.UNDIRECTED}).astype(np.float64)
        return logp

    def _log_joint_summed(self, full: dict, summed) -> np.ndarray:
        """log_joint with the `summed` top groups summed out (their entries in `full` are ignored)."""
        if not summed:
            return self.log_joint(full)
        st, n = self._state64({g: v for g, v in full.items() if g not in summed},
                              [g for g in self.group_names if g not in summed])
        logp, _ = self._forward("joint", st, self._eps_zeros(n), n)
        top = {g: st[g] for g in self.UNDIRECTED if g not in summed}
        return logp - self.free_energy(top).astype(np.float64)

    def log_q(self, state: Mapping) -> np.ndarray:
        """log q(latents | visibles) of the guide, per row."""
        self._need_guide("log_q")
        st, n = self._state64(state, self.group_names)
        return self._forward("joint", st, self._eps_zeros(n), n)[1]

    def _need_guide(self, what):
        if not self.GUIDE:
            raise ValueError(f"{what} needs a guide: {self.NAME} has no 'guide {{ ... }}' block")

    def log_prob(self, data: Mapping, log_z: float | None = None, max_states: int = DEFAULT_MAX_STATES,
                 method: str = "auto") -> np.ndarray:
        """log p(data) per row: exact for fully observed models, by enumerating the latents
        (and the top's log Z) when they are few enough; otherwise use elbo(data, k=...)."""
        if method not in ("auto", "exact"):
            raise ValueError(f"unknown method {method!r}: use 'auto' or 'exact'")
        if self.DENOISER:
            raise ValueError(f"{self.NAME} is a denoiser's Markov chain, which has no tractable density: "
                             f"reconstruct_log_prob(data, corrupted) gives log p(x | x~), and its samples "
                             f"can be scored with gdsl.parzen_log_likelihood")
        max_states = real(max_states, "max_states", 1.0)
        log_z = None if log_z is None else log_z_value(log_z)
        given, n = self._state64(data, [])  # checks names, shapes and domains once; zeros elsewhere
        data = {g: given[g] for g in data}
        hidden = [g for g in self.group_names if g not in data]
        if not hidden and not self.UNDIRECTED:
            return self._forward("joint", given, self._eps_zeros(n), n)[0]
        if not hidden:
            return self.log_joint(given) - (log_z if log_z is not None else
                                         self.log_partition("exact", max_states=max_states))
        real_latents = [g for g in hidden if self.all_domains[g] == "real"]
        if real_latents and not self.GUIDE and self.DISCRIMINATOR:
            raise ValueError(f"log_prob cannot sum out the real latents {', '.join(real_latents)} exactly, and "
                             f"{self.NAME} has no guide for a bound: score a GAN by its samples, e.g. "
                             f"gdsl.parzen_log_likelihood(model.sample(n)[...], test, validation=...)")
        if real_latents:
            raise ValueError(f"log_prob cannot sum out the real latents {', '.join(real_latents)} exactly; "
                             f"estimate it with elbo(data, k=...) (the importance-weighted bound)")
        # top groups no conditional reads are summed out analytically (the free energy), the rest enumerated
        summed = [g for g in hidden if g in self.UNDIRECTED and g not in self.PARENTS]
        if summed and self.why_not_summable(summed) is not None:
            summed = []
        hidden = [g for g in hidden if g not in summed]
        if not hidden:  # every group not summed out is given
            return self._log_joint_summed(given, summed) - (
                log_z if log_z is not None else self.log_partition("exact", max_states=max_states))
        states = _enumeration(self, hidden)
        count = math.prod(len(s) for s in states.values()) if states else 1
        if count > max_states:
            raise ValueError(f"log_prob would enumerate {count} latent states (max_states={max_states:g}); "
                             f"estimate it with elbo(data, k=...) instead")
        acc = _LogSumExp()
        blocks = _joint_states(states, hidden)
        for block in blocks:
            m = len(next(iter(block.values())))
            full = {}
            for g in self.group_names:
                if g in data:
                    full[g] = np.repeat(data[g], m, axis=0)
                elif g in block:
                    full[g] = np.tile(block[g], (n,) + (1,) * (block[g].ndim - 1))
            lj = self._log_joint_summed(full, summed).reshape(n, m)
            acc.add(lj)
        out = np.asarray(acc.value(), dtype=np.float64).reshape(n)
        if self.UNDIRECTED:
            out = out - (log_z if log_z is not None else self.log_partition("exact", max_states=max_states))
        return out

    # ------------------------------------------------------------------ sampling
    def _masks_for(self, groups, clamp, mask, n):
        out = {}
        for g in groups:
            if g in clamp:
                out[g] = self._mask(g, mask.get(g, True), n)
            else:
                out[g] = np.zeros((n,) + self._shapes[g], np.uint8)
        return out

    def sample(self, n: int, steps: int = 100, burn_in: int = 0, chains=None, clamp: Mapping | None = None,
               mask: Mapping | None = None, init=None, progress: bool = False) -> dict:
        """n samples of every group: ancestral (for a chain graph, `burn_in + steps` Gibbs sweeps on
        the top first), with clamped elements kept. When the clamps are evidence about a free
        variable upstream (a clamped descendant of a free variable), one ancestral pass is not
        exact, and `steps + burn_in` sweeps of single-site Gibbs on the free discrete variables follow."""
        if self.DENOISER:  # the denoiser's Markov chain (runtime/denoising.py)
            from .denoising import sample_chain

            if chains is not None:
                raise ValueError("a denoiser's chains are the n rows: start them with init=")
            return sample_chain(self, n, steps=steps, burn_in=burn_in, clamp=clamp, mask=mask, init=init,
                                progress=progress)
        n, steps, burn_in = whole(n, "n", 1), whole(steps, "steps", 1), whole(burn_in, "burn_in")
        if chains is not None or init is not None:
            raise ValueError("directed models draw independent samples: chains and init do not apply")
        clamp, mask = dict(mapping(clamp, "clamp")), dict(mapping(mask, "mask"))
        for k in list(clamp) + list(mask):
            if k not in self.all_domains:
                raise ValueError(f"cannot clamp {k!r}: {self.NAME} has no such variable")
        for k in mask:
            if k not in clamp:
                raise ValueError(f"mask given for {k} but {k} is not clamped")
        st = {g: np.zeros((n,) + self._shapes[g]) for g in self.group_names}
        masks = {}
        for k, v in clamp.items():
            arr = np.asarray(self._array(k, self._with_sample_axis(k, v, n), n, check_domain=False), np.float64)
            m = self._mask(k, mask.get(k, True), n)
            masks[k] = m
            st[k] = np.ascontiguousarray(np.where(m.astype(bool), arr, _filler(self, k, n)))
            self._check_domain(k, st[k])  # only the clamped elements are the caller's
        if self.UNDIRECTED:
            top_clamp = {g: st[g] for g in self.UNDIRECTED if g in clamp}
            top_mask = {g: masks[g].astype(bool) for g in top_clamp}
            top = ModelBase.sample(self, n, steps=steps, burn_in=burn_in,
                                   clamp=top_clamp or None, mask=top_mask or None, progress=progress)
            for g in self.UNDIRECTED:
                st[g] = np.ascontiguousarray(top[g], dtype=np.float64)
        self._ancestral(st, {g: masks.get(g) for g in self.DIRECTED}, n)
        if clamp and not self._ancestral_is_exact(clamp, masks):
            self._gibbs_sites(st, masks, steps + burn_in, progress)
        return {g: st[g].astype(self.dtype) if self.dtype != np.float64 else st[g] for g in self.group_names}

    def _ancestral(self, st, masks, n):
        """One ancestral pass, written into `st`, a block of rows at a time: the kernel holds every
        value of its rows (a 500-unit NADE: about 6 MB a row), so 10,000 rows at once ran out of
        memory. The streams are drawn for all rows first: the blocks do not change the draws."""
        ms = {g: masks[g] if masks.get(g) is not None else np.zeros((n,) + self._shapes[g], np.uint8)
              for g in self.DIRECTED}
        rng = self._streams(n)

        def part(a: int, b: int) -> None:  # rows a:b over threads, in blocks; each row has its stream
            for sl in self._chunks(b - a):
                sl = slice(a + sl.start, a + sl.stop)
                rows = sl.stop - sl.start
                self._dcall("sample_model", rows, {g: v[sl] for g, v in st.items()}, self._eps_zeros(rows),
                            directed_masks={g: v[sl] for g, v in ms.items()}, rng=rng[sl])

        in_parts(part, n, self.threads)

    def _ancestral_is_exact(self, clamp, masks) -> bool:
        """One ancestral pass is exact when no clamped element comes after a free one: checked per
        group in the ancestral order (conservatively: a free group need not be an ancestor), and
        per position inside an autoregressive group (its elements are ordered too)."""
        free_before = False
        for g in list(self.UNDIRECTED) + list(self.DIRECTED):
            m = masks.get(g)
            partly = m is not None and not m.all()
            fully = m is not None and m.all()
            if g in self.UNDIRECTED:
                free_before = free_before or not fully
                continue
            if m is not None and m.any() and free_before:
                return False
            if partly and g in self.AUTOREGRESSIVE:
                axis = m.reshape(m.shape[0], m.shape[1], -1).any(axis=2)  # per position: any clamped
                free = ~m.reshape(m.shape[0], m.shape[1], -1).all(axis=2)
                first_free = np.where(free.any(axis=1), free.argmax(axis=1), m.shape[1])
                last_clamped = np.where(axis.any(axis=1), m.shape[1] - 1 - axis[:, ::-1].argmax(axis=1), -1)
                if np.any(last_clamped > first_free):
                    return False
            free_before = free_before or not fully
        return True

    def _gibbs_sites(self, st, masks, sweeps, progress):
        """Single-site Gibbs on the free discrete elements, from log_joint differences."""
        free = [g for g in self.group_names if not (masks.get(g) is not None and masks[g].all())]
        bad = [g for g in free if self.all_domains[g] not in ("binary", "spin", "categorical")]
        if bad:
            raise ValueError(f"conditioning on a descendant of the real variables {', '.join(bad)} "
                             f"needs more than ancestral sampling, which gdsl does not do yet")
        n = next(iter(st.values())).shape[0]
        rng = self._rng
        bar = _progress(sweeps, progress, "gibbs")
        for sweep in range(sweeps):
            for g in free:
                shape = self._shapes[g]
                domain = self.all_domains[g]
                flat = st[g].reshape(n, -1)
                m = masks.get(g)
                mflat = m.reshape(n, -1) if m is not None else np.zeros_like(flat, dtype=np.uint8)
                if domain == "categorical":
                    k = shape[-1]
                    for site in range(flat.shape[1] // k):
                        cols = slice(site * k, (site + 1) * k)
                        scores = []
                        for c in range(k):
                            flat[:, cols] = np.eye(k)[c]
                            scores.append(self.log_joint(st))
                        scores = np.stack(scores, axis=1)
                        p = np.exp(scores - scores.max(axis=1, keepdims=True))
                        p /= p.sum(axis=1, keepdims=True)
                        pick = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1).clip(0, k - 1)
                        old = flat[:, cols].copy()
                        flat[:, cols] = np.eye(k)[pick]
                        keep = mflat[:, site * k].astype(bool)
                        flat[keep, cols] = old[keep]
                    continue
                lo = -1.0 if domain == "spin" else 0.0
                for site in range(flat.shape[1]):
                    keep = mflat[:, site].astype(bool)
                    old = flat[:, site].copy()
                    flat[:, site] = 1.0
                    up = self.log_joint(st)
                    flat[:, site] = lo
                    down = self.log_joint(st)
                    p = 1.0 / (1.0 + np.exp(np.clip(down - up, -700, 700)))
                    flat[:, site] = np.where(rng.random(n) < p, 1.0, lo)
                    flat[keep, site] = old[keep]
            bar(sweep + 1)

    def sample_guide(self, data: Mapping) -> dict:
        """Latents drawn from the guide q(latents | visibles), with the visibles as given."""
        self._need_guide("sample_guide")
        st, n = self._state64(data, self.visible)
        ms = {g: np.zeros((n,) + self._shapes[g], np.uint8) for g in self.GUIDE}
        self._dcall("sample_guide", n, st, self._eps_zeros(n), guide_masks=ms, rng=self._streams(n))
        return st

    # ------------------------------------------------------------------ bounds
    def elbo(self, data: Mapping, k: int = 1, eps: Mapping | None = None) -> np.ndarray:
        """Per row: the ELBO E_q[log p(x, z) - log q(z | x)] estimated from one draw (k = 1),
        or the importance-weighted bound log mean_k p(x, z_k) / q(z_k | x) (k > 1)."""
        self._need_guide("elbo")
        w, n, k = self._log_weights(data, k, eps)
        return _log_mean_exp(w.reshape(k, n))

    def _log_weights(self, data, k, eps=None, with_grads=False, seeds=None):
        k = whole(k, "k", 1)
        st, n = self._state64(data, self.visible)
        big = {g: np.ascontiguousarray(np.tile(v, (k,) + (1,) * (v.ndim - 1))) for g, v in st.items()}
        if self.REPARAM:
            e = self._noise(n * k, eps, k)
            mode = "reparam"
        else:
            e = {}
            ms = {g: np.zeros((n * k,) + self._shapes[g], np.uint8) for g in self.GUIDE}
            self._dcall("sample_guide", n * k, big, {}, guide_masks=ms, rng=self._streams(n * k))
            mode = "joint"
        if not with_grads:
            logp, logq = self._forward(mode, big, e, n * k)
            return logp - logq, n, k
        return self._backward(mode, big, e, n * k, *seeds(n, k)) + (big,)

    def _noise(self, rows, eps, k):
        eps = mapping(eps, "eps") or None
        unknown = [g for g in (eps or {}) if g not in self.REPARAM]
        if unknown:
            raise ValueError(f"eps given for {', '.join(unknown)}; the reparameterised latents are "
                             f"{', '.join(self.REPARAM) or 'none'}")
        out = {}
        for g in self.REPARAM:
            shape = (rows,) + self._shapes[g]
            if eps is not None and g in eps:
                arr = numeric_array(eps[g], np.float64, f"eps of {g}")
                stacked = (k, rows // k) + self._shapes[g]  # k draws of the n rows, as (k, n, ...)
                if arr.shape not in (shape, stacked):
                    raise ValueError(f"eps of {g} must have shape {shape} (k * n rows: the k draws one after "
                                     f"the other) or {stacked}, got {arr.shape}")
                if not np.all(np.isfinite(arr)):
                    where = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
                    raise ValueError(f"eps of {g} must be finite (standard normal noise); found "
                                     f"{float(arr[where])!r} at {where}")
                arr = arr.reshape(shape)
            else:
                arr = self._rng.standard_normal(shape)
            out[g] = np.ascontiguousarray(arr)
        return out

    def gradients(self, data: Mapping, objective: str = "ml", k: int = 1, eps: Mapping | None = None):
        """(mean objective over rows, {param: gradient}) from the compiled reverse-mode kernels.

        objective "ml": log p(data) of a fully observed state; "elbo" / "iwae": the
        reparameterised bound (eps: the noise, drawn when not given)."""
        if objective == "ml":
            st, n = self._state64(data, self.group_names)
            logp, _, grads = self._backward("joint", st, self._eps_zeros(n), n, 1.0 / n, 0.0)
            return float(logp.mean()), grads
        if objective not in ("elbo", "iwae"):
            raise ValueError(f"unknown objective {objective!r}: use 'ml', 'elbo' or 'iwae'")
        self._need_guide(objective)
        if not self.REPARAM:
            raise ValueError("the reparameterised bound needs normal latents in the guide; for discrete "
                             "latents use fit(method='reinforce' or 'wake-sleep')")
        k = whole(k, "k", 1) if objective == "iwae" else 1
        rows = self._n_of(data)
        e = self._noise(rows * k, eps, k)
        # the log weights fix the importance weights; a second pass gives the gradient
        st, n = self._state64(data, self.visible)
        big = {g: np.ascontiguousarray(np.tile(v, (k,) + (1,) * (v.ndim - 1))) for g, v in st.items()}
        logp, logq = self._forward("reparam", big, e, n * k)
        w = (logp - logq).reshape(k, n)
        weights = np.exp(w - w.max(axis=0)) / np.exp(w - w.max(axis=0)).sum(axis=0)
        seed = (weights / n).reshape(-1)
        _, _, grads = self._backward("reparam", big, e, n * k, seed, -seed)
        return float(_log_mean_exp(w).mean()), grads

    # ------------------------------------------------------------------ a GAN: generator and discriminator
    def _need_discriminator(self, what: str) -> None:
        if not self.DISCRIMINATOR:
            raise ValueError(f"{what} needs a discriminator: {self.NAME} has no 'discriminator {{ ... }}' block")

    def _gan_noise(self, n: int, noise: Mapping | None = None) -> dict:
        """Standard normal noise for every group the generator draws (given ones checked)."""
        noise = dict(mapping(noise, "noise"))
        unknown = [g for g in noise if g not in self.DIRECTED]
        if unknown:
            raise ValueError(f"noise given for {', '.join(map(str, unknown))}; the generator draws "
                             f"{', '.join(self.DIRECTED)}")
        out = {}
        for g in self.DIRECTED:
            shape = (n,) + self._shapes[g]
            if g in noise:
                arr = numeric_array(noise[g], np.float64, f"noise of {g}")
                if arr.shape != shape:
                    raise ValueError(f"noise of {g} must have shape {shape}, got {arr.shape}")
                if not np.all(np.isfinite(arr)):
                    raise ValueError(f"noise of {g} must be finite (standard normal noise)")
            else:
                arr = self._rng.standard_normal(shape)
            out[g] = np.ascontiguousarray(arr)
        return out

    def _generate(self, noise: dict, n: int) -> dict:
        st = {g: np.zeros((n,) + self._shapes[g]) for g in self.group_names}
        self.call("generate_forward", n_rows=n, all_state=st, noise=noise, params=self._p64)
        return st

    def _grads(self) -> tuple[dict, dict]:
        grads = {k: np.zeros(self._shapes[k]) for k in self._p}
        return grads, {k: g if g.ndim else g.reshape(1) for k, g in grads.items()}

    def _generate_backward(self, noise: dict, adjoints: dict, n: int) -> dict:
        """d(sum adjoints * drawn groups)/d params, the noise fixed (the generator's parameters)."""
        st = {g: np.zeros((n,) + self._shapes[g]) for g in self.group_names}
        dx = {g: np.ascontiguousarray(adjoints[g]) if g in adjoints else np.zeros((n,) + self._shapes[g])
              for g in self.group_names}
        grads, flat = self._grads()
        self.call("generate_backward", n_rows=n, all_state=st, noise=noise, params=self._p64, adjoints=dx,
                  grads=flat)
        return grads

    def _discriminate(self, st: dict, n: int) -> np.ndarray:
        logit = np.empty(n)
        for sl in self._chunks(n):
            self._dcall("discriminate_forward", sl.stop - sl.start, {k: v[sl] for k, v in st.items()},
                        {k: v[sl] for k, v in self._eps_zeros(n).items()}, logit=logit[sl])
        return logit

    def _discriminate_backward(self, st: dict, seed, n: int):
        """(logit, grads, adjoints): d(sum_r seed[r] logit_r)/d params and /d the groups read."""
        logit = np.empty(n)
        seed = np.ascontiguousarray(np.broadcast_to(seed, (n,)), dtype=np.float64)
        grads, flat = self._grads()
        dx = {g: np.zeros((n,) + self._shapes[g]) for g in self.group_names}
        self._dcall("discriminate_backward", n, st, self._eps_zeros(n), seed=seed, logit=logit, grads=flat,
                    adjoints=dx)
        return logit, grads, dx

    def generate(self, n: int, noise: Mapping | None = None) -> dict:
        """n draws of every group, each drawn as mean + std * noise in ancestral order (the draw the
        adversarial fit differentiates); `noise` fixes the standard normal noise per group, e.g. to
        show the same latent points after each epoch. Without it, the same law as sample(n)."""
        self._need_discriminator("generate")
        n = whole(n, "n", 1)
        st = self._generate(self._gan_noise(n, noise), n)
        return {g: st[g].astype(self.dtype) if self.dtype != np.float64 else st[g] for g in self.group_names}

    def discriminate(self, data: Mapping) -> np.ndarray:
        """The discriminator's logit per row, log D / (1 - D) with D the probability that the row is data."""
        self._need_discriminator("discriminate")
        st, n = self._state64(data, self.DISCRIMINATOR)
        return self._discriminate(st, n)

    def adversarial_gradients(self, data: Mapping, noise: Mapping | None = None, loss: str = "non-saturating"):
        """The two losses of adversarial training on `data` and as many generated rows (from
        `noise`, drawn when not given), and their gradients, from the compiled kernels. See
        gdsl.runtime.adversarial.losses_and_gradients."""
        from .adversarial import losses_and_gradients

        self._need_discriminator("adversarial_gradients")
        st, n = self._state64(data, self.DISCRIMINATOR)
        return losses_and_gradients(self, st, self._gan_noise(n, noise), n, loss)

    # ------------------------------------------------------------------ a denoiser's chain
    def corrupt(self, data: Mapping) -> dict:
        """One corruption of each row, x~ ~ C(x~ | x) (with a GSN's states, drawn from x~ and
        prev given in `data`, else at their start: zero, or h0 of prev(h, h0)): every group, the data kept."""
        from .denoising import _corrupt, _initial_states, need_denoiser

        need_denoiser(self, "corrupt")
        st, n = self._state64(data, [self.DENOISER["visible"]])
        _initial_states(self, st, given=data)
        _corrupt(self, st, n)
        return st

    def reconstruct_log_prob(self, data: Mapping, corrupted: Mapping) -> np.ndarray:
        """log p(x | x~ [, states]) per row: `corrupted` holds x~ (and a GSN's states)."""
        from .denoising import need_denoiser

        d = need_denoiser(self, "reconstruct_log_prob")
        need = [d["corrupt"], *d["states"]]
        both = {**dict(corrupted), d["visible"]: data[d["visible"]]} if d["visible"] in data else dict(corrupted)
        st, n = self._state64(both, [d["visible"], *need])
        return self._forward("joint", st, self._eps_zeros(n), n)[0]

    def reconstruction_mean(self, corrupted: Mapping) -> np.ndarray:
        """E[x | x~ (, states)] per row: the mean of the reconstruction distribution."""
        from .denoising import reconstruction_mean

        return reconstruction_mean(self, corrupted)

    def denoising_gradients(self, data: Mapping, walkbacks: int = 1):
        """(mean over rows of sum over `walkbacks` chain steps of log p(x | x~_t), its gradient)."""
        from .denoising import denoising_gradients

        return denoising_gradients(self, data, walkbacks)

    # ------------------------------------------------------------------ learning
    def fit(self, data: Mapping, method: str | None = None, **options):
        if method in ("denoising", "walkback") or (method is None and self.DENOISER):
            from .denoising import fit_denoising

            return fit_denoising(self, data, method or "denoising", **options)
        if self.DENOISER:
            raise ValueError(f"unknown method {method!r} for a denoiser's chain: use 'denoising' or 'walkback'")
        if method == "adversarial" or (method is None and self.DISCRIMINATOR):
            from .adversarial import fit_adversarial

            return fit_adversarial(self, data, **options)
        from .dlearn import fit_directed

        return fit_directed(self, data, method, **options)


def _filler(model, name, n) -> np.ndarray:
    """A valid value of the group's domain everywhere (stands in for the free, unclamped elements)."""
    shape = (n,) + model._shapes[name]
    domain = model.all_domains[name]
    if domain == "categorical":
        out = np.zeros(shape)
        out[..., 0] = 1.0
        return out
    return np.full(shape, -1.0 if domain == "spin" else 0.0)


def _log_mean_exp(w: np.ndarray) -> np.ndarray:
    top = w.max(axis=0)
    return top + np.log(np.mean(np.exp(w - top), axis=0))


def _enumeration(model, groups) -> dict:
    out = {}
    for g in groups:
        shape = model._shapes[g]
        domain = model.all_domains[g]
        if domain == "categorical":
            k = shape[-1]
            rows = int(np.prod(shape[:-1]))
            states = [np.eye(k)[list(c)].reshape(shape) for c in itertools.product(range(k), repeat=rows)]
        else:
            lo = -1.0 if domain == "spin" else 0.0
            size = int(np.prod(shape))
            states = [np.array(c, dtype=np.float64).reshape(shape)
                      for c in itertools.product((lo, 1.0), repeat=size)]
        out[g] = np.stack(states) if states else np.zeros((1,) + shape)
    return out


def _joint_states(states: dict, groups, block: int = 4096):
    """All combinations of the groups' states, in blocks of at most `block` rows."""
    if not groups:
        yield {}
        return
    sizes = [len(states[g]) for g in groups]
    total = math.prod(sizes)
    for start in range(0, total, block):
        idx = np.arange(start, min(total, start + block))
        out, rest = {}, idx
        for g, s in zip(reversed(groups), reversed(sizes)):
            out[g] = states[g][rest % s]
            rest = rest // s
        yield out
