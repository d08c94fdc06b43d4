"""The runtime side of a compiled model: validation, seeding, and the user API.

A generated module defines `class Model(ModelBase)` with the model's metadata
(groups, parameters, blocks, what can be summed out) and its kernels; this class
turns them into `sample`, `gibbs`, `mean_field`, `energy`, `free_energy`,
`log_partition` and `log_prob`. States and data are dicts from group name to
arrays whose first axis is the sample axis.
"""
from __future__ import annotations

import itertools
import math
import sys
import warnings
from typing import Mapping

import numpy as np

from .. import abi, cache
from . import kernels as _k
from . import npkernels as _nk
from .checks import generator, mapping, numeric_array, real, whole
from .consts import check_constants, check_memory
from .enumerate import Enumeration
from .ais import AISMixin, log_z_value
from .classify import ClassifyMixin
from .learn import LearningMixin
from .rows import call_by_rows, default_threads
from .tiers import Tiers, choose

DEFAULT_MAX_STATES = 2 ** 24
_DOMAIN_VALUES = {"binary": (0.0, 1.0), "spin": (-1.0, 1.0)}


class ParamDict(dict):
    """The model's parameters; assignments are validated (shape, finiteness in the model's dtype,
    constraints). Several at once (`update`, `|=`, `model.params = {...}`) are all-or-nothing:
    every value is checked before any is stored. Parameters cannot be added or removed."""

    def __init__(self, owner: "ModelBase", values):
        super().__init__(values)
        self._owner = owner

    def __setitem__(self, name, value):
        self.update({name: value})

    def update(self, other=None, **kw):
        values = dict(self._owner._param_mapping(other), **kw)
        checked = {k: self._owner._validated_param(k, v) for k, v in values.items()}
        for k, v in checked.items():  # every value checked: now store them
            super().__setitem__(k, v)
        if checked:
            self._owner._version += 1

    def __ior__(self, other):
        self.update(other)
        return self

    def setdefault(self, name, default=None):
        if name not in self:
            raise KeyError(f"{self._owner.NAME} has no parameter {name!r}; parameters cannot be added")
        return self[name]

    def _refuse_removal(self, *args):
        raise TypeError(f"the parameters of {self._owner.NAME} cannot be removed; assign new values instead "
                        f"(e.g. m.params['W'] = np.zeros(m.shape('W')))")

    __delitem__ = pop = popitem = clear = _refuse_removal

    def __reduce__(self):
        # copy.deepcopy(model) rebuilds the dict with its owner, before the owner's attributes
        # are back: the values were checked when they were stored, so they are not checked again
        return (_param_dict, (self._owner, dict(self)))


def _param_dict(owner, values) -> ParamDict:
    return ParamDict(owner, values)


class ModelBase(LearningMixin, AISMixin, ClassifyMixin):
    NAME = "model"
    MODEL_SHA256 = ""
    SOURCE_TEXT = ""
    GRAPH_DOT = ""
    SIZES: dict = {}
    CONSTS: dict = {}
    GROUPS: tuple = ()
    PARAMS: tuple = ()
    BLOCKS: tuple = ()
    SUMMABLE: tuple = ()
    DEFAULT_SUMMED: tuple = ()
    COUPLED: tuple = ()
    COLLAPSED: tuple = ()  # (spike, slab) pairs that can be summed out together
    COUPLED_REAL: tuple = ()  # real groups whose conditional is a multivariate Gaussian
    CENTRING: tuple = ()  # (weight, lower group, upper group) that centred training transforms
    CENTRING_REFUSED: str | None = None
    SCHEDULE = ""
    KERNELS: dict = {}
    NUMPY_KERNELS: dict = {}  # the numpy tier (codegen/numpy_tier.py), or why there is none:
    NUMPY_REFUSED = "numba only: the compiler writes a numpy tier for a module's own energy model, not for " \
        "models with conditionals or the layer models of greedy training"
    NONZERO_CONSTS: tuple = ()  # what the arithmetic needs of the constants (analysis/constants.py),
    POSITIVE_CONSTS: tuple = ()  # checked by the constructor (runtime/consts.py)
    CONST_CHECKS: tuple = ()
    GREEDY: tuple = ()  # the layer RBMs of greedy pretraining (runtime/greedy.py)
    GREEDY_REFUSED = None  # or why the model has none

    def __init__(self, seed=None, dtype="float32", jit=None, **overrides):
        self.sizes = dict(self.SIZES)
        self.consts = dict(self.CONSTS)
        for name, value in overrides.items():
            if name in self.sizes:
                self.sizes[name] = whole(value, f"size {name}", 1)
            elif name in self.consts:
                self.consts[name] = real(value, f"constant {name}")
            else:
                known = ", ".join(list(self.SIZES) + list(self.CONSTS)) or "none"
                raise TypeError(f"{self.NAME} has no size or constant {name!r} (it has: {known})")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
        self._shapes = {k: tuple(int(d) for d in v) for k, v in self.shapes(self.sizes).items()}
        for name, shape in self._shapes.items():
            if any(d < 1 for d in shape):
                raise ValueError(f"with these sizes {name} would have shape {shape}; every axis must be >= 1")
        # before anything is allocated or computed: what the model's arithmetic needs of the
        # constants and sizes (a denominator not zero, a std positive), and memory for the parameters
        check_constants(type(self), self.sizes, self.consts)
        check_memory(self.NAME, self._shapes, [p for p, _ in self.PARAMS], self.dtype.itemsize,
                     ", ".join(f"{k}={v}" for k, v in {**self.sizes, **self.consts}.items()))
        self._categories = {k: int(v) for k, v in self.categories(self.sizes).items()}
        self.domains = {name: domain for name, _, domain in self.GROUPS}
        self.roles = {name: role for name, role, _ in self.GROUPS}
        self.all_domains = self.domains  # every group's (a directed model adds its directed groups)
        self._constraints = dict(self.PARAMS)
        self._rng = generator(seed)
        self.threads = default_threads()  # chains split over this many threads (runtime/rows.py)
        self._tiers = Tiers(type(self), choose(jit), self.dtype.name)  # numba's kernels or numpy's
        self._version = 0
        raw = self.initial_params(self.sizes, self.consts, self._rng, self._shapes)
        self._p = ParamDict(self, {k: self._validated_param(k, self._apply_constraints(k, v)) for k, v in raw.items()})

    # ------------------------------------------------------------------ metadata
    @property
    def jit(self) -> str:
        """"background", "numba" or "numpy": which kernels answer while numba compiles (runtime/tiers.py)."""
        return self._tiers.jit

    @property
    def tier(self) -> str:
        """"numpy" while the numpy tier answers sampling, mean field and free energies, else "numba"."""
        return self._tiers.tier

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={v}" for k, v in {**self.sizes, **self.consts}.items())
        return f"<gdsl model {self.NAME}({sizes}) {self.dtype.name}>"

    def graph(self):
        """The factor graph as a picture: shows in Jupyter, `.save("g.png" | "g.svg" | "g.pdf" | "g.dot")`,
        `.source` is its DOT text (drawn by Graphviz: pip install 'gdsl[graph]')."""
        from ..picture import GraphPicture

        return GraphPicture(self.GRAPH_DOT)

    def _repr_html_(self) -> str:
        from .notebook import model_html

        return model_html(self)

    @property
    def group_names(self) -> list[str]:
        return [g for g, _, _ in self.GROUPS]

    @property
    def visible(self) -> list[str]:
        return [g for g, role, _ in self.GROUPS if role == "visible"]

    def shape(self, name: str) -> tuple:
        return self._shapes[name]

    # ------------------------------------------------------------------ parameters
    @property
    def params(self) -> ParamDict:
        return self._p

    @params.setter
    def params(self, values: Mapping):
        """Set the parameters `values` names (the others keep theirs); all or nothing."""
        self._p.update(values)

    def _param_mapping(self, values) -> Mapping:
        """`values` as a mapping of parameter names, or a TypeError that says what is expected."""
        if values is None:
            return {}
        if isinstance(values, Mapping):
            return values
        try:
            return dict(values)  # pairs, as dict.update takes them
        except (TypeError, ValueError):
            raise TypeError(f"the parameters of {self.NAME} are set from a dict from parameter names "
                            f"({', '.join(self._constraints)}) to arrays, got {type(values).__name__}") from None

    def _apply_constraints(self, name, value):
        value = np.array(value, dtype=np.float64)
        cons = self._constraints.get(name, ())
        if "symmetric" in cons:
            value = (value + value.T) / 2
        if "zero_diag" in cons:
            np.fill_diagonal(value, 0.0)
        return value

    def _validated_param(self, name, value):
        if name not in self._constraints:
            raise KeyError(f"{self.NAME} has no parameter {name!r}")
        arr = numeric_array(value, np.float64, f"parameter {name}")
        want = self._shapes[name]
        if arr.shape != want:
            raise ValueError(f"parameter {name} must have shape {want}, got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"parameter {name} contains NaN or infinity")
        with np.errstate(over="ignore"):
            cast = arr.astype(self.dtype)
        if not np.all(np.isfinite(cast)):  # finite in float64, beyond the model's dtype
            at = tuple(int(i) for i in np.argwhere(~np.isfinite(cast))[0])
            raise ValueError(f"parameter {name} has values too large for {self.dtype.name} (largest finite "
                             f"{np.finfo(self.dtype).max:.4g}): {float(arr[at])!r} at {at}")
        cons = self._constraints[name]
        if "symmetric" in cons and not np.allclose(arr, arr.T, rtol=1e-5, atol=1e-6):
            raise ValueError(f"parameter {name} is declared symmetric but the array is not")
        if "zero_diag" in cons and np.any(np.diagonal(arr) != 0):
            raise ValueError(f"parameter {name} is declared zero_diag but its diagonal is not zero")
        if "positive" in cons and np.any(arr <= 0):
            raise ValueError(f"parameter {name} is declared positive but has values <= 0")
        return np.ascontiguousarray(arr, dtype=self.dtype).reshape(want)  # (ascontiguousarray makes 0-d 1-d)

    # ------------------------------------------------------------------ arrays in
    def _array(self, name, value, n=None, check_domain=True):
        if name not in self.all_domains:
            raise ValueError(f"{self.NAME} has no variable {name!r} (it has: {', '.join(self.group_names)})")
        arr = self._in_dtype(name, value)
        shape = self._shapes[name]
        if arr.shape[1:] != shape or arr.ndim != len(shape) + 1 or (n is not None and arr.shape[0] != n):
            # the first axis only means "samples" when the rank is right (a lone sample has no such axis)
            lead = n if n is not None and arr.ndim == len(shape) + 1 else "n"
            hint = "; for one sample add a leading axis, e.g. x[None]" if arr.shape == shape else ""
            raise ValueError(f"{name} must have shape ({lead}, {', '.join(map(str, shape))}"
                             f"{',' if len(shape) == 0 else ''}) with the sample axis first, got {arr.shape}{hint}")
        if check_domain:
            self._check_domain(name, arr)
        return np.ascontiguousarray(arr)

    def _in_dtype(self, name, value) -> np.ndarray:
        """`value` as an array of the model's dtype; finite numbers beyond its range are refused
        here (the cast would make them infinite with only numpy's warning)."""
        with np.errstate(over="ignore"):
            arr = numeric_array(value, self.dtype, name)
        if self.dtype != np.float64 and not np.all(np.isfinite(arr)):
            wide = numeric_array(value, np.float64, name)
            big = np.isfinite(wide) & ~np.isfinite(arr)
            if big.any():
                at = tuple(int(i) for i in np.argwhere(big)[0])
                raise ValueError(f"{name} has values too large for {self.dtype.name} (largest finite "
                                 f"{np.finfo(self.dtype).max:.4g}): {float(wide[at])!r} at {at}")
        return arr

    def _domain_filler(self, name, n) -> np.ndarray:
        """A valid value of the group's domain everywhere (stands in for elements that are not the caller's)."""
        shape = (n,) + self._shapes[name]
        domain = self.all_domains[name]
        if domain == "categorical":
            out = np.zeros(shape, self.dtype)
            out[..., 0] = 1.0
            return out
        return np.full(shape, -1.0 if domain == "spin" else 0.0, self.dtype)

    def _check_means(self, name, arr, what="mean-field values"):
        """Values that stand for means of the group's domain (mean-field starts, means as evidence):
        finite, in [0, 1] (binary), [-1, 1] (spin), probability rows (categorical)."""
        domain = self.all_domains[name]
        if not np.all(np.isfinite(arr)):
            where = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
            raise ValueError(f"{what} of {name} must be finite; found {float(arr[where])!r} at {where}")
        lo, hi = {"binary": (0.0, 1.0), "spin": (-1.0, 1.0), "categorical": (0.0, 1.0),
                  "categorical_off": (0.0, 1.0)}.get(domain, (None, None))
        if lo is not None:
            bad = (arr < lo) | (arr > hi)
            if bad.any():
                where = tuple(int(i) for i in np.argwhere(bad)[0])
                kind = "probabilities" if domain != "spin" else "means of spins"
                raise ValueError(f"{what} of {name} are {kind} of a {domain} variable and must lie in "
                                 f"[{lo:g}, {hi:g}]; found {float(arr[where])!r} at {where}")
        if domain == "categorical":
            sums = arr.sum(axis=-1, dtype=np.float64)
            bad = np.abs(sums - 1.0) > 1e-3
            if bad.any():
                where = tuple(int(i) for i in np.argwhere(bad)[0])
                raise ValueError(f"{what} of {name} are category probabilities: each row along the last axis "
                                 f"must sum to 1; the row at {where} sums to {sums[where]:g}")
        if domain == "categorical_off":  # the rest of the row's mass is the all-zero state's
            sums = arr.sum(axis=-1, dtype=np.float64)
            bad = sums > 1.0 + 1e-3
            if bad.any():
                where = tuple(int(i) for i in np.argwhere(bad)[0])
                raise ValueError(f"{what} of {name} are probabilities of the units of a categorical(K, off) row: "
                                 f"each row along the last axis must sum to at most 1; the row at {where} sums "
                                 f"to {sums[where]:g}")

    def _check_domain(self, name, arr):
        domain = self.all_domains[name]
        if not np.all(np.isfinite(arr)):
            where = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
            raise ValueError(f"{name} contains NaN or infinity (found {float(arr[where])!r} at {where})")
        if domain in _DOMAIN_VALUES:
            lo, hi = _DOMAIN_VALUES[domain]
            bad = (arr != lo) & (arr != hi)
            if bad.any():
                where = tuple(int(i) for i in np.argwhere(bad)[0])
                raise ValueError(f"{name} is {domain}: values must be {lo:g} or {hi:g}; "
                                 f"found {arr[where]!r} at {where}")
        elif domain == "categorical":
            ok = np.isin(arr, (0.0, 1.0)).all() and np.all(arr.sum(axis=-1) == 1)
            if not ok:
                raise ValueError(f"{name} is categorical: each row along the last axis must be one-hot")
        elif domain == "categorical_off":
            ok = np.isin(arr, (0.0, 1.0)).all() and np.all(arr.sum(axis=-1) <= 1)
            if not ok:
                raise ValueError(f"{name} is categorical(K, off): each row along the last axis must be one-hot "
                                 "or all zero")

    def _n_of(self, data: Mapping) -> int:
        if not isinstance(data, Mapping) or not data:
            raise ValueError("expected a non-empty dict from variable names to arrays")
        ns = {}
        for k, v in data.items():
            shape = np.shape(v)
            if len(shape) == 0:
                raise ValueError(f"{k} must be an array with the sample axis first")
            ns[k] = shape[0]
        if len(set(ns.values())) != 1:
            raise ValueError("all arrays must have the same number of samples: "
                             + ", ".join(f"{k}: {v}" for k, v in ns.items()))
        n = next(iter(ns.values()))
        if n == 0:
            k = next(iter(data))
            raise ValueError(f"{k} has no samples (shape {np.shape(data[k])}): pass at least one row")
        return n

    def _with_sample_axis(self, name, value, n):
        """One value for every chain may be given without the sample axis."""
        value = np.asarray(value)
        if name in self._shapes and value.shape == self._shapes[name]:
            return np.broadcast_to(value, (n,) + value.shape)
        return value

    def _mask(self, name, mask, n):
        shape = (n,) + self._shapes[name]
        if mask is None or mask is True:
            return np.ones(shape, dtype=np.uint8)
        if mask is False:
            return np.zeros(shape, dtype=np.uint8)
        m = np.asarray(mask)
        if m.dtype != bool and not np.isin(m, (0, 1)).all():
            raise ValueError(f"the clamp mask of {name} must be boolean")
        try:
            m = np.broadcast_to(m.astype(np.uint8), shape)
        except ValueError:
            raise ValueError(f"the clamp mask of {name} must have shape {self._shapes[name]} or "
                             f"{shape}, got {np.shape(mask)}") from None
        if self.all_domains[name] in abi.ONE_HOT:  # a one-hot row is clamped or free as a whole
            m = np.broadcast_to(m.max(axis=-1, keepdims=True), shape)
        return np.ascontiguousarray(m)

    def _streams(self, n):
        seeds = self._rng.integers(0, 2 ** 63, size=n, dtype=np.int64).astype(np.uint64)
        rng = np.empty((n, 2), dtype=np.uint64)
        _nk.seed_streams(seeds, rng)  # numpy's splitmix64: the streams of rng.seed_streams, nothing to compile
        return rng

    def random_state(self, n: int) -> dict:
        """n independent draws from a simple distribution per group (starting points for chains)."""
        n = whole(n, "n")
        out = {}
        for name, domain in self.domains.items():
            shape = (n,) + self._shapes[name]
            if domain == "binary":
                x = (self._rng.random(shape) < 0.5).astype(self.dtype)
            elif domain == "spin":
                x = np.where(self._rng.random(shape) < 0.5, -1.0, 1.0).astype(self.dtype)
            elif domain == "real":
                x = self._rng.standard_normal(shape).astype(self.dtype)
            else:  # one-hot rows (index k of a categorical_off row: all zero)
                k = self._categories[name]
                idx = self._rng.integers(0, abi.row_states(domain, k), size=shape[:-1])
                x = np.eye(abi.row_states(domain, k), dtype=self.dtype)[idx][..., :k]
            out[name] = np.ascontiguousarray(x)
        return out

    # ------------------------------------------------------------------ kernels
    def call(self, kernel: str, **families):
        """Call compiled `kernel`, its arguments assembled by family name from the module's
        KERNEL_SPEC and ORDERS (gdsl.abi); state/params/sizes/consts default to the model's."""
        spec = self.KERNEL_SPEC.get(kernel)
        if spec is None:
            raise ValueError(f"{self.NAME} has no compiled kernel {kernel!r} (it has: "
                             f"{', '.join(self.KERNEL_SPEC) or 'none'})" + self._energy_groups_hint(None))
        values = dict(self._model_values(families.pop("state", None), families.pop("params", None)), **families)
        args = abi.arguments(spec, self.ORDERS, values)
        try:
            return self._tiers.run(kernel, args)
        except Exception as e:
            if not cache.raised_by_numba_cache(e):
                raise
        # numba could not read its cache files for this module (truncated, garbled): without them it
        # compiles afresh, and writes new ones
        module = sys.modules.get(type(self).__module__)
        removed = cache.discard_numba_files(getattr(module, "__file__", ""))
        warnings.warn(f"gdsl: numba's cache files for {self.NAME} could not be read; discarded {removed} "
                      "and recompiling", cache.NumbaCacheWarning, stacklevel=3)
        return self.KERNELS[kernel](*args)

    def _kernel_arguments(self, kernel: str, **families) -> list:
        """The positional arguments `call(kernel, **families)` would pass, for a caller that calls
        the compiled kernel itself many times (changing a few of them in place)."""
        values = dict(self._model_values(families.pop("state", None), families.pop("params", None)), **families)
        return abi.arguments(self.KERNEL_SPEC[kernel], self.ORDERS, values)

    def _by_rows(self, kernel: str, n: int, rowwise: dict, shared: dict) -> list:
        """`kernel` over the rows (chains) of `rowwise`, cut into parts run on `self.threads` threads."""
        threads = 1 if self._tiers.uses_numpy(kernel) else self.threads  # numpy's Python holds the GIL
        return call_by_rows(lambda **families: self.call(kernel, **families), n, threads, rowwise, shared)

    def _model_values(self, state=None, params=None) -> dict:
        """The families every energy kernel starts with; scalar parameters as 1-element views."""
        params = self._p if params is None else params
        return {"state": state, "params": {k: v.reshape(1) if v.ndim == 0 else v for k, v in params.items()},
                "sizes": self.sizes, "consts": self.consts}

    def kernel_args(self, state):
        """The leading arguments of every energy kernel (abi.MODEL), for calling a kernel by hand."""
        return tuple(abi.arguments(abi.MODEL, self.ORDERS, self._model_values(state)))

    # ------------------------------------------------------------------ sampling
    def gibbs(self, state: Mapping, steps: int = 1, clamp: Mapping | None = None, multispin: bool = False) -> dict:
        """Run `steps` block-Gibbs sweeps from `state` (not modified); return the new state.

        clamp maps a group to True (keep the whole group) or a boolean mask of its shape
        (or with the sample axis) marking elements that keep their value. multispin=True sweeps a
        lattice of uniform couplings 64 chains at a time (heat bath, multi-spin coding; no clamp)."""
        n = self._n_of(state)
        self._energy_names(state)
        missing = set(self.domains) - set(state)
        if missing:
            raise ValueError(f"gibbs needs a state for every variable; missing {', '.join(sorted(missing))}")
        st = {k: self._array(k, v, n).copy() for k, v in state.items()}
        steps = whole(steps, "steps")
        if multispin:
            lattice = self._multispin(clamp)
            packed, rng = lattice.start(st)
            lattice.run(packed, rng, steps)
            return lattice.state(packed)
        masks = self._masks(mapping(clamp, "clamp"), n)
        return self._run_gibbs(st, masks, steps)

    def _multispin(self, clamp=None, mask=None):
        """The multi-spin sampler of this model (runtime/multispin.py), or a ValueError saying why not."""
        from .multispin import PackedLattice

        if getattr(self, "MULTISPIN", None) is None:
            why = getattr(self, "MULTISPIN_REFUSED", "") or "it has no energy over a lattice"
            raise ValueError(f"{self.NAME} cannot be sampled by multi-spin coding: {why}; "
                             "sample it without multispin=True")
        if mapping(clamp, "clamp") or mapping(mask, "mask"):
            raise ValueError("multi-spin sampling draws every site of every chain; it takes no clamp or mask "
                             "(sample without multispin=True to clamp)")
        group, domain = self.MULTISPIN
        return PackedLattice(self, group, -1.0 if domain == "spin" else 0.0)

    def _energy_names(self, state: Mapping) -> None:
        """Refuse groups the energy does not have (a directed group of a chain graph, or a typo)."""
        for k in state:
            if k not in self.domains:
                raise ValueError(f"{self.NAME} has no variable {k!r} (it has: {', '.join(self.group_names)})"
                                 + self._energy_groups_hint(k))

    def _need_energy(self, what: str, instead: str = "") -> None:
        """Nothing here: every method of an energy model has its energy. A directed model refuses
        the energy methods with what it has instead (DirectedModel)."""

    def _energy_groups_hint(self, name) -> str:
        """Why `name` is not an energy group although the model has it (DirectedModel says)."""
        return ""

    def _masks(self, clamp, n):
        for k in clamp:
            if k not in self.domains:
                raise ValueError(f"cannot clamp {k!r}: {self.NAME} has no such variable")
        return {g: (self._mask(g, clamp[g], n) if g in clamp else np.zeros((n,) + self._shapes[g], np.uint8))
                for g in self.domains}

    def _run_gibbs(self, st, masks, steps: int):
        n = next(iter(st.values())).shape[0]
        free = {g: bool(not masks[g].all()) for g in self.domains}
        rng = self._streams(n)
        oks = []
        for part in self._tiers.chunks(steps):  # the kernels advance the streams in place: parts continue them
            oks += self._by_rows("gibbs", n, {"state": st, "masks": masks, "rng": rng}, {"free": free, "steps": part})
        if not all(oks):
            raise ValueError(self._precision_problem() + ": the energy is not bounded below for these parameters")
        return st

    def sample(self, n: int, steps: int = 100, burn_in: int = 0, chains: int | None = None,
               clamp: Mapping | None = None, mask: Mapping | None = None, init: Mapping | None = None,
               progress: bool = False, multispin: bool = False) -> dict:
        """Draw n samples by block Gibbs from `chains` parallel chains (default: n chains, one sample each).

        Each chain runs `burn_in` sweeps, then records a sample every `steps` sweeps.
        `clamp` fixes groups to given values (inpainting: add `mask` to fix only some elements).
        multispin=True samples a lattice of uniform couplings (the compile summary says when a
        model is one) by multi-spin coding: 64 chains in the bits of a word, a heat-bath sweep of
        all 64 at once; other draws than without it, as exact."""
        n = whole(n, "n", 1)
        chains = n if chains is None else whole(chains, "chains", 1)
        steps, burn_in = whole(steps, "steps", 1), whole(burn_in, "burn_in")
        if n % chains:
            raise ValueError(f"n ({n}) must be a multiple of chains ({chains})")
        lattice = self._multispin(clamp, mask) if multispin else None
        st = self.random_state(chains)
        for k, v in mapping(init, "init").items():
            st[k] = self._array(k, self._with_sample_axis(k, v, chains), chains).copy()
        if lattice is not None:
            return lattice.sample(st, n, steps, burn_in, _progress(n // chains, progress, "sampling"))
        clamp, mask = mapping(clamp, "clamp"), mapping(mask, "mask")
        for k in mask:
            if k not in clamp:
                raise ValueError(f"mask given for {k} but {k} is not clamped")
        for k, v in clamp.items():
            if k not in self.domains:
                raise ValueError(f"cannot clamp {k!r}: {self.NAME} has no such variable")
            arr = self._array(k, self._with_sample_axis(k, v, chains), chains, check_domain=False)
            m = self._mask(k, mask.get(k, True), chains).astype(bool)
            self._check_domain(k, np.where(m, arr, st[k]))
            st[k] = np.ascontiguousarray(np.where(m, arr, st[k]).astype(self.dtype))
        masks = self._masks({k: mask.get(k, True) for k in clamp}, chains)
        per_chain = n // chains
        out = {k: np.empty((n,) + self._shapes[k], dtype=self.dtype) for k in self.domains}
        bar = _progress(per_chain, progress, "sampling")
        st = self._run_gibbs(st, masks, burn_in)
        for r in range(per_chain):
            st = self._run_gibbs(st, masks, steps)
            for k in self.domains:
                out[k][r::per_chain] = st[k]
            bar(r + 1)
        return out

    # ------------------------------------------------------------------ mean field
    def mean_field(self, evidence: Mapping, mask: Mapping | None = None, init: Mapping | None = None,
                   damping: float = 0.0, tol: float = 1e-6, max_iter: int = 500,
                   return_info: bool = False, _means_as_evidence: bool = False):
        """Fully factorised mean-field marginals of the groups not in `evidence`.

        Returns a dict of means (probabilities for binary, E[x] for spin/real, row
        probabilities for categorical); evidence groups are returned as given, except
        elements left free by `mask`."""
        damping = real(damping, "damping", 0.0, 1.0, high_open=True)
        tol, max_iter = real(tol, "tol", 0.0), whole(max_iter, "max_iter")
        evidence, init = mapping(evidence, "evidence"), mapping(init, "init")
        n = self._n_of(evidence) if evidence else 1  # no evidence: one set of marginals
        mask = mapping(mask, "mask")
        for g in mask:
            if g not in evidence:
                raise ValueError(f"a mask was given for {g!r}, which is not in the evidence; "
                                 f"masks mark the evidence elements to hold fixed")
        for g in list(evidence) + list(init):
            if g not in self.domains:
                raise ValueError(f"{self.NAME} has no variable {g!r} (it has: {', '.join(self.domains)})"
                                 + self._energy_groups_hint(g))
        st = {}
        for g, domain in self.domains.items():
            if g in init:
                st[g] = self._array(g, init[g], n, check_domain=False).copy()
                self._check_means(g, st[g], "the init (starting means)")
            elif domain == "binary":
                st[g] = np.full((n,) + self._shapes[g], 0.5, self.dtype)
            elif domain in abi.ONE_HOT:
                st[g] = np.full((n,) + self._shapes[g], 1.0 / abi.row_states(domain, self._categories[g]),
                                self.dtype)
            else:
                st[g] = np.zeros((n,) + self._shapes[g], self.dtype)
        for g, v in evidence.items():
            arr = self._array(g, v, n, check_domain=False)
            m = self._mask(g, mask.get(g, True), n).astype(bool)
            # the observed elements must be valid (finite, in the domain); the others are not used
            if _means_as_evidence:
                self._check_means(g, np.where(m, arr, st[g]), "the evidence (means)")
            else:
                self._check_domain(g, np.where(m, arr, self._domain_filler(g, n)))
            st[g] = np.ascontiguousarray(np.where(m, arr, st[g]).astype(self.dtype))
        masks = self._masks({g: mask.get(g, True) for g in evidence}, n)
        free = {g: bool(not masks[g].all()) for g in self.domains}
        results = self._by_rows("mean_field", n, {"state": st, "masks": masks},
                                {"free": free, "damping": damping, "tol": tol, "max_iter": max_iter})
        it = -1 if any(r[0] < 0 for r in results) else max(r[0] for r in results)
        delta = max(r[1] for r in results)
        if it < 0:
            raise ValueError(self._precision_problem() + ": the energy is not bounded below")
        return (st, {"iterations": int(it), "max_change": float(delta)}) if return_info else st

    def conditional_mean(self, state: Mapping, group: str) -> np.ndarray:
        """E[group | all other groups of `state`] (one site-by-site pass for laterally coupled groups)."""
        evidence = {k: v for k, v in state.items() if k != group}
        init = {group: state[group]} if group in state else None
        return self.mean_field(evidence, init=init, max_iter=1, tol=0.0)[group]

    # ------------------------------------------------------------------ energies
    def energy(self, state: Mapping) -> np.ndarray:
        """E(state) for each sample (float64)."""
        n = self._n_of(state)
        self._energy_names(state)
        missing = set(self.domains) - set(state)
        if missing:
            raise ValueError(f"energy needs every variable; missing {', '.join(sorted(missing))}")
        st = {k: self._array(k, v, n) for k, v in state.items()}
        return self._free_energy(st, ())

    def free_energy(self, evidence: Mapping) -> np.ndarray:
        """-log sum over the groups missing from `evidence` of exp(-E): they are summed out analytically."""
        n = self._n_of(evidence)
        self._energy_names(evidence)
        st = {k: self._array(k, v, n) for k, v in evidence.items()}  # unknown names and bad shapes first
        summed = tuple(g for g in self.domains if g not in evidence)
        why = self.why_not_summable(summed)
        if why:
            raise ValueError(f"free_energy cannot sum out {', '.join(summed)}: {why}")
        return self._free_energy(st, summed)

    def why_not_summable(self, summed) -> str | None:
        for g in summed:
            if g not in self.domains:
                return f"{self.NAME} has no variable {g!r}"
            if g not in self.SUMMABLE:
                return f"{g} is coupled to itself (lateral connections)"
        for a, b in itertools.combinations(summed, 2):
            if (a, b) in self.COLLAPSED or (b, a) in self.COLLAPSED:
                continue
            if (a, b) in self.COUPLED or (b, a) in self.COUPLED:
                return f"{a} and {b} share an energy term"
        return None

    def _free_energy(self, st, summed, params=None, dtype=None, n=None):
        dtype = dtype or self.dtype
        n = next(iter(st.values())).shape[0] if st else n
        full = {}
        for g in self.domains:
            full[g] = st[g] if g in st else np.zeros((n,) + self._shapes[g], dtype)
        out = np.zeros(n, dtype=np.float64)
        oks = self._by_rows("free_energy", n, {"state": full, "out": out},
                            {"params": params, "summed": {g: g in summed for g in self.domains}, "beta": 1.0})
        if not all(oks):
            raise ValueError(self._precision_problem() + ": the energy is not bounded below")
        return out

    def _precision_problem(self) -> str:
        """Which real groups a non-positive precision can come from, for the messages."""
        real = [g for g, d in self.domains.items() if d == "real"]
        coupled = [g for g in real if g in self.COUPLED_REAL]
        what = " or ".join(f"{g} (not positive definite)" if g in coupled else g for g in real) or "a real variable"
        return f"the conditional precision of {what} is not positive"

    # ------------------------------------------------------------------ exact sums
    def _params64(self):
        return {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in self._p.items()}

    def _best_enumeration(self, given=()):
        """Which groups to sum analytically and which to enumerate, enumerating as little as possible."""
        rest = [g for g in self.domains if g not in given]
        best = None
        for r in range(len(rest), -1, -1):
            for summed in itertools.combinations(rest, r):
                if self.why_not_summable(summed):
                    continue
                enum = [g for g in rest if g not in summed]
                if any(self.domains[g] == "real" for g in enum):
                    continue
                cost = sum(self._log2_states(g) for g in enum)
                if best is None or cost < best[0]:
                    best = (cost, summed, enum)
        return best

    def _log2_states(self, g):
        size = int(np.prod(self._shapes[g], dtype=np.int64))
        if self.domains[g] in abi.ONE_HOT:
            k = self._categories[g]
            return (size // k) * math.log2(abi.row_states(self.domains[g], k))
        return float(size)

    def log_partition(self, method: str = "exact", max_states: int = DEFAULT_MAX_STATES,
                      progress: bool = False, runs: int = 100, betas=None, data: Mapping | None = None,
                      workers: int | None = None, burn_in: int = 1000, start: str = "data"):
        """log Z.

        method="exact": sums the groups it can analytically and enumerates the smallest rest; a float.
        method="ais" / "reverse-ais": annealed importance sampling with `runs` chains over `betas`
        (default: the standard ~14,500 temperatures), from a base model fitted to `data` when given;
        returns AISEstimate(log_z, sd). Forward AIS underestimates log Z on average; reverse AIS,
        from chains started at `data` and run `burn_in` sweeps to reach the model, overestimates
        it on average: together they bracket it. start="chains" starts reverse AIS from the
        persistent chains of the last fit instead (closer to the model than data on a DBM)."""
        if method in ("ais", "reverse-ais"):
            if start not in ("data", "chains"):
                raise ValueError(f"start must be 'data' or 'chains', got {start!r}")
            return self._ais(method == "reverse-ais", whole(runs, "runs"), betas, data,
                             whole(self.threads if workers is None else workers, "workers", 1), progress,
                             whole(burn_in, "burn_in"), start)
        if method != "exact":
            raise ValueError(f"unknown method {method!r}; use 'exact', 'ais' or 'reverse-ais'")
        max_states = real(max_states, "max_states", 1.0)
        best = self._best_enumeration()
        if best is None:
            raise ValueError("log_partition cannot enumerate: every way of summing out leaves a real variable")
        cost, summed, enum = best
        self._refuse_if_large(cost, enum, max_states)
        params = self._params64()
        e = Enumeration([(g, self.domains[g], self._shapes[g], self._categories.get(g)) for g in enum])
        other = sum(int(np.prod(self._shapes[g])) for g in self.domains)
        chunk = max(1, min(1 << 16, (1 << 22) // max(1, other)))
        acc = _LogSumExp()
        bar = _progress(e.count, progress, "log Z")
        for start, states in e.chunks(chunk):
            count = min(chunk, e.count - start)  # states is {} when nothing needs enumerating
            f = self._free_energy(states, summed, params, np.float64, n=count)
            acc.add(-f)
            bar(start + count)
        return acc.value()

    def _exact_log_z_or_refuse(self, max_states):
        best = self._best_enumeration()
        if best is None:
            raise ValueError("log Z cannot be computed exactly (a real variable would have to be enumerated): "
                             "pass log_z=..., e.g. log_z=m.log_partition(method='ais', data=train).log_z")
        self._refuse_if_large(best[0], best[2], max_states,
                              "; or pass log_z=..., e.g. m.log_partition(method='ais', data=train).log_z")
        return self.log_partition("exact", max_states=max_states)

    def _refuse_if_large(self, log2_cost, enum, max_states, hint=""):
        if log2_cost > math.log2(max_states) + 1e-9:
            parts = ", ".join(f"{g}: 2^{self._log2_states(g):g}" for g in enum)
            raise ValueError(f"exact enumeration needs 2^{log2_cost:g} states ({parts}), more than "
                             f"max_states = 2^{math.log2(max_states):g}; raise max_states or use a "
                             f"smaller model{hint}")

    def log_prob(self, data: Mapping, log_z: float | None = None, max_states: int = DEFAULT_MAX_STATES,
                 method: str = "auto"):
        """log p(data) per sample: -F(data) - log Z, the other groups marginalised.

        method="exact" sums them analytically where it can and enumerates the rest;
        method="bound" gives the mean-field variational lower bound (for a DBM, whose latents
        cannot all be summed out); "auto" is exact when the enumeration fits in `max_states`,
        else the bound. log_z: pass an estimate (e.g. log_partition(method="ais").log_z) for
        models too large for the exact log Z."""
        if method not in ("auto", "exact", "bound"):
            raise ValueError(f"unknown method {method!r}; use 'auto', 'exact' or 'bound'")
        max_states = real(max_states, "max_states", 1.0)
        log_z = None if log_z is None else log_z_value(log_z)
        n = self._n_of(data)
        st = {k: self._array(k, v, n).astype(np.float64) for k, v in data.items()}
        best = self._best_enumeration(given=tuple(st))
        fits = best is not None and best[0] <= math.log2(max_states) + 1e-9
        if method == "bound" or (method == "auto" and not fits and best is not None
                                 and all(self.domains[g] != "real" for g in self.domains if g not in st)):
            if log_z is None:
                log_z = self._exact_log_z_or_refuse(max_states)
            return self.variational_bound(data, log_z)
        if best is None:
            raise ValueError("log_prob cannot marginalise: a real variable would have to be enumerated")
        cost, summed, enum = best
        self._refuse_if_large(cost, enum, max_states)
        if log_z is None:
            log_z = self._exact_log_z_or_refuse(max_states)
        params = self._params64()
        if not enum:
            return -self._free_energy(st, summed, params, np.float64) - log_z
        e = Enumeration([(g, self.domains[g], self._shapes[g], self._categories.get(g)) for g in enum])
        per_row = sum(int(np.prod(self._shapes[g])) for g in self.domains)
        chunk = max(1, min(e.count, (1 << 22) // max(1, per_row * n)))
        acc = _LogSumExp(n)
        for _, configs in e.chunks(chunk):
            m = next(iter(configs.values())).shape[0]
            states = {k: np.repeat(v, m, axis=0) for k, v in st.items()}
            for g, v in configs.items():
                states[g] = np.tile(v, (n,) + (1,) * (v.ndim - 1))
            f = self._free_energy(states, summed, params, np.float64).reshape(n, m)
            acc.add(-f)
        return acc.value() - log_z


class _LogSumExp:
    """Running log-sum-exp over chunks, along the last axis."""

    def __init__(self, rows=None):
        self.rows = rows
        self.m = None
        self.s = None

    def add(self, x):
        x = np.asarray(x, dtype=np.float64)
        top = x.max(axis=-1)
        if self.m is None:
            self.m, self.s = top, np.exp(x - top[..., None]).sum(axis=-1) if x.ndim > 1 else np.exp(x - top).sum()
            return
        new = np.maximum(self.m, top)
        part = np.exp(x - new[..., None]).sum(axis=-1) if x.ndim > 1 else np.exp(x - new).sum()
        self.s = self.s * np.exp(self.m - new) + part
        self.m = new

    def value(self):
        out = self.m + np.log(self.s)
        return float(out) if np.ndim(out) == 0 else out


def _progress(total, enabled, label):
    if not enabled:
        return lambda done: None
    from .progress import ProgressBar

    return ProgressBar(total, label)
