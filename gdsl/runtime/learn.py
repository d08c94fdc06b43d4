"""Learning for energy models: `fit`, checkpoints, and parameter files.

Every epoch runs inside the compiled `train_epoch` kernel; Python only prepares the
epoch (learning rate, a permutation, RNG streams drawn from the model's seed),
checks the result, measures, reports and checkpoints. Because the kernel returns
only when the epoch is complete, Ctrl-C always lands between epochs and leaves the
last completed epoch's parameters in place.
"""
from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from ..abi import ONE_HOT, row_states
from .checks import generator, mapping, real, refuse_nothing_to_learn, whole
from .notebook import History
from .rows import MIN_ROWS, one_blas_thread_if
from .sync import new_sync

FORMAT = 1
METHODS = ("cd", "pcd", "variational")


class TrainingError(ValueError):
    """Training failed: parameters, chains or a measurement became NaN or infinite, or the
    parameters diverged (see DIVERGENCE_GROWTH). The training state of the last good epoch
    (parameters, persistent chains, velocities or optimiser state, random generator) is put
    back before it is raised, so the model can be trained again with a smaller learning rate."""


# Divergence that stays finite (lr=1e30 gives weights of 1e30 and a log-likelihood of -1e32, all
# finite): an epoch fails when the largest parameter magnitude exceeds DIVERGENCE_GROWTH times the
# scale the fit started from, the largest of (the largest parameter magnitude at the start of the
# fit, the largest magnitude in the training data, 1). Six orders of magnitude: ordinary training
# (unit-scale data, weights of at most tens) is far from it. None turns the check off.
DIVERGENCE_GROWTH = 1e6


def largest_magnitude(arrays) -> float:
    """max |x| over a dict of arrays (0 for none), as a float. From each array's max and min, in
    its own type: converting 10,000 MNIST rows to float64 first took 0.07-0.3 s, more than an
    epoch (NaN still propagates: max and min return it)."""
    def top(v) -> float:
        v = np.asarray(v)
        return max(abs(float(v.max())), abs(float(v.min())))

    return max((top(v) for v in arrays.values() if np.size(v)), default=0.0)


def divergence_scale(params, data) -> float:
    """The scale divergence is measured against (see DIVERGENCE_GROWTH)."""
    return max(1.0, largest_magnitude(params), largest_magnitude(data))


def diverged(params, scale: float, epoch: int):
    """A TrainingError message when the parameters have diverged (see DIVERGENCE_GROWTH), else None."""
    if DIVERGENCE_GROWTH is None:
        return None
    top = largest_magnitude(params)
    if top <= DIVERGENCE_GROWTH * scale:
        return None
    name = max(params, key=lambda k: largest_magnitude({k: params[k]}))
    return (f"epoch {epoch + 1}: the parameters diverged: the largest |{name}| is {top:.3g}, more than "
            f"{DIVERGENCE_GROWTH:g} times the scale the fit started from ({scale:.3g}: the largest of the "
            f"parameters' and the data's magnitudes, and 1)")


def kept_text(epoch: int) -> str:
    """Which state a failed epoch goes back to, for the messages."""
    return f"of the end of epoch {epoch}" if epoch else "from before the first epoch of this fit"


def learning_rate(lr, schedule, epoch: int, epochs: int) -> float:
    """The step size of an epoch: constant, 'linear' decay to 0, 'exp:r' (times r per epoch), or a callable."""
    if schedule is None or schedule == "constant":
        return float(lr)
    if callable(schedule):
        return float(schedule(epoch))
    if schedule == "linear":
        return float(lr) * (1.0 - epoch / max(1, epochs))
    if isinstance(schedule, str) and schedule.startswith("exp:"):
        return float(lr) * float(schedule[4:]) ** epoch
    raise ValueError(f"unknown lr_schedule {schedule!r}: use 'constant', 'linear', 'exp:RATE' or a function")


class LearningMixin:
    """fit / save / load_params for compiled energy models (mixed into ModelBase)."""

    # ------------------------------------------------------------------ files
    def _metadata(self) -> dict:
        return {"format": FORMAT, "model": self.NAME, "model_sha256": self.MODEL_SHA256,
                "sizes": self.sizes, "consts": self.consts, "dtype": self.dtype.name,
                "gdsl_version": self.GDSL_VERSION}

    def save(self, path, _extra: Mapping | None = None) -> None:
        """Write the parameters (and the model's identity) to an .npz file."""
        arrays = {f"param/{k}": np.asarray(v) for k, v in self._p.items()}
        meta = self._metadata()
        for k, v in (_extra or {}).items():
            if isinstance(v, np.ndarray):
                arrays[k] = v
            else:
                meta[k] = v
        arrays["meta"] = np.array(json.dumps(meta))
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
            tmp.replace(path)  # never leave a half-written file under the real name
        except BaseException:  # nor a stray .tmp beside it (e.g. when path is a directory)
            tmp.unlink(missing_ok=True)
            raise

    def _read(self, path):
        try:
            with np.load(path, allow_pickle=False) as f:
                data = {k: f[k] for k in f.files}
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read parameters from {path}: {e}") from None
        if "meta" not in data:
            raise ValueError(f"{path} is not a gdsl parameter file (no metadata)")
        meta = json.loads(str(data["meta"]))
        mine = self._metadata()
        problems = []
        if meta.get("model") != mine["model"]:
            problems.append(f"it is for model {meta.get('model')!r}, not {mine['model']!r}")
        elif meta.get("model_sha256") != mine["model_sha256"]:
            problems.append("it was saved from a different version of the model's .gdl source")
        if meta.get("sizes") != mine["sizes"]:
            problems.append(f"its sizes are {meta.get('sizes')}, this model's are {mine['sizes']}")
        if meta.get("consts") != mine["consts"]:
            problems.append(f"its constants are {meta.get('consts')}, this model's are {mine['consts']}")
        if problems:
            raise ValueError(f"cannot load {path}: " + "; ".join(problems))
        return meta, data

    def _read_checkpoint(self, path, config: dict, same: tuple):
        """A checkpoint's training metadata and arrays, with its parameters loaded: refused
        when it is a plain parameter file, or was trained with other values of the `same` keys
        of config (they decide what its saved state means)."""
        meta, data = self._read(path)
        if "training" not in meta:
            raise ValueError(f"{path} is a parameter file, not a checkpoint (no training state)")
        saved = meta["training"]
        for key in same:
            if saved["config"].get(key) != config.get(key):
                raise ValueError(f"cannot resume from {path}: it was trained with {key}="
                                 f"{saved['config'].get(key)!r}, not {config.get(key)!r}")
        self.params = {k[len("param/"):]: v for k, v in data.items() if k.startswith("param/")}
        return saved, data

    def load_params(self, path) -> None:
        """Set the parameters from a file written by `save` (or a checkpoint) of this same model."""
        _, data = self._read(path)
        values = {k[len("param/"):]: v for k, v in data.items() if k.startswith("param/")}
        missing = set(self._p) - set(values)
        if missing:
            raise ValueError(f"cannot load {path}: it has no values for {', '.join(sorted(missing))}")
        self.params = values

    # ------------------------------------------------------------------ fitting
    def fit(self, data: Mapping, method: str = "pcd", k: int = 1, lr: float = 0.01, epochs: int = 10,
            batch_size: int = 100, momentum: float = 0.0, weight_decay: float = 0.0, lr_schedule=None,
            chains: int | None = None, mf_iters: int = 30, mf_tol: float = 1e-5, mf_damping: float = 0.0,
            validation: Mapping | None = None, callback: Callable | None = None, monitor="auto",
            progress: bool | None = None, checkpoint=None, checkpoint_every: int = 1, resume=None,
            target: str | None = None, alpha: float = 0.01, centered: bool = False,
            offset_rate: float = 0.01, input_fraction: float = 0.5, data_as_means: bool = False) -> list:
        """Train by stochastic maximum likelihood; return the history (one dict per epoch).

        method: "cd" (CD-k), "pcd" (persistent chains, i.e. SML), "variational" (mean-field
        positive phase even where the posterior factorises). Models whose latents are not
        conditionally independent given the data (a DBM) get the mean-field positive phase
        with either method. "discriminative" maximises the exact log p(target | rest) of a class
        label, "hybrid" that plus alpha * log p(data) (runtime/discriminative.py). "mpt" is
        multi-prediction training: mean field (mf_iters sweeps) predicts the data elements left out
        of a random `input_fraction` given, and the loss is back-propagated through it (runtime/mpt.py).
        centered=True takes the steps of the model written in x - mu_x (Montavon & Mueller 2012),
        the offsets mu_x moving towards the positive phase's means at `offset_rate`.
        data_as_means=True takes binary, spin or categorical data given as means (probabilities in
        [0, 1], as scikit-learn's BernoulliRBM takes grey levels): the positive phase uses them as
        they are. See docs/learning.md for every option."""
        refuse_nothing_to_learn(self)
        if data_as_means and method not in METHODS:
            raise ValueError(f"data_as_means is for the methods {', '.join(METHODS)}; {method!r} needs data in the "
                             f"variables' domains")
        if method == "greedy":
            from .greedy import fit_greedy

            return fit_greedy(self, data, k=k, lr=lr, epochs=epochs, batch_size=batch_size, momentum=momentum,
                              weight_decay=weight_decay, lr_schedule=lr_schedule, progress=progress)
        if method in ("discriminative", "hybrid"):
            from .discriminative import fit_discriminative

            return fit_discriminative(self, data, target, hybrid=method == "hybrid", alpha=alpha, lr=lr,
                                      epochs=epochs, batch_size=batch_size, momentum=momentum,
                                      weight_decay=weight_decay, lr_schedule=lr_schedule, k=k, chains=chains,
                                      validation=validation, callback=callback, progress=progress,
                                      checkpoint=checkpoint)
        if method == "mpt":
            from .mpt import fit_multi_prediction

            return fit_multi_prediction(self, data, lr=lr, epochs=epochs, batch_size=batch_size, momentum=momentum,
                                        weight_decay=weight_decay, lr_schedule=lr_schedule, mf_iters=mf_iters,
                                        mf_damping=mf_damping, input_fraction=input_fraction, validation=validation, callback=callback,
                                        progress=progress, checkpoint=checkpoint)
        if centered and not self.CENTRING:
            raise ValueError(f"centred training is not available for {self.NAME}: {self.CENTRING_REFUSED}")
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; use one of "
                             f"{', '.join(METHODS + ('greedy', 'discriminative', 'hybrid', 'mpt'))}")
        k, epochs, batch_size = whole(k, "k", 1), whole(epochs, "epochs"), whole(batch_size, "batch_size", 1)
        mf_iters, checkpoint_every = whole(mf_iters, "mf_iters", 1), whole(checkpoint_every, "checkpoint_every", 1)
        chains = batch_size if chains is None else whole(chains, "chains", 1)
        momentum = real(momentum, "momentum", 0.0, 1.0, high_open=True)
        mf_damping = real(mf_damping, "mf_damping", 0.0, 1.0, high_open=True)
        mf_tol = real(mf_tol, "mf_tol", 0.0)
        lr = lr if callable(lr_schedule) else real(lr, "lr", 0.0, low_open=True)
        weight_decay = real(weight_decay, "weight_decay", 0.0)
        offset_rate = real(offset_rate, "offset_rate", 0.0, 1.0)
        n = self._n_of(data)
        arrays = {g: self._data_array(g, v, n, data_as_means) for g, v in data.items()}
        if validation is not None:  # checked now, not after the first epoch
            nv = self._n_of(validation)
            validation = {g: self._data_array(g, v, nv, data_as_means) for g, v in validation.items()}
        given = tuple(g for g in self.domains if g in arrays)
        hidden = [g for g in self.domains if g not in arrays]
        factorises = self.why_not_summable(hidden) is None and method != "variational"
        persistent = method in ("pcd", "variational")
        # plain Python numbers: the config goes into checkpoints as JSON (numpy scalars would not)
        config = {"method": method, "k": int(k), "lr": float(lr), "epochs": int(epochs),
                  "batch_size": int(batch_size), "momentum": float(momentum),
                  "weight_decay": float(weight_decay), "chains": chains, "centered": bool(centered),
                  "offset_rate": float(offset_rate),
                  "lr_schedule": lr_schedule if isinstance(lr_schedule, (str, type(None))) else "callable"}
        state = self._training_state(chains, config, resume)
        if "offsets" not in state:
            state["offsets"] = self._initial_offsets(arrays)
        monitors = self._monitors(monitor, given)
        bar = _EpochBar(epochs, progress, first=state["epoch"])
        rows = min(n, 1000)
        probe = {g: v[:rows] for g, v in arrays.items()}  # a fixed training subset to measure on
        undo = None  # set while an epoch is under way: how to go back to the end of the previous one
        scale = divergence_scale(self._p, arrays)
        try:
            while state["epoch"] < epochs:
                epoch = state["epoch"]
                rate = learning_rate(lr, lr_schedule, epoch, epochs)
                if not (np.isfinite(rate) and rate >= 0):
                    raise ValueError(f"the learning rate of epoch {epoch + 1} is {rate!r}; it must be finite "
                                     f"and >= 0")
                before = {key: v.copy() for key, v in self._p.items()}
                undo = self._undo_point(state, before)
                ok = self._run_epoch(arrays, given, factorises, persistent, state, rate, momentum, weight_decay,
                                     k, batch_size, mf_iters, mf_tol, mf_damping, n)
                problem = self._epoch_problem(ok, state, epoch, scale, rate)
                record = {"epoch": epoch + 1, "lr": rate}
                if problem is None:
                    record.update(self._measure(monitors, probe, "train"))
                    bad = [key for key, v in record.items() if not np.isfinite(v)]
                    if bad:
                        problem = (f"epoch {epoch + 1}: {', '.join(bad)} is {record[bad[0]]!r} (the parameters "
                                   f"are finite but the model no longer is)")
                if problem is not None:
                    # the whole training state of the last good epoch: parameters, chains, velocities,
                    # the random generator; without it the next fit started from NaN chains and failed too
                    self._rewind(state, undo)
                    undo = None
                    raise TrainingError(f"{problem}; the parameters, persistent chains and velocities "
                                        f"{kept_text(epoch)} are kept. Lower the learning rate (lr={rate:g}) or add "
                                        f"weight decay")
                if validation is not None:
                    record.update(self._measure(monitors, validation, "valid"))
                state["history"].append(record)
                state["epoch"] = epoch + 1
                undo = None
                bar(record)
                if checkpoint is not None and (state["epoch"] % checkpoint_every == 0 or state["epoch"] == epochs):
                    self._save_checkpoint(checkpoint, state)
                if callback is not None and callback(self, record) is False:
                    break
        except KeyboardInterrupt:
            # Ctrl-C is delivered when the kernel returns (or during the measurements): an epoch that
            # was not recorded is undone, so parameters, chains, history and checkpoint agree
            if undo is not None:
                self._rewind(state, undo)
            bar.close()
            print(f"\ninterrupted after epoch {state['epoch']}; parameters kept"
                  + (f", checkpoint in {checkpoint}" if checkpoint is not None else ""), file=sys.stderr)
            if checkpoint is not None:
                self._save_checkpoint(checkpoint, state)
            return History(state["history"])
        finally:
            self._epoch_cache = self._part_grads_cache = None  # they hold the training data: not past the fit
        bar.close()
        return History(state["history"])

    def _data_array(self, g, value, n, as_means: bool) -> np.ndarray:
        """A data group's array: values of its domain, or with `as_means` means of it."""
        if not as_means:
            return self._array(g, value, n)
        arr = self._array(g, value, n, check_domain=False)
        self._check_means(g, arr, "the data (as means)")
        return arr

    def multi_prediction_loss(self, data: Mapping, inputs: Mapping, mf_iters: int = 10,
                              mf_damping: float = 0.0) -> np.ndarray:
        """Per row, the cross-entropy of the data elements not marked in `inputs` (a boolean mask per
        data group, True = given) under their means after `mf_iters` mean-field sweeps with the given
        elements clamped: the loss `fit(method="mpt")` minimises, and an inpainting score."""
        from .mpt import _data, loss_and_gradient, refusal

        self._need_energy("multi_prediction_loss()", "log_prob(data) scores data exactly.")
        why = refusal(self)
        if why:
            raise ValueError(why)
        arrays = _data(self, data)
        inputs = mapping(inputs, "inputs")
        for g in inputs:
            if g not in arrays:
                raise ValueError(f"an inputs mask was given for {g!r}, which is not in the data")
        return loss_and_gradient(self, arrays, inputs, whole(mf_iters, "mf_iters", 1),
                                 damping=real(mf_damping, "mf_damping", 0.0, 1.0, high_open=True))

    def _training_state(self, chains, config, resume):
        if resume is not None:
            saved, data = self._read_checkpoint(resume, config, ("method", "batch_size", "chains", "k"))
            self._rng.bit_generator.state = saved["rng"]
            state = {"epoch": saved["epoch"], "history": saved["history"], "config": config,
                     "velocity": {k[len("velocity/"):]: v.astype(self.dtype) for k, v in data.items()
                                  if k.startswith("velocity/")},
                     "chains": {k[len("chain/"):]: np.ascontiguousarray(v, dtype=self.dtype) for k, v in data.items()
                                if k.startswith("chain/")}}
            offsets = {k[len("offset/"):]: np.ascontiguousarray(v, dtype=self.dtype) for k, v in data.items()
                       if k.startswith("offset/")}
            if offsets:
                state["offsets"] = offsets
            self._state = state
            return state
        previous = getattr(self, "_state", None)
        if previous is not None and next(iter(previous["chains"].values())).shape[0] == chains:
            # a later fit call continues the persistent chains and the momentum of the last one
            chain_state, velocity = previous["chains"], previous["velocity"]
        else:
            chain_state = self.random_state(chains)
            velocity = {p: np.zeros(self._shapes[p], self.dtype) for p in self._p}
        state = {"epoch": 0, "history": [], "config": config, "velocity": velocity, "chains": chain_state}
        if previous is not None and "offsets" in previous:
            state["offsets"] = previous["offsets"]
        self._state = state
        return state

    def _undo_point(self, state, params) -> dict:
        return {"params": params, "epoch": state["epoch"], "rng": self._rng.bit_generator.state,
                "velocity": {k: v.copy() for k, v in state["velocity"].items()},
                "chains": {k: v.copy() for k, v in state["chains"].items()},
                "offsets": {k: v.copy() for k, v in state["offsets"].items()}}

    def _initial_offsets(self, arrays) -> dict:
        """Centring offsets to start from, flat per group: the data's means, the starting means of
        the rest (0.5 for bits)."""
        out = {}
        for g in self.domains:
            size = int(np.prod(self._shapes[g], dtype=np.int64))
            if g in arrays:
                out[g] = np.ascontiguousarray(np.asarray(arrays[g], np.float64).reshape(len(arrays[g]), -1)
                                              .mean(0).astype(self.dtype))
            else:
                out[g] = np.full(size, self._mean_start(g), self.dtype)
        return out

    def _rewind(self, state, undo) -> None:
        self._restore(undo["params"])
        self._rng.bit_generator.state = undo["rng"]
        for key in ("velocity", "chains", "offsets"):
            for name, value in undo[key].items():
                state[key][name][...] = value
        state["epoch"] = undo["epoch"]
        del state["history"][undo["epoch"]:]

    def _save_checkpoint(self, path, state) -> None:
        extra = {f"velocity/{k}": v for k, v in state["velocity"].items()}
        extra.update({f"chain/{k}": v for k, v in state["chains"].items()})
        extra.update({f"offset/{k}": v for k, v in state["offsets"].items()})
        extra["training"] = {"epoch": state["epoch"], "history": state["history"], "config": state["config"],
                             "rng": self._rng.bit_generator.state}
        self.save(path, _extra=extra)

    def _run_epoch(self, arrays, given, factorises, persistent, state, rate, momentum, decay, k, batch, mf_iters,
                   mf_tol, mf_damping, n):
        """One epoch: `train_epoch` once per part of the cores (_epoch_parts), the parts running at
        once on their own threads for the whole epoch (they meet at barriers in compiled code twice
        a minibatch: after sampling, after stepping). BLAS keeps to one thread per part meanwhile."""
        rows, fixed = self._epoch_arrays(arrays, given, state, batch)
        velocity = {p: v.reshape(-1) if v.ndim == 0 else v for p, v in state["velocity"].items()}
        order = self._rng.permutation(n).astype(np.int64)
        centered = bool(state["config"].get("centered", False))
        count = self._epoch_parts(n, batch, state, persistent, centered)
        options = dict(velocity=velocity, lr=float(rate), momentum=float(momentum), decay=float(decay), k=int(k),
                       persistent=bool(persistent), mf_iters=1 if factorises else int(mf_iters),
                       mf_tol=float(mf_tol), mf_damping=float(mf_damping), offsets=state["offsets"],
                       centered=centered, offset_rate=float(state["config"].get("offset_rate", 0.0)),
                       order=order, batch=int(batch), rng=self._streams(rows), parts=count, sync=new_sync(),
                       part_grads=self._part_grads(fixed["grads"], count))
        if count == 1:
            # m.threads = 1 means one thread for BLAS too: two such fits side by side, each with
            # OpenBLAS's two threads spinning, ran 8x slower than with one BLAS thread each
            with one_blas_thread_if(self.threads == 1):
                return self.call("train_epoch", part=0, **options, **fixed)
        epoch, sync = self.KERNELS["train_epoch"], options["sync"]
        calls = [self._kernel_arguments("train_epoch", part=part, **options, **fixed) for part in range(count)]

        def run(args):
            try:
                return epoch(*args)
            except BaseException:
                sync[2] = 1  # aborted: the other parts leave their barrier instead of waiting for this one
                raise

        with one_blas_thread_if(True), ThreadPoolExecutor(max_workers=count) as pool:
            return all([f.result() for f in [pool.submit(run, args) for args in calls]])

    def _part_grads(self, grads, count) -> dict:
        """pg_P, (parts,) + P's shape: each part's statistics of the parameters the epoch does not cut
        by rows (the biases of an RBM; the kernel zeroes them per minibatch); kept for one fit."""
        cached = getattr(self, "_part_grads_cache", None)
        if cached is not None and cached[0] is grads and cached[1] == count:
            return cached[2]
        value = {p: np.zeros((count,) + g.shape, g.dtype) for p, g in grads.items()}
        self._part_grads_cache = (grads, count, value)
        return value

    def _epoch_parts(self, n, batch, state, persistent, centered) -> int:
        """How many threads an epoch runs on: up to m.threads, each with MIN_ROWS rows of every
        minibatch (the last one too) and, for PCD, as many chains; centring keeps one part (its
        offsets follow every minibatch's means)."""
        chains = next(iter(state["chains"].values())).shape[0]
        smallest = min(batch, n - (n - 1) // batch * batch)  # the last minibatch may be short
        count = min(self.threads, smallest // MIN_ROWS, chains // MIN_ROWS if persistent else smallest)
        if count < 2 or centered or self._tiers.uses_numpy("train_epoch"):
            return 1
        return count

    def _epoch_arrays(self, arrays, given, state, batch):
        """The kernel arguments that stay the same from epoch to epoch of one fit (data, masks,
        flags, gradient buffers), built once: on small models they cost 2% of an epoch."""
        chains = state["chains"]
        key = (id(arrays), id(chains), batch)
        cached = getattr(self, "_epoch_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        groups = list(self.domains)
        summed = [g for g in self.DEFAULT_SUMMED if g not in given and self.domains[g] != "real"]
        rows = max(batch, next(iter(chains.values())).shape[0])

        def per_group(value) -> dict:
            return {g: value(g) for g in groups}

        fixed = {
            "data": per_group(lambda g: arrays.get(g, np.zeros((1,) + self._shapes[g], self.dtype))),
            "has_data": per_group(lambda g: g in arrays),
            "pmask": per_group(lambda g: np.full((batch,) + self._shapes[g], g in arrays, np.uint8)),
            "pfree": per_group(lambda g: g not in arrays),
            "init": per_group(self._mean_start),
            "chains": chains,
            "cfree": per_group(lambda g: True),
            "cmask": per_group(lambda g: np.zeros((rows,) + self._shapes[g], np.uint8)),
            "rbmask": per_group(lambda g: np.full((rows,) + self._shapes[g], g not in summed, np.uint8)),
            "rbfree": per_group(lambda g: g in summed),
            # the kernel leaves them zeroed after every step
            "grads": {p: np.zeros(max(1, v.size), self.dtype).reshape(v.shape if v.ndim else (1,))
                      for p, v in state["velocity"].items()},
            # the minibatch's rows every part fills its share of: positive phase, CD chains,
            # Rao-Blackwellised statistics
            "shared_rows": per_group(lambda g: tuple(np.zeros((rows,) + self._shapes[g], chains[g].dtype)
                                                     for _ in range(3))),
        }
        result = (rows, fixed)
        self._epoch_cache = (key, result, arrays, chains)  # the arrays kept alive: their ids stay theirs
        return result

    def _mean_start(self, g) -> float:
        domain = self.domains[g]
        if domain in ONE_HOT:
            return 1.0 / row_states(domain, self._categories[g])
        return 0.5 if domain == "binary" else 0.0

    def _epoch_problem(self, ok, state, epoch, scale, rate):
        """What went wrong in the epoch just run (a message), or None."""
        for name, value in self._p.items():
            if not np.all(np.isfinite(value)):
                return f"parameter {name} became NaN or infinite in epoch {epoch + 1}"
        if not ok:
            return f"epoch {epoch + 1}: {self._precision_problem()}"
        for key in ("chains", "velocity"):
            for name, value in state[key].items():
                if not np.all(np.isfinite(value)):
                    what = "the persistent chains of" if key == "chains" else "the velocity of"
                    return f"epoch {epoch + 1}: {what} {name} became NaN or infinite"
        return diverged(self._p, scale, epoch)

    def _restore(self, before) -> None:
        for name, value in before.items():
            self._p[name][...] = value

    # ------------------------------------------------------------------ monitoring
    def _monitors(self, monitor, given) -> tuple:
        if monitor == "auto":
            hidden = [g for g in self.domains if g not in given]
            chosen = ["recon"] if hidden else []  # nothing to reconstruct through without latents
            if self.why_not_summable(hidden) is None and all(self.domains[g] == "binary" for g in given):
                chosen.append("pll")
            best = self._best_enumeration()
            if best is not None and best[0] <= 16 and (self._best_enumeration(given) or (99,))[0] <= 16:
                chosen.append("loglik")
            return tuple(chosen)
        if monitor is None:
            return ()
        return tuple(monitor)

    def _measure(self, monitors, data, prefix) -> dict:
        out = {}
        if not monitors:
            return out
        given = {g: np.asarray(v) for g, v in data.items()}
        if "recon" in monitors:
            out[f"{prefix}_recon"] = self.reconstruction_error(given)
        if "pll" in monitors:
            out[f"{prefix}_pll"] = float(np.mean(self.pseudo_log_likelihood(given)))
        if "loglik" in monitors:
            out[f"{prefix}_loglik"] = float(np.mean(self.log_prob(given)))
        return out

    def reconstruction_error(self, data: Mapping) -> float:
        """Mean squared difference between the data and E[data | E[latents | data]] (one up-down pass)."""
        up = self.mean_field(data)
        latents = {g: v for g, v in up.items() if g not in data}
        if not latents:
            return 0.0
        down = self.mean_field(latents, init={g: data[g] for g in data}, max_iter=1, tol=0.0,
                               _means_as_evidence=True)
        return float(np.mean([np.mean((down[g] - np.asarray(data[g], dtype=self.dtype)) ** 2) for g in data]))

    def pseudo_log_likelihood(self, data: Mapping, seed: int = 0) -> np.ndarray:
        """Stochastic pseudo-log-likelihood per sample (binary data, free energy available):
        size * log sigmoid(F(x with one random element flipped) - F(x))."""
        rng = generator(seed)
        f0 = self.free_energy(data)
        flipped, size = {}, 0
        for g, v in data.items():
            x = np.array(v, dtype=self.dtype)
            flat = x.reshape(len(x), -1)
            size += flat.shape[1]
            flipped[g] = x
        g0 = next(iter(data))
        flat = flipped[g0].reshape(len(f0), -1)
        j = rng.integers(0, flat.shape[1], size=len(f0))
        flat[np.arange(len(f0)), j] = 1 - flat[np.arange(len(f0)), j]
        f1 = self.free_energy(flipped)
        return size * -np.logaddexp(0.0, -(f1 - f0))


class _EpochBar:
    def __init__(self, epochs, enabled, first=0):
        if enabled is None:
            enabled = sys.stderr.isatty()
        self.enabled = enabled
        self.epochs = epochs
        if enabled:
            from .progress import ProgressBar

            self.bar = ProgressBar(epochs, "training", first=first)

    def __call__(self, record):
        if not self.enabled:
            return
        shown = {k: v for k, v in record.items() if k not in ("epoch", "lr")}
        self.bar.note(" ".join(f"{k}={v:.4g}" for k, v in shown.items()))
        self.bar(record["epoch"])

    def close(self):
        if self.enabled:
            self.bar.close()


__all__ = ["LearningMixin", "TrainingError", "learning_rate"]
