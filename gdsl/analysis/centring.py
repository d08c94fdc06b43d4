"""Which parameters centred training transforms (Montavon & Mueller 2012; Melchior et al. 2016).

A centred Boltzmann machine writes every layer x as x - mu_x (offsets near the layer's mean)
in its energy: -(x - mu)' W (y - lam) - b'(x - mu) - c'(y - lam). It is the same family as the
plain model (b = b' - W lam, c = c' - W' mu, up to a constant), but a gradient step in the
centred parameters is a better-conditioned step in the plain ones. In the plain parameters
that the kernels use, the step's statistics g (data minus model, per parameter) become

    g_W <- g_W - mu g_c' - g_b lam'        (for each weight W between x and y)
    g_b <- g_b - g_W lam,  g_c <- g_c - g_W' mu   (with the new g_W, every weight of the layer)

(each g_b and g_c term times s_W / s_b, the ratio of the terms' scales, when the energy is
written with other scales than -x @ W @ y - b @ x)
which needs, for every weight, the layers it joins and their biases. This module finds them:
every term of the energy must be a weight between two groups, -sum W[x..., y...] x[x...]
y[y...] over full ranges, or a bias, -sum b[x...] x[x...], with every joined group having one
bias. Anything else (a squared real term, a lateral coupling) leaves centring unavailable,
with the reason.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..ir.model import IAccess, Monomial
from .plan import Plan, _dense, _plain_vars


@dataclass(frozen=True)
class Coupling:
    weight: str
    lower: str  # the group on the weight's first axes
    upper: str
    lower_bias: str
    upper_bias: str
    lower_ratio: float = 1.0  # the weight term's scale over the lower bias term's (1 for -x @ W @ y - b @ x)
    upper_ratio: float = 1.0


def centring(plan: Plan) -> tuple[list[Coupling], Optional[str]]:
    """The weights and biases centring transforms, or ([], why it is not available)."""
    ir = plan.ir
    weights, biases, scales = [], {}, {}
    for m in ir.monomials:
        line = f"the term m{m.id} (line {m.span.line})"
        weight = _weight(m, ir)
        if weight is not None:
            weights.append(weight)
            continue
        bias = _bias(m, ir)
        if bias is None:
            return [], (f"{line} is neither a weight between two groups (-x @ W @ y) nor a bias (-b @ x), "
                        "so the energy cannot be written in centred variables")
        group, param = bias
        if group in biases:
            return [], f"{group} has two bias terms ({biases[group]} and {param})"
        biases[group], scales[group] = param, m.scale
    out = []
    for w, lower, upper, scale in weights:
        missing = [g for g in (lower, upper) if g not in biases]
        if missing:
            return [], f"{missing[0]} has no bias term (-b @ {missing[0]}): centring moves the offsets into the biases"
        out.append(Coupling(w, lower, upper, biases[lower], biases[upper], scale / scales[lower],
                            scale / scales[upper]))
    if not out:
        return [], "the energy has no weight between two groups"
    return out, None


def _weight(m: Monomial, ir) -> Optional[tuple[str, str, str, float]]:
    """(W, lower group, upper group, scale) for scale * sum W[x..., y...] x[x...] y[y...] over full ranges."""
    if len(m.factors) != 2:
        return None
    d = _dense(m, 1, ir)
    if d is None or d.scalar_coef or ir.groups[m.factors[0].group].domain == "real" \
            or ir.groups[m.factors[1].group].domain == "real":
        return None
    mine = m.factors[1].group
    return (d.param, mine, d.other, m.scale) if d.transpose else (d.param, d.other, mine, m.scale)


def _bias(m: Monomial, ir) -> Optional[tuple[str, str]]:
    """(group, b) for scale * sum b[x...] x[x...] over full ranges."""
    if len(m.factors) != 1 or m.guards or len(m.coef) != 1:
        return None
    f, c = m.factors[0], m.coef[0]
    if f.power != 1 or not isinstance(c, IAccess) or ir.groups[f.group].domain == "real":
        return None
    x_vars, b_vars = _plain_vars(f.index), _plain_vars(c.index)
    if x_vars is None or x_vars != b_vars or ir.params[c.name].shape != ir.groups[f.group].shape:
        return None
    return f.group, c.name
