"""The runtime of models that unfold in time (`time t` in the .gdl file).

A sequence model's data are sequences: for each group along the time axis, either a list of
arrays `(T_i, ...)` (one per sequence, lengths may differ) or one padded array
`(n, T, ...)` with `lengths=` (every sequence T frames long when not given). Results are per
sequence. The compiled kernels (codegen/sequence.py) run the steps along time for a whole
batch at once, rows sorted longest first; this class sorts, calls and unsorts.

- `log_prob(data)`: log p(sequence) = sum over steps of log p(step | past), exact (for an
  energy at every step, each step's log Z(past) enumerated; `method="ais"` estimates every
  step's log Z by annealed importance sampling, all frames' chains in one batch);
- `gradients(data)`: the mean log p and its gradient (backpropagation through time);
- `sample(n, length, clamp=..., mask=...)`: step by step, clamped elements kept;
- `fit(data, method="ml")`: maximum likelihood with the directed learner (Adam, minibatches
  of sequences, progress, checkpoints), whose per-batch gradient is `sequence_backward`.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from .ais import LogProbEstimate, ais_segments, base_from_means, checked_runs, checked_schedule, estimates
from .ais import row_draws, row_log_z0
from .checks import mapping, whole
from .directed import DirectedModel

ROWS = "rows"  # ... and, for PCD, which training sequences they are (their persistent chains)
MEASURED = 50  # sequences the learner's after-epoch record of a per-step energy is measured on
LENGTHS = "lengths"  # the key under which the learner's minibatches carry each sequence's length
MIN_SEQUENCES = 2  # sequences a thread takes at least (the kernels loop over time inside: few are enough)
MF_ITERS = 50  # damped mean-field iterations of the AIS base (a base need not be converged: it is only a start)


class SequenceModel(DirectedModel):
    TIME_AXIS = "t"
    STEPS: tuple = ()  # the groups along the time axis (the data)
    STATES: tuple = ()  # (state, the parameter it starts from)

    def supported(self) -> tuple:
        return ("log_prob", "sample", "gradients", "fit", "save", "load_params")

    def _need_energy(self, what: str, instead: str = "") -> None:
        raise ValueError(f"{self.NAME} unfolds in time and has no {what} of its own: each step is normalised "
                         f"given the past, so the model is used on whole sequences (docs/sequences.md). "
                         f"{self.NAME} supports: {', '.join(self.supported())}")

    def log_joint(self, state: Mapping) -> np.ndarray:
        raise ValueError(f"{self.NAME} unfolds in time: log_prob({{'{self.STEPS[0]}': sequences}}) gives log p of "
                         f"each sequence")

    @property
    def has_step_energy(self) -> bool:
        """Each step is an energy model normalised given the past (an RNN-RBM), not directed."""
        return "sequence_cd" in self.KERNEL_SPEC

    @property
    def _hidden(self) -> list[str]:
        return [g for g in self.STEPS if self.all_roles[g] == "latent"]

    def _minibatch(self, arrays: dict, rows) -> dict:
        """The learner's minibatch: the rows of every array, the sequences cut to the longest of them
        (the padded arrays run to the longest sequence of the whole data set)."""
        steps = int(arrays[LENGTHS][rows].max())
        return {g: v[rows, :steps] if g in self.STEPS else v[rows] for g, v in arrays.items()}

    def _with_hidden(self, seqs: dict, lens) -> dict:
        """The step's latent sequences (not data) as zeros beside the data."""
        n, T = len(lens), int(lens.max())
        return {**seqs, **{g: np.zeros((n, T) + self._shapes[g]) for g in self._hidden if g not in seqs}}

    def __init__(self, seed=None, dtype="float64", **overrides):
        super().__init__(seed=seed, dtype=dtype, **overrides)
        # a per-step energy's groups are the step's own, not the top of a chain graph: the
        # directed learner sees sequences, which its minibatches carry with their lengths
        self.UNDIRECTED = ()
        self.PARAMS_P = tuple(self._p)  # the steps' and the recurrence's: the learner updates them all

    @property
    def group_names(self) -> list[str]:
        """The groups data give: the visible sequences."""
        return [g for g in self.STEPS if self.all_roles[g] == "visible"]

    @property
    def visible(self) -> list[str]:
        return self.group_names

    @property
    def latent(self) -> list[str]:
        return [g for g in self.STEPS if self.all_roles[g] == "latent"]

    # ------------------------------------------------------------------ data
    def sequences(self, data: Mapping, lengths=None) -> tuple[dict, np.ndarray]:
        """(padded float64 arrays {group: (n, T_max, ...)}, lengths (n,) int64) from lists of
        per-sequence arrays or padded arrays (with `lengths`, default: all full)."""
        data = dict(mapping(data, "data"))
        data.pop(ROWS, None)
        if LENGTHS in data and lengths is None:
            lengths = data.pop(LENGTHS)
        unknown = [k for k in data if k not in self.STEPS]
        if unknown:
            raise ValueError(f"{self.NAME} has no sequence {unknown[0]!r} (its sequences: {', '.join(self.STEPS)})")
        missing = [g for g in self.visible if g not in data]
        if missing:
            raise ValueError(f"{self.NAME} needs the sequences {', '.join(missing)}")
        out, found = {}, None
        for g in [g for g in self.STEPS if g in data]:
            arr, lens = self._padded(g, data[g], lengths)
            if found is not None and not np.array_equal(lens, found):
                raise ValueError(f"the sequences of {g} and {self.STEPS[0]} have different lengths")
            out[g], found = arr, lens
        return out, found

    def _padded(self, g: str, value, lengths):
        shape = self._shapes[g]
        want = f"(T, {', '.join(map(str, shape))})" if shape else "(T,)"
        if isinstance(value, (list, tuple)):
            if lengths is not None:
                raise ValueError("lengths= goes with a padded array; a list of sequences has its own lengths")
            if not value:
                raise ValueError(f"{g}: no sequences given")
            seqs = [np.asarray(self._in_dtype(g, s), dtype=np.float64) for s in value]
            for i, s in enumerate(seqs):
                if s.ndim != len(shape) + 1 or s.shape[1:] != shape or s.shape[0] < 1:
                    raise ValueError(f"{g}: sequence {i} has shape {s.shape}; expected {want}, T >= 1 frames")
            lens = np.array([len(s) for s in seqs], dtype=np.int64)
            arr = np.zeros((len(seqs), int(lens.max())) + shape)
            for i, s in enumerate(seqs):
                arr[i, :len(s)] = s
        else:
            arr = np.asarray(self._in_dtype(g, value), dtype=np.float64)
            if arr.ndim != len(shape) + 2 or arr.shape[2:] != shape or arr.shape[1] < 1:
                raise ValueError(f"{g} has shape {arr.shape}; expected (sequences, T, "
                                 f"{', '.join(map(str, shape))}) padded, or a list of {want} arrays")
            if lengths is None:
                lens = np.full(arr.shape[0], arr.shape[1], dtype=np.int64)
            else:
                lens = np.asarray(lengths)
                if lens.shape != (arr.shape[0],) or not np.all(np.isfinite(lens)) or np.any(lens != np.round(lens)):
                    raise ValueError(f"lengths must be {arr.shape[0]} whole numbers, one per sequence")
                lens = lens.astype(np.int64)
                if lens.min() < 1 or lens.max() > arr.shape[1]:
                    raise ValueError(f"lengths must be between 1 and the padded length {arr.shape[1]}")
            arr = arr.copy()
            for i, n in enumerate(lens):  # what lies past a sequence's end is never read: zero it
                arr[i, n:] = 0.0
        for i, n in enumerate(lens):
            self._check_domain(g, arr[i, :n])
        return np.ascontiguousarray(arr), lens

    @staticmethod
    def _sorted(lengths: np.ndarray) -> np.ndarray:
        return np.argsort(-lengths, kind="stable")

    # ------------------------------------------------------------------ densities
    METHODS = ("exact", "ais")
    BASES = ("mean-field", "biases")

    def log_prob(self, data: Mapping, lengths=None, max_states: int = 2 ** 16, method: str = "exact",
                 runs: int = 100, betas=None, base: str = "mean-field", workers: int | None = None, progress: bool = False,
                 **options):
        """log p of each sequence: the sum over its steps of log p(step | the past).

        method="exact" (the default): exact; for a per-step energy, each step's log Z(past) by
        enumerating the step's visibles, at most `max_states` of them. An array (sequences,).

        method="ais" (a per-step energy): every step's log Z(past) estimated by annealed importance
        sampling, `runs` chains per frame over `betas` (default: the standard ~14,500
        temperatures), all frames of all sequences annealed as one batch in `workers` threads,
        each frame's chains from its own base (`base="mean-field"`: independent units at the
        step's mean-field means given its past; `"biases"`: the step's fields with its other
        groups at zero). Returns LogProbEstimate(log_prob, sd), arrays (sequences,); the per-frame
        estimates are in `m.last_ais`."""
        if options:
            raise TypeError(f"unexpected options {', '.join(options)}")
        if method not in self.METHODS:
            raise ValueError(f"method must be 'exact' or 'ais' (AIS for every step's log Z), got {method!r}")
        if method == "ais":
            if not self.has_step_energy:
                raise ValueError(f"{self.NAME}'s steps are directed and its log_prob is exact: method='exact' "
                                 f"(method='ais' is for an energy at every step)")
            if base not in self.BASES:
                raise ValueError(f"base must be 'mean-field' or 'biases', got {base!r}")
            runs = checked_runs(whole(runs, "runs", 2))
            betas = checked_schedule(betas)
            workers = whole(self.threads if workers is None else workers, "workers", 1)
        seqs, lens = self.sequences(data, lengths)
        if self.has_step_energy:
            if method == "ais":
                return self._ais_log_prob(seqs, lens, runs, betas, base, workers, progress)
            return self._energy_log_prob(seqs, lens, max_states)
        order = self._sorted(lens)
        lengths = np.ascontiguousarray(lens[order])
        srt = {g: np.ascontiguousarray(a[order]) for g, a in seqs.items()}
        out = np.zeros(len(lens))

        def part(sub):
            part_out = np.zeros(len(sub))
            self.call("sequence_logp", n_rows=len(sub), lengths=np.ascontiguousarray(lengths[sub]),
                      seqs={g: np.ascontiguousarray(a[sub]) for g, a in srt.items()}, params=self._p64, out=part_out)
            out[sub] = part_out

        self._in_sequence_parts(part, lengths)  # sequences are independent: the same values on any thread count
        return self._unsorted(out, order)

    def _backward(self, mode: str, st: dict, eps: dict, n: int, seed_p, seed_q):
        """(log p, None, grads) of a minibatch of sequences (the directed learner's step); for a
        per-step energy, (minus the free-energy gap, None, the CD-k gradients)."""
        # a minibatch of what fit() checked and padded once: no second check per minibatch
        lens = np.asarray(st[LENGTHS]).astype(np.int64)
        seqs = {g: np.ascontiguousarray(st[g][:, :int(lens.max())]) for g in self.visible}
        if self.has_step_energy:
            rows = np.asarray(st[ROWS]).astype(np.int64) if ROWS in st and self._pcd_chains else None
            gap, grads = self._cd_step(seqs, lens, seed_p, self._cd_k, rows)
            return gap, None, grads
        return self._sequence_backward(seqs, lens, seed_p)

    @property
    def _epoch_measure(self):
        """What the learner records after each epoch for a per-step energy: the exact
        log-likelihood when each step's visibles can be enumerated (on a fixed sample of
        sequences), else nothing more than the epoch's mean free-energy gap (train_objective)."""
        if not self.has_step_energy:
            return None

        def measure(data, prefix):
            seqs, lens = self.sequences(data)
            seqs, lens = {g: a[:MEASURED] for g, a in seqs.items()}, lens[:MEASURED]  # a fixed sample
            try:
                return {f"{prefix}_loglik": float(np.mean(self._energy_log_prob(seqs, lens, 2 ** 12)))}
            except ValueError:  # too many states: the epoch's train_objective (the CD gap) is the record
                return {}
        return measure

    def _gradient_call(self, lens: np.ndarray, seed):
        """What a learning kernel takes, rows sorted longest first: (order, sorted lengths, sorted
        seeds, out, grads and their flat views); `_unsorted(out, order)` puts `out` back."""
        n = len(lens)
        order = self._sorted(lens)
        seed = np.ascontiguousarray(np.ascontiguousarray(np.broadcast_to(seed, (n,)), dtype=np.float64)[order])
        grads = {k: np.zeros(self._shapes[k]) for k in self._p}
        flat = {k: g if g.ndim else g.reshape(1) for k, g in grads.items()}
        return order, np.ascontiguousarray(lens[order]), seed, np.zeros(n), grads, flat

    @staticmethod
    def _unsorted(out: np.ndarray, order: np.ndarray) -> np.ndarray:
        back = np.empty_like(out)
        back[order] = out
        return back

    def _sequence_backward(self, seqs: dict, lens: np.ndarray, seed):
        order, lengths, seed, out, grads, flat = self._gradient_call(lens, seed)
        srt = {g: np.ascontiguousarray(a[order]) for g, a in seqs.items()}

        def part(sub):
            own = flat if len(sub) == len(lengths) else {p: np.zeros_like(v) for p, v in flat.items()}
            part_out = np.zeros(len(sub))
            self.call("sequence_backward", n_rows=len(sub), lengths=np.ascontiguousarray(lengths[sub]),
                      seqs={g: np.ascontiguousarray(a[sub]) for g, a in srt.items()}, params=self._p64,
                      seed=np.ascontiguousarray(seed[sub]), out=part_out, grads=own)
            out[sub] = part_out
            return own

        self._add_parts(self._in_sequence_parts(part, lengths), flat)
        return self._unsorted(out, order), None, grads

    def gradients(self, data: Mapping, objective: str | None = None, lengths=None, k: int = 1, **options):
        """(mean log p per sequence, its gradient for every parameter), by backpropagation through
        time; for a per-step energy (objective "cd"), minus the mean free-energy gap and the CD-k
        estimate of the log-likelihood's gradient."""
        if options:
            raise TypeError(f"unexpected options {', '.join(options)}")
        objective = objective or ("cd" if self.has_step_energy else "ml")
        if self.has_step_energy:
            if objective != "cd":
                raise ValueError(f"{self.NAME} has an energy at every step: its gradients are CD-k estimates, "
                                 f"objective='cd'")
            seqs, lens = self.sequences(data, lengths)
            gap, grads = self._cd_step(seqs, lens, 1.0 / len(lens), whole(k, "k", 1))
            return float(gap.mean()), grads
        if objective != "ml":
            raise ValueError("a sequence model's gradients are those of the exact log-likelihood: objective='ml'")
        seqs, lens = self.sequences(data, lengths)
        logp, _, grads = self._sequence_backward(seqs, lens, 1.0 / len(lens))
        return float(logp.mean()), grads

    # ------------------------------------------------------------------ the learner's view of the data
    _pcd_chains: dict = {}  # PCD: the persistent chains of the training sequences, padded

    def _n_of(self, data: Mapping) -> int:
        if isinstance(data, Mapping) and LENGTHS in data:
            return len(data[LENGTHS])
        return super()._n_of(data)

    def _array(self, name, value, n=None, check_domain=True):
        if name in (LENGTHS, ROWS):
            return np.asarray(value, dtype=np.float64)
        return np.asarray(value, dtype=np.float64)  # padded sequences, checked by `sequences` first

    def fit(self, data: Mapping, method: str | None = None, lengths=None, validation=None, **options):
        """Train by maximum likelihood (method "ml", the default): Adam on minibatches of
        sequences (batch_size sequences), epochs, lr, progress, checkpoint, resume and
        callback as for every directed model (docs/learning.md)."""
        from .dlearn import fit_directed

        if self.has_step_energy:
            method = method or "cd"
            if method not in ("cd", "pcd"):
                raise ValueError(f"{self.NAME} has an energy at every step: train it with method='cd' or 'pcd' "
                                 f"(CD-k at each step, backpropagated through time), not {method!r}")
            self._cd_k = whole(options.pop("k", 1), "k", 1)
        else:
            method = method or "ml"
            if method != "ml":
                raise ValueError(f"{self.NAME} unfolds in time and has an exact likelihood: train it with "
                                 f"method='ml' (not {method!r})")
        seqs, lens = self.sequences(data, lengths)
        packed = {**seqs, LENGTHS: lens}
        self._pcd_chains = {}
        if method == "pcd":  # one chain per training frame, started at the data
            self._pcd_chains = {g: a.copy() for g, a in self._with_hidden(seqs, lens).items()}
            packed[ROWS] = np.arange(len(lens))
        if validation is not None:
            vseqs, vlens = self.sequences(validation)
            validation = {**vseqs, LENGTHS: vlens}
        options.setdefault("batch_size", 10)
        return fit_directed(self, packed, method="ml", validation=validation, **options)

    # ------------------------------------------------------------------ sampling
    _cd_k = 1

    def sample(self, n: int, length=16, clamp: Mapping | None = None, mask: Mapping | None = None,
               k: int = 25, **options) -> dict:
        """n sequences drawn step by step: `length` frames each (or one length per sequence;
        shorter ones are zero past their end). `clamp` gives values (padded (n, T, ...) arrays
        or lists) and `mask` where they hold (True: kept; default everywhere clamped); each step
        is drawn given the past and the clamped values of the step as ancestral sampling draws
        them (docs/sequences.md: exact when, within a step, the clamped elements come first in
        the step's order)."""
        if options:
            raise TypeError(f"unexpected options {', '.join(options)}")
        n = whole(n, "n", 1)
        lens = np.broadcast_to(np.asarray(length), (n,))
        if np.any(lens != np.round(lens)) or lens.min() < 1:
            raise ValueError("length must be a whole number >= 1, or one per sequence")
        lens = lens.astype(np.int64)
        T = int(lens.max())
        clamp, mask = dict(mapping(clamp, "clamp")), dict(mapping(mask, "mask"))
        for g in list(clamp) + list(mask):
            if g not in self.STEPS:
                raise ValueError(f"cannot clamp {g!r}: {self.NAME}'s sequences are {', '.join(self.STEPS)}")
        for g in mask:
            if g not in clamp:
                raise ValueError(f"mask given for {g} but {g} is not clamped")
        seqs = {g: np.zeros((n, T) + self._shapes[g]) for g in self.STEPS}
        masks = {g: np.zeros((n, T) + self._shapes[g], np.uint8) for g in self.STEPS}
        for g, v in clamp.items():
            if isinstance(v, (list, tuple)):
                arr, _ = self._padded(g, v, None)
            else:
                arr = np.asarray(self._in_dtype(g, v), dtype=np.float64)
            if arr.shape[0] != n or arr.shape[2:] != self._shapes[g] or arr.shape[1] < T:
                raise ValueError(f"clamp[{g!r}] has shape {arr.shape}; expected ({n}, {T}, "
                                 f"{', '.join(map(str, self._shapes[g]))})")
            arr = arr[:, :T]
            m = np.ones(arr.shape, bool) if g not in mask else np.broadcast_to(np.asarray(mask[g], bool)[:, :T]
                                                                                if np.ndim(mask[g]) > 1
                                                                                else np.asarray(mask[g], bool),
                                                                                arr.shape)
            for i, L in enumerate(lens):
                m_i = m[i, :L]
                if m_i.any():
                    self._check_domain(g, arr[i, :L][m_i])
            seqs[g] = np.where(m, arr, 0.0)
            masks[g] = m.astype(np.uint8)
        order = self._sorted(lens)
        sorted_seqs = {g: np.ascontiguousarray(a[order]) for g, a in seqs.items()}
        sorted_masks = {g: np.ascontiguousarray(a[order]) for g, a in masks.items()}
        lengths, rng = np.ascontiguousarray(lens[order]), self._streams(n)
        kernel, extra = (("sequence_gibbs_sample", {"k": whole(k, "k", 1)}) if self.has_step_energy
                         else ("sequence_sample", {}))

        def part(sub):  # a sequence draws from its own stream: the same sequences on any thread count
            own = {g: np.ascontiguousarray(a[sub]) for g, a in sorted_seqs.items()}
            self.call(kernel, n_rows=len(sub), lengths=np.ascontiguousarray(lengths[sub]), seqs=own,
                      seq_masks={g: np.ascontiguousarray(a[sub]) for g, a in sorted_masks.items()},
                      params=self._p64, rng=np.ascontiguousarray(rng[sub]), **extra)
            for g, a in own.items():
                sorted_seqs[g][sub] = a

        self._in_sequence_parts(part, lengths)
        out = {}
        for g, a in sorted_seqs.items():
            back = np.empty_like(a)
            back[order] = a
            for i, L in enumerate(lens):
                back[i, L:] = 0.0
            out[g] = back.astype(self.dtype) if self.dtype != np.float64 else back
        return out

    # ------------------------------------------------------------------ a per-step energy (RNN-RBM)
    def _kept_states(self, seqs: dict, lens, order) -> dict:
        n, T = len(lens), int(lens.max())
        kept = {g: np.zeros((T, n) + self._shapes[g]) for g, _ in self.STATES}
        self.call("sequence_states", n_rows=n, lengths=np.ascontiguousarray(lens[order]),
                  seqs={g: np.ascontiguousarray(a[order]) for g, a in self._with_hidden(seqs, lens).items()},
                  params=self._p64, kept=kept)
        return kept

    def _step_free_energy(self, frames: dict, states: dict, n: int) -> np.ndarray:
        """F(step's visibles, states) per row, the step's latents summed out."""
        state = {g: np.ascontiguousarray(frames[g]) if g in frames else np.zeros((n,) + self._shapes[g])
                 for g in self.ORDERS["groups"] if g not in states}
        state.update({g: np.ascontiguousarray(v) for g, v in states.items()})
        out = np.zeros(n)
        self.call("free_energy", state=state, params=self._p64, summed={g: g in self._hidden for g in state},
                  beta=1.0, out=out)
        return out

    def _energy_log_prob(self, seqs: dict, lens, max_states: int) -> np.ndarray:
        """sum over steps of -F(v_t, u) - log Z(u), log Z enumerated over the step's visibles."""
        import itertools

        visible = self.visible
        count = 2 ** sum(int(np.prod(self._shapes[g])) for g in visible)
        if any(self.all_domains[g] != "binary" for g in visible) or count > max_states:
            raise ValueError(f"log_prob of {self.NAME} sums each step's partition function over its "
                             f"{count if count <= 2 ** 62 else 'too many'} visible states (max_states="
                             f"{max_states}); estimate each step's log Z by AIS instead: pass method='ais' "
                             f"(e.g. log_prob(data, method='ais', runs=10, "
                             f"betas=gdsl.runtime.ais.standard_schedule(1000)))")
        order = self._sorted(lens)
        kept = self._kept_states(seqs, lens, order)
        sizes = [int(np.prod(self._shapes[g])) for g in visible]
        table = np.array(list(itertools.product([0.0, 1.0], repeat=sum(sizes))))
        total = np.zeros(len(lens))
        srt = {g: a[order] for g, a in seqs.items()}
        for t in range(int(lens.max())):
            na = int(np.sum(lens > t))
            states = {g: kept[g][t, :na] for g, _ in self.STATES}
            frames = {g: srt[g][:na, t] for g in visible}
            f_data = self._step_free_energy(frames, states, na)
            reps = len(table)
            all_frames, at = {}, 0
            for g, k in zip(visible, sizes):
                all_frames[g] = np.tile(table[:, at:at + k], (na, 1)).reshape((na * reps,) + self._shapes[g])
                at += k
            rep_states = {g: np.repeat(v, reps, axis=0) for g, v in states.items()}
            f_all = self._step_free_energy(all_frames, rep_states, na * reps).reshape(na, reps)
            top = (-f_all).max(axis=1)
            log_z = top + np.log(np.exp(-f_all - top[:, None]).sum(axis=1))
            total[:na] += -f_data - log_z
        result = np.empty_like(total)
        result[order] = total
        return result

    def _cd_step(self, seqs: dict, lens, seed, k: int, rows=None):
        """(-(free-energy gap) per sequence, CD-k gradients backpropagated through time); with
        `rows` (PCD), the model's side goes on from those training sequences' persistent chains.
        The sequences are cut over threads (`_in_sequence_parts`); every frame draws from the
        stream it has in the whole batch, so the parts give the one-call result to rounding."""
        order, lengths, seed, out, grads, flat = self._gradient_call(lens, seed)
        # the data in sorted order; the latents' frames are zeros, so they need no sorting
        padded = self._with_hidden({g: np.ascontiguousarray(a[order]) for g, a in seqs.items()}, lens)
        T = next(iter(padded.values())).shape[1]
        rng = self._streams(int(lens.sum()))
        frame = _frame_index(lengths)
        persistent = rows is not None

        def part(sub):
            whole = len(sub) == len(lengths)  # one part: the arrays as they are, no copies
            chains = ({g: np.ascontiguousarray(self._pcd_chains[g][rows[order[sub]], :T]) for g in padded}
                      if persistent else {g: np.zeros((0, 0) + self._shapes[g]) for g in padded})
            own = flat if whole else {p: np.zeros_like(v) for p, v in flat.items()}
            part_out = np.zeros(len(sub))
            self.call("sequence_cd", n_rows=len(sub), lengths=lengths if whole else np.ascontiguousarray(lengths[sub]),
                      seqs=padded if whole else {g: np.ascontiguousarray(a[sub]) for g, a in padded.items()},
                      seq_chains=chains, params=self._p64, seed=seed if whole else np.ascontiguousarray(seed[sub]),
                      k=int(k), persistent=persistent,
                      rng=rng if whole else np.ascontiguousarray(rng[_frames_of(frame, lengths, sub)]), out=part_out,
                      grads=own)
            if persistent:
                for g, c in chains.items():
                    self._pcd_chains[g][rows[order[sub]], :T] = c
            out[sub] = part_out
            return own

        self._add_parts(self._in_sequence_parts(part, lengths), flat)
        return -self._unsorted(out, order), grads

    def _in_sequence_parts(self, run, lengths: np.ndarray) -> list:
        """run(rows) for parts of the sorted sequences, one thread each (at most self.threads, each of
        MIN_SEQUENCES or more): rows dealt round robin, so each part stays sorted longest first and
        the parts have about as many frames. The results in order of the parts."""
        from .rows import run_parts

        n = len(lengths)
        parts = max(1, min(self.threads, n // MIN_SEQUENCES))
        return run_parts(run, [(np.arange(p, n, parts),) for p in range(parts)])

    @staticmethod
    def _add_parts(results: list, flat: dict) -> None:
        """Add the parts' gradients into `flat` (the first part may have written there itself)."""
        for own in results:
            if own is flat:
                continue
            for p, g in own.items():
                flat[p] += g

    # ------------------------------------------------------------------ AIS for every step (a per-step energy)
    def _frames(self, seqs: dict, lens: np.ndarray, order: np.ndarray):
        """Every frame of every sequence in step order (the running rows of step 0, then of step 1...):
        (the frames' sorted row, their step, the step groups' frames, the states before them)."""
        kept = self._kept_states(seqs, lens, order)
        srt = {g: a[order] for g, a in seqs.items()}
        sorted_lens = lens[order]
        steps = [np.arange(int(np.sum(sorted_lens > t))) for t in range(int(lens.max()))]
        row = np.concatenate(steps)
        step = np.concatenate([np.full(len(r), t) for t, r in enumerate(steps)])
        frames = {g: np.ascontiguousarray(srt[g][row, step]) for g in self.visible}
        states = {g: np.ascontiguousarray(kept[g][step, row]) for g, _ in self.STATES}
        return row, step, frames, states

    def _annealed(self) -> list[str]:
        """The step's groups AIS anneals (the latents are summed out in its weights)."""
        annealed = [g for g in self.STEPS if g not in self._hidden]
        for g in self.STEPS:
            if self.all_domains[g] == "real":
                raise ValueError(f"log_prob(method='ais') anneals and sums out discrete groups only, and {g} is "
                                 f"real; use method='exact' where the steps can be enumerated")
        return annealed

    def _step_bases(self, states: dict, n: int, base: str) -> dict:
        """Base fields (n, elements) of every annealed group, one row per frame: the step's mean-field
        means given the frame's states ("mean-field"), or the fields with the step's other groups at
        zero ("biases")."""
        steps = [g for g in self.ORDERS["groups"] if g not in states]
        x = {g: np.zeros((n,) + self._shapes[g]) for g in steps}
        x.update(states)
        annealed = self._annealed()
        out = {}
        if base == "biases":
            for g in annealed:
                f = np.zeros((n,) + self._shapes[g])
                self.call(f"field_{g}", state=x, params=self._p64, f=f)
                out[g] = f.reshape(n, -1)
            return out
        masks = {g: np.full(v.shape, g in states, np.uint8) for g, v in x.items()}
        it, _ = self.call("mean_field", state=x, params=self._p64, masks=masks,
                          free={g: g not in states for g in x}, damping=0.5, tol=1e-5, max_iter=MF_ITERS)
        if it < 0:
            raise ValueError(self._precision_problem() + " in the mean-field base of AIS")
        for g in annealed:
            out[g] = base_from_means(x[g].reshape(n, -1), self.all_domains[g], self._categories.get(g))
        return out

    def _ais_log_prob(self, seqs: dict, lens: np.ndarray, runs: int, betas: np.ndarray, base: str, workers: int,
                      progress: bool) -> LogProbEstimate:
        """log p of each sequence with every step's log Z(past) estimated by forward AIS: runs x frames
        chains annealed together (`ais_steps_rows`), chain c = k * frames + f on frame f with frame f's
        base (row c % frames of the row bases), the states held, the step's latents summed out."""
        from concurrent.futures import ThreadPoolExecutor

        from .model import _progress
        from .rows import one_blas_thread_if

        annealed, hidden = self._annealed(), self._hidden
        order = self._sorted(lens)
        row, step, frames, states = self._frames(seqs, lens, order)
        n_frames = len(row)
        f_data = self._step_free_energy(frames, states, n_frames)
        bases = self._step_bases(states, n_frames, base)
        kinds = {g: (self.all_domains[g], self._categories.get(g)) for g in annealed}
        log_z0 = sum(row_log_z0(bases[g], *kinds[g]) for g in annealed)
        for g in hidden:  # summed out at beta = 0: every state of the latents has weight 1
            log_z0 = log_z0 + float(row_log_z0(np.zeros((1, int(np.prod(self._shapes[g])))), self.all_domains[g],
                                               self._categories.get(g))[0])
        groups = list(self.ORDERS["groups"])
        n = runs * n_frames
        start = {}  # every chain's state: the annealed groups drawn from their frame's base
        for g in groups:
            shape = self._shapes[g]
            if g in annealed:
                start[g] = row_draws(self._rng, bases[g], n, *kinds[g]).reshape((n,) + shape)
            elif g in states:
                start[g] = np.tile(states[g], (runs,) + (1,) * len(shape))
            else:
                start[g] = np.zeros((n,) + shape)
        streams = self._streams(n)
        row_bases = {}
        for g in groups:
            size = int(np.prod(self._shapes[g]))
            bf = bases[g] if g in annealed else np.zeros((1, size))
            row_bases[g] = (np.ascontiguousarray(bf), np.zeros((1, size)))
        summed = {g: g in hidden for g in groups}
        free = {g: g not in states for g in groups}
        # the chains cut into parts of whole runs (so chain c's frame is c % frames in every part)
        bounds = np.linspace(0, runs, min(workers, runs) + 1).astype(int) * n_frames
        parts = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            parts.append({"state": {g: np.ascontiguousarray(v[a:b]) for g, v in start.items()},
                          "masks": {g: np.full((b - a,) + self._shapes[g], g in states, np.uint8) for g in groups},
                          "rng": np.ascontiguousarray(streams[a:b]), "logw": np.zeros(b - a)})

        def anneal(part, seg):
            return self.call("ais_steps_rows", state=part["state"], params=self._p64, masks=part["masks"],
                             free=free, row_bases=row_bases, summed=summed, betas=seg, rng=part["rng"],
                             logw=part["logw"])

        bar = _progress(len(betas) - 1, progress, "AIS")
        done = 0
        with one_blas_thread_if(len(parts) > 1), ThreadPoolExecutor(max_workers=len(parts)) as pool:
            for seg in ais_segments(betas):
                if not all(pool.map(lambda part: anneal(part, seg), parts)):
                    raise ValueError(self._precision_problem() + " during annealing")
                done += len(seg) - 1
                bar(done)
        logw = np.concatenate([p["logw"] for p in parts]).reshape(runs, n_frames).T  # (frames, runs)
        log_z, sd = estimates(log_z0, logw)
        # log Z is at least the log-mass of any one state: of the data frame, and of the final chains
        final = {g: np.concatenate([p["state"][g] for p in parts]) for g in groups}
        f_final = self._step_free_energy({g: final[g] for g in annealed}, {g: final[g] for g, _ in self.STATES}, n)
        floor = np.maximum(-f_data, (-f_final).reshape(runs, n_frames).max(axis=0))
        below = int(np.sum(log_z < floor - 1e-9))
        if below:
            import warnings

            warnings.warn(f"AIS: the estimate of log Z is below the log-mass of one of its own states in "
                          f"{below} of {n_frames} frames: it has not converged there (try more betas or runs)",
                          RuntimeWarning, stacklevel=3)
        total = np.zeros(len(lens))
        var = np.zeros(len(lens))
        np.add.at(total, row, -f_data - log_z)
        np.add.at(var, row, sd ** 2)
        sequence = order[row]  # each frame's sequence, in the order the data gave them
        self.last_ais = {"log_weights": logw, "log_z0": log_z0, "log_z": log_z, "sd": sd, "betas": len(betas),
                         "base": base, "sequence": sequence, "step": step, "free_energy": f_data,
                         "state_floor": floor}
        return LogProbEstimate(self._unsorted(total, order), np.sqrt(self._unsorted(var, order)))


def _frame_index(lengths: np.ndarray) -> np.ndarray:
    """first[t]: where step t's frames start in a batch of sequences sorted longest first, whose
    frames the kernels take in step order (frame (r, t) is first[t] + r)."""
    running = (lengths[None, :] > np.arange(int(lengths[0]) if len(lengths) else 0)[:, None]).sum(axis=1)
    return np.concatenate([[0], np.cumsum(running)]).astype(np.int64)


def _frames_of(first: np.ndarray, lengths: np.ndarray, sub: np.ndarray) -> np.ndarray:
    """The whole batch's index of every frame of the sequences `sub` (sorted rows, longest first),
    in the step order a call on those sequences alone takes them."""
    own = lengths[sub]
    steps, rows = np.nonzero(own[None, :] > np.arange(int(own[0]))[:, None])
    return first[steps] + sub[rows]

