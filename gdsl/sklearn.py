"""scikit-learn estimators over gdsl models: `gdsl.sklearn.Estimator`.

An Estimator wraps one energy model (a shipped model's name or a .gdl path) as a
transformer: `fit(X)` trains it on its visible groups, `transform(X)` gives the latent
means, `score_samples(X)` a log-likelihood per row, `sample(n)` draws rows. Every constructor
argument is a plain attribute, so `clone`, `Pipeline` and `GridSearchCV` work as for any
scikit-learn estimator (a grid over `sizes` or `lr`, for instance).

X holds the visible groups side by side, in the model's declaration order, each flattened
(C order): an RBM's X is its v; a model with v[nv] and a label y[10] takes nv + 10 columns.
Binary columns hold values in [0, 1] and spin columns values in [-1, 1]: 0/1 (-1/1) data,
or probabilities (grey levels) that training and `transform` use as means, as scikit-learn's
BernoulliRBM does. Categorical columns hold probability rows (one-hot labels). Real columns
any finite numbers.
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

SCORES = ("auto", "exact", "ais", "pseudo")
EXACT_UP_TO = 1 << 20  # states of the enumeration behind an exact log Z that "auto" accepts
_RANGES = {"binary": (0.0, 1.0), "spin": (-1.0, 1.0), "categorical": (0.0, 1.0), "categorical_off": (0.0, 1.0)}


class Estimator(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """A gdsl energy model as a scikit-learn transformer.

    model: a shipped model's name ("rbm", "grbm", "dbm", ...) or the path of a .gdl file.
    sizes: sizes and constants of the model ({"nh": 64}); a size the visible groups' shape
        depends on and that is not given is set from the number of columns of X.
    method, k, lr, epochs, batch_size, momentum, weight_decay: as in the model's `fit`
        (docs/learning.md).
    binarize: None (binary and spin columns must lie in [0, 1] / [-1, 1]), or a threshold: values
        above it are 1 (spin: +1), the others 0 (spin: -1), as BernoulliNB's `binarize`.
    score_method: how `score_samples` computes log p(x): "exact" (log Z by enumeration), "ais" (log Z
        estimated once by annealed importance sampling after fit, 100 runs), "pseudo" (the
        stochastic pseudo-log-likelihood of BernoulliRBM: binary data only, and the only one
        defined for grey levels), or "auto" (exact when the enumeration has at most 2^20
        states, else ais). The choice made is in `score_method_`.
    random_state: None, an int or a RandomState; an int makes fit reproducible.
    dtype: "float32" (default, fastest) or "float64".
    steps: Gibbs sweeps between the samples of `sample`.
    """

    def __init__(self, model="rbm", sizes=None, method="pcd", k=1, lr=0.01, epochs=10, batch_size=100,
                 momentum=0.0, weight_decay=0.0, binarize=None, score_method="auto", random_state=None,
                 dtype="float32", steps=100, progress=False):
        self.model = model
        self.sizes = sizes
        self.method = method
        self.k = k
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.binarize = binarize
        self.score_method = score_method
        self.random_state = random_state
        self.dtype = dtype
        self.steps = steps
        self.progress = progress

    # ------------------------------------------------------------------ scikit-learn protocol
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.transformer_tags.preserves_dtype = ["float64"]
        tags.non_deterministic = self.random_state is None
        return tags

    def fit(self, X, y=None):
        """Train the model on X (its visible groups side by side); y is ignored."""
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=1)
        if self.score_method not in SCORES:
            raise ValueError(f"score_method must be one of {', '.join(map(repr, SCORES))}, got {self.score_method!r}")
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        self.model_ = self._build(X.shape[1], seed)
        data = self._groups(X)
        self.history_ = self.model_.fit(data, method=self.method, k=self.k, lr=self.lr, epochs=self.epochs,
                                        batch_size=self.batch_size, momentum=self.momentum,
                                        weight_decay=self.weight_decay, progress=self.progress, monitor=None,
                                        data_as_means=True)
        self.score_method_ = self._score_method()
        self.log_z_ = None  # computed on the first score_samples that needs it
        self._fit_rows = {g: v[:1000] for g, v in data.items()}  # the AIS base model's data
        return self

    def transform(self, X):
        """The means of the latent groups given X (exact where the posterior factorises, else mean
        field), side by side in declaration order, each flattened: shape (n, n_latent_features)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        means = self.model_.mean_field(self._groups(X), _means_as_evidence=True)
        latent = self._latent()
        if not latent:
            return np.zeros((len(X), 0))
        return np.hstack([means[g].reshape(len(X), -1) for g in latent]).astype(np.float64)

    def score_samples(self, X):
        """log p(x) of each row (float64), computed as `score_method_` says."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        data = self._groups(X)
        if self.score_method_ == "pseudo":
            return self._pseudo_log_likelihood(data)
        for g, v in data.items():
            self._require_domain(g, v)
        if self.score_method_ == "exact":
            return np.asarray(self.model_.log_prob(data, max_states=EXACT_UP_TO, method="exact"), np.float64)
        if self.log_z_ is None:
            self.log_z_ = self.model_.log_partition(method="ais", data=self._fit_rows).log_z
        return np.asarray(self.model_.log_prob(data, log_z=self.log_z_, method="exact"), np.float64)

    def score(self, X, y=None):
        """The mean of score_samples(X)."""
        return float(np.mean(self.score_samples(X)))

    def sample(self, n):
        """n rows drawn from the model by block Gibbs (`steps` sweeps from random starts)."""
        check_is_fitted(self)
        drawn = self.model_.sample(n, steps=self.steps)
        return np.hstack([drawn[g].reshape(n, -1) for g in self._visible()]).astype(np.float64)

    @property
    def _n_features_out(self):
        return sum(int(np.prod(self.model_.shape(g))) for g in self._latent())

    # ------------------------------------------------------------------ the model
    def _build(self, columns: int, seed: int):
        from . import load
        from .driver import load_module

        cls = load_module(self.model).Model
        if getattr(cls, "DIRECTED", None):
            raise ValueError(f"{self.model}: Estimator wraps energy models; this one is directed")
        given = dict(self.sizes or {})
        sizes = _fit_sizes(cls, given, columns)
        m = load(self.model, seed=seed, dtype=self.dtype, **sizes)
        width = sum(int(np.prod(m.shape(g))) for g in m.visible)
        if width != columns:
            raise ValueError(f"X has {columns} columns but {m.NAME} with sizes {sizes} has {width} visible "
                             f"values ({_layout(m)}); change sizes or X")
        return m

    def _visible(self):
        return list(self.model_.visible)

    def _latent(self):
        return [g for g in self.model_.domains if g not in self.model_.visible]

    def _groups(self, X) -> dict:
        """X's columns as the visible groups, each checked against its domain's range."""
        m, out, at = self.model_, {}, 0
        for g in self._visible():
            shape = m.shape(g)
            size = int(np.prod(shape))
            block = X[:, at:at + size].reshape((len(X),) + shape)
            at += size
            if self.binarize is not None and m.domains[g] in ("binary", "spin"):
                low = 0.0 if m.domains[g] == "binary" else -1.0
                block = np.where(block > self.binarize, 1.0, low)
            lo_hi = _RANGES.get(m.domains[g])
            if lo_hi is not None and ((block < lo_hi[0]) | (block > lo_hi[1])).any():
                raise ValueError(f"the columns of {g} ({m.domains[g]}) must lie in [{lo_hi[0]:g}, {lo_hi[1]:g}]; "
                                 f"found values from {block.min():g} to {block.max():g} (scale X first, e.g. "
                                 f"with MinMaxScaler)")
            out[g] = np.ascontiguousarray(block)
        return out

    def _score_method(self) -> str:
        if self.score_method != "auto":
            return self.score_method
        best = self.model_._best_enumeration(given=tuple(self._visible()))
        ok = best is not None and best[0] <= np.log2(EXACT_UP_TO)
        z = self.model_._best_enumeration()
        return "exact" if ok and z is not None and z[0] <= np.log2(EXACT_UP_TO) else "ais"

    def _require_domain(self, g, v):
        try:
            self.model_._check_domain(g, v)
        except ValueError as e:
            raise ValueError(f"score_method='{self.score_method_}' needs data in the domain of the model: {e}. Grey "
                             f"levels have no likelihood under binary units; use score_method='pseudo' or binarize=...") from None

    def _pseudo_log_likelihood(self, data) -> np.ndarray:
        """BernoulliRBM's estimate: size * log sigmoid(F(x with one random element flipped) - F(x))."""
        m = self.model_
        for g in data:
            if m.domains[g] not in ("binary",):
                raise ValueError(f"score_method='pseudo' needs binary visible groups; {g} is {m.domains[g]}")
        summed = tuple(g for g in m.domains if g not in data)
        why = m.why_not_summable(summed)
        if why:
            raise ValueError(f"score_method='pseudo' needs the free energy of the visible groups: {why}")
        st = {g: np.asarray(v, m.dtype) for g, v in data.items()}
        n = len(next(iter(st.values())))
        sizes = [int(np.prod(m.shape(g))) for g in st]
        rng = check_random_state(self.random_state)
        pick = rng.randint(0, sum(sizes), size=n)
        flipped = {g: v.copy() for g, v in st.items()}
        at = 0
        for g, size in zip(st, sizes):
            rows = np.flatnonzero((pick >= at) & (pick < at + size))
            flat = flipped[g].reshape(n, -1)
            flat[rows, pick[rows] - at] = 1.0 - flat[rows, pick[rows] - at]
            at += size
        f0 = m._free_energy(st, summed).astype(np.float64)
        f1 = m._free_energy(flipped, summed).astype(np.float64)
        return -sum(sizes) * np.logaddexp(0.0, -(f1 - f0))


def _fit_sizes(cls, given: dict, columns: int) -> dict:
    """`given`, plus the one size (not given) that makes the visible groups `columns` wide."""
    known = {**cls.SIZES, **cls.CONSTS}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ValueError(f"{cls.NAME} has no size or constant {', '.join(unknown)} (it has: "
                         f"{', '.join(known) or 'none'})")
    sizes = {**cls.SIZES, **{k: v for k, v in given.items() if k in cls.SIZES}}
    visible = [name for name, role, _ in cls.GROUPS if role == "visible"]

    def width(s):
        shapes = cls.shapes(s)
        return sum(int(np.prod(shapes[g])) for g in visible)

    if width(sizes) == columns:
        return dict(given)
    for name in cls.SIZES:
        if name in given:
            continue
        if width({**sizes, name: 1}) == width({**sizes, name: 2}):
            continue  # the visible groups do not depend on this size
        lo, hi = 1, max(1, columns)
        while lo < hi:  # widths grow with every size: the smallest value wide enough
            mid = (lo + hi) // 2
            if width({**sizes, name: mid}) < columns:
                lo = mid + 1
            else:
                hi = mid
        if width({**sizes, name: lo}) == columns:
            return {**given, name: lo}
    return dict(given)  # _build reports the mismatch with the layout


def _layout(m) -> str:
    return ", ".join(f"{g}{list(m.shape(g))}" for g in m.visible)
