"""Independent numpy (float64) references for the directed models in models/*.gdl.

Written from the math only (no gdsl code), as the oracle for tests of the compiled
kernels, plus the hand-vectorised numpy NADE that the NADE benchmark competes against.

Conventions (parameter names and shapes as in models/{fvsbn,nade,sbn,vae,dbn}.gdl):
data arrays carry a leading row axis ([n, d]); binary data are 0/1 arrays;
`bernoulli(logits=a)` means p(x=1) = sigmoid(a); `W @ h` on a batch of rows is `h @ W.T`.
Enumerated binary states are ordered as binary numbers with element 0 most significant.
"""
from __future__ import annotations

import numpy as np

# ----------------------------------------------------------------------------- helpers


def random_params(shapes: dict, seed: int, scale: float = 1.0) -> dict:
    """Independent N(0, scale^2) float64 draws for every name in `shapes` (in dict order)."""
    rng = np.random.default_rng(seed)
    return {name: rng.normal(0.0, scale, size=tuple(shape)) for name, shape in shapes.items()}


def model_shapes(model: str, **sizes) -> dict:
    """Parameter shapes of a shipped directed model at the given sizes (as in its .gdl file)."""
    s = sizes
    if model == "fvsbn":
        return {"W": (s["d"], s["d"]), "b": (s["d"],)}
    if model == "nade":
        return {"W": (s["nh"], s["d"]), "V": (s["d"], s["nh"]), "b": (s["d"],), "c": (s["nh"],)}
    if model == "sbn":
        nv, n1, n2 = s["nv"], s["n1"], s["n2"]
        return {"W2": (n1, n2), "W1": (nv, n1), "c2": (n2,), "c1": (n1,), "b": (nv,),
                "R1": (n1, nv), "R2": (n2, n1), "d1": (n1,), "d2": (n2,)}
    if model == "vae":
        d, nh, nz = s["d"], s["nh"], s["nz"]
        return {"Wh": (nh, nz), "bh": (nh,), "Wo": (d, nh), "bo": (d,),
                "Ex": (nh, d), "be": (nh,), "Em": (nz, nh), "bm": (nz,), "Es": (nz, nh), "bs": (nz,)}
    if model == "dbn":
        nv, n1, n2, n3 = s["nv"], s["n1"], s["n2"], s["n3"]
        return {"W3": (n2, n3), "W2": (n1, n2), "W1": (nv, n1),
                "c3": (n3,), "c2": (n2,), "c1": (n1,), "b": (nv,)}
    raise ValueError(f"unknown directed model {model!r}")


def all_states(k: int) -> np.ndarray:
    """All 2^k binary vectors as float64 [2^k, k]; row s is s in binary, element 0 most significant."""
    s = np.arange(2 ** k)
    return ((s[:, None] >> np.arange(k - 1, -1, -1)) & 1).astype(np.float64)


def logsumexp(a, axis=None):
    """log(sum(exp(a), axis)), computed stably."""
    a = np.asarray(a, dtype=np.float64)
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    out = np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m
    return np.squeeze(out, axis=axis) if axis is not None else out.reshape(())


def sigmoid(a):
    """1 / (1 + exp(-a)), without overflow."""
    return np.exp(-np.logaddexp(0.0, -np.asarray(a, dtype=np.float64)))


def bern_logp(x, logits):
    """sum over the last axis of log Bernoulli(x; p = sigmoid(logits)) = x a - log(1 + e^a)."""
    return np.sum(x * logits - np.logaddexp(0.0, logits), axis=-1)


def normal_logp(z, mean, std):
    """sum over the last axis of log N(z; mean, std^2)."""
    return np.sum(-0.5 * ((z - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi), axis=-1)


def _bern_prob(x, p):
    """prod over the last axis of p^x (1 - p)^(1 - x) (probabilities, not logs: for the tables)."""
    return np.prod(np.where(x == 1, p, 1.0 - p), axis=-1)


# ----------------------------------------------------------------------------- FVSBN


def fvsbn_logp(params, x) -> np.ndarray:
    """log p(x) [n] of the FVSBN: x_i ~ Bernoulli(sigmoid(b[i] + sum_{j<i} W[i, j] x_j)).
    A plain double loop over i and j (vectorised over rows only)."""
    W, b = params["W"], params["b"]
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    lp = np.zeros(n)
    for i in range(d):
        logit = np.full(n, b[i], dtype=np.float64)
        for j in range(i):
            logit = logit + W[i, j] * x[:, j]
        lp += x[:, i] * logit - np.logaddexp(0.0, logit)
    return lp


def _autoregressive_table(cond_prob, d):
    """Joint table over {0,1}^d built by extending prefixes one element at a time:
    p(x_:i+1) = p(x_:i) * p(x_i | x_:i), with cond_prob(prefixes [m, i], i) -> p(x_i = 1) [m]."""
    prefixes, probs = np.zeros((1, 0)), np.ones(1)
    for i in range(d):
        p1 = cond_prob(prefixes, i)
        prefixes = np.concatenate([np.repeat(prefixes, 2, axis=0),
                                   np.tile([[0.0], [1.0]], (len(probs), 1))], axis=1)
        probs = np.stack([probs * (1.0 - p1), probs * p1], axis=1).reshape(-1)
    return prefixes, probs


def table_fvsbn(params, d):
    """Exact FVSBN distribution: ({"x": [2^d, d]}, probs [2^d]), by products of conditionals."""
    W, b = params["W"], params["b"]
    x, probs = _autoregressive_table(lambda pre, i: sigmoid(b[i] + pre @ W[i, :i]), d)
    return {"x": x}, probs


# ----------------------------------------------------------------------------- NADE


def nade_logp_naive(params, x) -> np.ndarray:
    """log p(x) [n] of NADE: x_i ~ Bernoulli(sigmoid(b[i] + V[i] @ h_i)), with
    h_i = sigmoid(c + W[:, :i] @ x[:i]) recomputed from scratch for every i (O(d^2 nh))."""
    W, V, b, c = params["W"], params["V"], params["b"], params["c"]
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    lp = np.zeros(n)
    for i in range(d):
        h = sigmoid(c + x[:, :i] @ W[:, :i].T)          # [n, nh]
        logit = b[i] + h @ V[i]
        lp += x[:, i] * logit - np.logaddexp(0.0, logit)
    return lp


def nade_logp_numpy(params, x, dtype=np.float64, chunk: int = 512, skip_zeros: bool = True) -> np.ndarray:
    """log p(x) [n] of NADE, hand-vectorised numpy (the benchmark competitor), in `dtype`.

    One pass over i with the running pre-activation a = c + W[:, :i] @ x[:i], batched over
    rows and blocked into `chunk` rows so that a stays in cache. Two standard tricks:
    sigmoid(a) = (1 + tanh(a/2)) / 2, so the half pre-activation is kept and
    V[i] @ sigmoid(a) = V[i].sum()/2 + tanh(a/2) @ (V[i]/2) costs one ufunc pass and one gemv;
    and with 0/1 data the rank-1 update a += outer(x[:, i], W[:, i]) only touches rows with
    x_i = 1 (`skip_zeros`; False does the dense rank-1 update). x must be 0/1.
    The per-row sum of log-likelihoods is returned in float64."""
    W, V, b, c = (np.asarray(params[k], dtype=dtype) for k in ("W", "V", "b", "c"))
    nh, d = W.shape
    x = np.asarray(x)
    n = x.shape[0]
    if skip_zeros and not np.all((x == 0) | (x == 1)):
        raise ValueError("nade_logp_numpy(skip_zeros=True) needs 0/1 data")
    Wh = np.ascontiguousarray(0.5 * W.T)                 # row i: W[:, i] / 2
    Vh = np.ascontiguousarray(0.5 * V)
    logits = np.empty((n, d), dtype=dtype)
    ch = 0.5 * c
    for s in range(0, n, chunk):
        xc = x[s:s + chunk]
        m = xc.shape[0]
        xT = np.ascontiguousarray(xc.T != 0) if skip_zeros else np.ascontiguousarray(xc.T, dtype=dtype)
        a = np.empty((m, nh), dtype=dtype)
        a[:] = ch
        t = np.empty_like(a)
        lT = np.empty((d, m), dtype=dtype)
        for i in range(d):
            np.tanh(a, out=t)
            np.dot(t, Vh[i], out=lT[i])
            if skip_zeros:
                on = np.flatnonzero(xT[i])
                a[on] += Wh[i]
            else:
                np.multiply(xT[i][:, None], Wh[i], out=t)
                a += t
        logits[s:s + chunk] = lT.T
    logits += b + Vh.sum(axis=1)
    xf = x.astype(dtype, copy=False)
    return np.sum(xf * logits - np.logaddexp(0, logits), axis=1, dtype=np.float64)


def table_nade(params, d):
    """Exact NADE distribution: ({"x": [2^d, d]}, probs [2^d]), by products of conditionals."""
    W, V, b, c = params["W"], params["V"], params["b"], params["c"]

    def p1(pre, i):
        h = sigmoid(np.einsum("hj,mj->mh", W[:, :i], pre) + c)
        return sigmoid(b[i] + np.einsum("h,mh->m", V[i], h))

    x, probs = _autoregressive_table(p1, d)
    return {"x": x}, probs


# ----------------------------------------------------------------------------- SBN


def _sbn_parts(params, h2, h1, v):
    """(log p(h2), log p(h1 | h2), log p(v | h1)), each broadcast over leading axes."""
    return (bern_logp(h2, params["c2"]),
            bern_logp(h1, h2 @ params["W2"].T + params["c1"]),
            bern_logp(v, h1 @ params["W1"].T + params["b"]))


def sbn_log_joint(params, h2, h1, v) -> np.ndarray:
    """log p(h2, h1, v) [n] = log p(h2) + log p(h1 | h2) + log p(v | h1) of the two-layer SBN."""
    return sum(_sbn_parts(params, *(np.asarray(a, dtype=np.float64) for a in (h2, h1, v))))


def sbn_logp_exact(params, v) -> np.ndarray:
    """log p(v) [n] of the SBN, summing over all 2^(n1+n2) hidden states (logsumexp)."""
    v = np.asarray(v, dtype=np.float64)
    H2, H1 = all_states(params["c2"].size), all_states(params["c1"].size)
    log_h2h1 = (bern_logp(H2, params["c2"])[:, None]
                + bern_logp(H1[None, :, :], H2[:, None, :] @ params["W2"].T + params["c1"]))  # [S2, S1]
    log_h1 = logsumexp(log_h2h1, axis=0)                                                       # [S1]
    log_v_h1 = bern_logp(v[:, None, :], H1 @ params["W1"].T + params["b"])                    # [n, S1]
    return logsumexp(log_v_h1 + log_h1, axis=1)


def sbn_guide_log_q(params, v, h1, h2) -> np.ndarray:
    """log q(h1, h2 | v) [n] of the SBN guide: h1 ~ bern(R1 @ v + d1), h2 ~ bern(R2 @ h1 + d2)."""
    v, h1, h2 = (np.asarray(a, dtype=np.float64) for a in (v, h1, h2))
    return (bern_logp(h1, v @ params["R1"].T + params["d1"])
            + bern_logp(h2, h1 @ params["R2"].T + params["d2"]))


def _grid(*sizes):
    """Every combination of binary groups of the given sizes, first group slowest: list of [S, k]."""
    full = all_states(sum(sizes))
    return np.split(full, np.cumsum(sizes)[:-1], axis=1)


def table_sbn(params):
    """Exact SBN joint over (h2, h1, v): ({"h2", "h1", "v": [S, .]}, probs [S]), as products
    of Bernoulli probabilities p(h2) p(h1 | h2) p(v | h1)."""
    W2, W1, c2, c1, b = (params[k] for k in ("W2", "W1", "c2", "c1", "b"))
    h2, h1, v = _grid(c2.size, c1.size, b.size)
    probs = (_bern_prob(h2, sigmoid(c2))
             * _bern_prob(h1, sigmoid(np.einsum("ij,sj->si", W2, h2) + c1))
             * _bern_prob(v, sigmoid(np.einsum("ij,sj->si", W1, h1) + b)))
    return {"h2": h2, "h1": h1, "v": v}, probs


# ----------------------------------------------------------------------------- DBN


def _neg_energy_top(params, h2, h3):
    """-E(h2, h3) = h2 @ W3 @ h3 + c2 @ h2 + c3 @ h3, broadcast over leading axes."""
    return (np.sum((h2 @ params["W3"]) * h3, axis=-1)
            + h2 @ params["c2"] + h3 @ params["c3"])


def dbn_log_joint_unnormalised(params, h3, h2, h1, v) -> np.ndarray:
    """-E(h2, h3) + log p(h1 | h2) + log p(v | h1) [n]; log p(h3, h2, h1, v) = this - log Z_top."""
    h3, h2, h1, v = (np.asarray(a, dtype=np.float64) for a in (h3, h2, h1, v))
    return (_neg_energy_top(params, h2, h3)
            + bern_logp(h1, h2 @ params["W2"].T + params["c1"])
            + bern_logp(v, h1 @ params["W1"].T + params["b"]))


def dbn_log_z_top(params) -> float:
    """log Z of the top RBM: log sum over all (h2, h3) of exp(-E(h2, h3))."""
    H2, H3 = all_states(params["c2"].size), all_states(params["c3"].size)
    return float(logsumexp(_neg_energy_top(params, H2[:, None, :], H3[None, :, :])))


def dbn_logp_exact(params, v) -> np.ndarray:
    """log p(v) [n] of the DBN, summing over all (h3, h2, h1) states."""
    v = np.asarray(v, dtype=np.float64)
    H3, H2, H1 = (all_states(params[k].size) for k in ("c3", "c2", "c1"))
    log_h2 = logsumexp(_neg_energy_top(params, H2[:, None, :], H3[None, :, :]), axis=1)       # [S2]
    log_h2h1 = log_h2[:, None] + bern_logp(H1[None], H2[:, None, :] @ params["W2"].T + params["c1"])
    log_h1 = logsumexp(log_h2h1, axis=0)                                                       # [S1]
    log_v_h1 = bern_logp(v[:, None, :], H1 @ params["W1"].T + params["b"])                    # [n, S1]
    return logsumexp(log_v_h1 + log_h1, axis=1) - dbn_log_z_top(params)


def table_dbn(params):
    """Exact DBN joint over (h3, h2, h1, v): ({"h3", "h2", "h1", "v": [S, .]}, probs [S]), as
    exp(-E(h2, h3)) p(h1 | h2) p(v | h1), normalised by its own sum (which is Z_top)."""
    W3, W2, W1, c3, c2, c1, b = (params[k] for k in ("W3", "W2", "W1", "c3", "c2", "c1", "b"))
    h3, h2, h1, v = _grid(c3.size, c2.size, c1.size, b.size)
    unnorm = (np.exp(np.einsum("si,ij,sj->s", h2, W3, h3) + h2 @ c2 + h3 @ c3)
              * _bern_prob(h1, sigmoid(np.einsum("ij,sj->si", W2, h2) + c1))
              * _bern_prob(v, sigmoid(np.einsum("ij,sj->si", W1, h1) + b)))
    return {"h3": h3, "h2": h2, "h1": h1, "v": v}, unnorm / unnorm.sum()


# ----------------------------------------------------------------------------- VAE


def vae_decoder_logits(params, z):
    """Bernoulli logits of x given z: Wo @ tanh(Wh @ z + bh) + bo, over leading axes of z."""
    return np.tanh(z @ params["Wh"].T + params["bh"]) @ params["Wo"].T + params["bo"]


def vae_log_joint(params, x, z) -> np.ndarray:
    """log p(x, z) = log N(z; 0, I) + log Bernoulli(x; decoder(z)); z [n, nz] or [k, n, nz]."""
    x, z = np.asarray(x, dtype=np.float64), np.asarray(z, dtype=np.float64)
    return normal_logp(z, 0.0, 1.0) + bern_logp(x, vae_decoder_logits(params, z))


def vae_guide(params, x):
    """(mean, std) [n, nz] of q(z | x): e = tanh(Ex @ x + be), mean = Em @ e + bm, std = exp(Es @ e + bs)."""
    e = np.tanh(np.asarray(x, dtype=np.float64) @ params["Ex"].T + params["be"])
    return e @ params["Em"].T + params["bm"], np.exp(e @ params["Es"].T + params["bs"])


def vae_log_q(params, x, z) -> np.ndarray:
    """log q(z | x) [n] (or [k, n] for z [k, n, nz]) of the diagonal Gaussian guide."""
    mean, std = vae_guide(params, x)
    return normal_logp(np.asarray(z, dtype=np.float64), mean, std)


def vae_elbo_reparam(params, x, eps) -> np.ndarray:
    """Reparameterised bound per row, z = mean + std * eps.
    eps [n, nz]: the one-sample ELBO estimate log p(x, z) - log q(z | x).
    eps [k, n, nz]: the IWAE bound log (1/k) sum_k exp(log p(x, z_k) - log q(z_k | x))."""
    mean, std = vae_guide(params, x)
    eps = np.asarray(eps, dtype=np.float64)
    z = mean + std * eps
    w = vae_log_joint(params, x, z) - normal_logp(z, mean, std)
    return w if eps.ndim == 2 else logsumexp(w, axis=0) - np.log(eps.shape[0])


def _normal_rule(n_points, half_width=12.0):
    """Nodes t and log-weights for E[f(t)], t ~ N(0, 1): the trapezoid rule on [-12, 12].
    For an integrand analytic in a strip |Im t| < s it converges like exp(-2 pi s / h)
    (h = node spacing), and the tails beyond 12 carry < 1e-32 of the mass."""
    t = np.linspace(-half_width, half_width, n_points)
    return t, -0.5 * t ** 2 - 0.5 * np.log(2 * np.pi) + np.log(t[1] - t[0])


def vae_elbo_exact_1d(params, x, n_points: int = 4001) -> np.ndarray:
    """Exact ELBO E_q[log p(x, z) - log q(z | x)] [n] for nz == 1 (to ~1e-10 for tiny models).

    E_q[log N(z; 0, 1)] and the entropy of q are closed-form; E_q[log p(x | z)] is a
    quadrature over z = mean + std * t, t ~ N(0, 1), on a uniform grid (see _normal_rule).
    (Gauss-Hermite with hermegauss's 200 nodes was 1e-2 nats off when std ~ 5: its nodes are
    ~1 apart in z, too coarse for the tanh decoder, and hermegauss overflows beyond ~350 nodes.)"""
    if params["bm"].size != 1:
        raise ValueError("vae_elbo_exact_1d needs nz == 1")
    x = np.asarray(x, dtype=np.float64)
    mean, std = vae_guide(params, x)                                 # [n, 1]
    t, logw = _normal_rule(n_points)
    z = mean + std * t[:, None, None]                                # [K, n, 1]
    loglik = np.exp(logw) @ bern_logp(x, vae_decoder_logits(params, z))
    prior = -0.5 * (mean ** 2 + std ** 2) - 0.5 * np.log(2 * np.pi)
    entropy = np.log(std) + 0.5 * np.log(2 * np.pi * np.e)
    return loglik + (prior + entropy)[:, 0]


def vae_logp_exact_1d(params, x, n_points: int = 4001) -> np.ndarray:
    """Exact log p(x) = log E_{N(z; 0, 1)}[p(x | z)] [n] for nz == 1, by the same quadrature."""
    if params["bm"].size != 1:
        raise ValueError("vae_logp_exact_1d needs nz == 1")
    t, logw = _normal_rule(n_points)
    loglik = bern_logp(np.asarray(x, dtype=np.float64), vae_decoder_logits(params, t[:, None, None]))   # [K, n]
    return logsumexp(loglik + logw[:, None], axis=0)


# ----------------------------------------------------------------------------- total variation


def tv_distance(samples: dict, states: dict, probs) -> float:
    """Total-variation distance 1/2 sum_s |empirical(s) - probs[s]| between sample rows and an
    exact table. Rows are the concatenation of the groups in `states` order (samples must hold
    the same groups, [N, .] each); a sample row that is not a state raises ValueError."""
    names = list(states)
    S = np.concatenate([np.asarray(states[k], dtype=np.float64).reshape(len(probs), -1) for k in names], axis=1)
    X = np.concatenate([np.asarray(samples[k], dtype=np.float64).reshape(len(samples[names[0]]), -1)
                        for k in names], axis=1)
    uniq, inv = np.unique(np.concatenate([S, X]) + 0.0, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    state_of = np.full(len(uniq), -1)
    state_of[inv[:len(S)]] = np.arange(len(S))
    if len(np.unique(inv[:len(S)])) != len(S):
        raise ValueError("duplicate rows in the states table")
    idx = state_of[inv[len(S):]]
    if np.any(idx < 0):
        raise ValueError(f"{np.sum(idx < 0)} sample rows are not states of the table")
    emp = np.bincount(idx, minlength=len(S)) / len(X)
    return 0.5 * float(np.abs(emp - np.asarray(probs)).sum())
