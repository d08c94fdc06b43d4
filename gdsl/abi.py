"""The kernel interface: each compiled kernel's name and its arguments, declared once.

A kernel's arguments are a sequence of *families*. A family is either one argument (`rng`,
`steps`) or one argument per item of an *order* (per group, per parameter, per size...),
printed with a prefix (`x_v`, `p_W`, `m_v`). The code generator prints every signature from
these specs and writes the module's orders and specs into the module (`ORDERS`,
`KERNEL_SPEC`); the runtime assembles a call by family name with `arguments()`, so no
argument order is written twice. Energy and directed kernels share this vocabulary.

This module imports nothing of gdsl: the compiler and the runtime both use it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence


@dataclass(frozen=True)
class Family:
    name: str
    over: str | None = None  # None: one argument called `name`; else the order it runs over
    prefixes: tuple[str, ...] = ()  # per item, one argument per prefix (`bf_v, bq_v`)

    def names(self, orders: Mapping[str, Sequence[str]]) -> list[str]:
        if self.over is None:
            return [self.name]
        return [prefix + item for item in orders[self.over] for prefix in self.prefixes]


def _per(name: str, over: str, *prefixes: str) -> Family:
    return Family(name, over, prefixes)


# orders: "groups" are the energy part's groups, "all_groups" every group of a directed model,
# "directed" / "guide" the groups drawn by p / q in ancestral order, "eps" the reparameterised
# latents; parameters, sizes and constants in declaration order
# (a model that unfolds in time adds "steps", its groups along the axis, and "states")
ORDER_NAMES = ("groups", "all_groups", "directed", "guide", "eps", "params", "sizes", "consts", "steps", "states")

FAMILIES = {f.name: f for f in (
    _per("state", "groups", "x_"), _per("params", "params", "p_"), _per("sizes", "sizes", "s_"),
    _per("consts", "consts", "k_"),
    _per("masks", "groups", "m_"), _per("free", "groups", "free_"), _per("summed", "groups", "sum_"),
    _per("bases", "groups", "bf_", "bq_"), _per("rb", "groups", "rb_"),
    # a base per chain, (rows, elements) per group, chain c using row c % rows (AIS of a step
    # given its states: every chain anneals its own conditional energy)
    _per("row_bases", "groups", "bf_", "bq_"), _per("rbfree", "groups", "rbfree_"),
    _per("grads", "params", "g_"), _per("velocity", "params", "v_"), _per("offsets", "groups", "mu_"),
    _per("data", "groups", "data_"), _per("has_data", "groups", "has_"), _per("pmask", "groups", "pmask_"),
    _per("pfree", "groups", "pfree_"), _per("init", "groups", "init_"), _per("chains", "groups", "chain_"),
    _per("cfree", "groups", "cfree_"), _per("cmask", "groups", "cmask_"), _per("rbmask", "groups", "rbmask_"),
    _per("all_state", "all_groups", "x_"), _per("eps", "eps", "e_"),
    _per("directed_masks", "directed", "m_"), _per("guide_masks", "guide", "m_"),
    # a GAN: the noise of every group the generator draws, and adjoints on the groups (dL/dx)
    _per("noise", "directed", "e_"), _per("adjoints", "all_groups", "dx_"),
    # sequences: padded frames (sequence, step, ...) and their clamp masks; adjoints on the
    # states after a step (dn_) and before it (dx_)
    _per("seqs", "steps", "xs_"), _per("seq_masks", "steps", "ms_"),
    _per("next_adjoints", "states", "dn_"), _per("prev_adjoints", "states", "dx_"),
    _per("kept", "states", "kept_"),
    _per("seq_chains", "steps", "cs_"),  # persistent chains of CD (PCD), one per frame, padded as seqs
    # a training epoch cut over threads: each part's statistics of the parameters it cannot update by
    # rows in its own row of (parts, ...); the minibatch's rows every part fills its share of
    # (positive phase, CD chains, Rao-Blackwellised statistics), read whole by the gradient
    _per("part_grads", "params", "pg_"), _per("shared_rows", "groups", "spos_", "sneg_", "srb_"),
)}

MODEL = ("state", "params", "sizes", "consts")  # the leading arguments of every energy kernel
DIRECTED_MODEL = ("n_rows", "all_state", "eps", "params", "sizes", "consts")  # ... of every directed kernel
GENERATOR = ("n_rows", "all_state", "noise", "params", "sizes", "consts")  # ... of a GAN generator's kernels

SPECS: dict[str, tuple[str, ...]] = {
    "field": MODEL + ("f",),
    "field_real": MODEL + ("f", "q"),
    "precision": MODEL + ("pp",),
    "gibbs": MODEL + ("masks", "free", "rng", "steps"),
    # a lattice of uniform couplings, 64 chains a uint64 word (runtime/multispin.py): packed
    # (words, *lattice), one stream per word
    "gibbs_packed": ("packed", "params", "sizes", "consts", "rng", "steps"),
    "mean_field": MODEL + ("masks", "free", "damping", "tol", "max_iter"),
    "free_energy": MODEL + ("summed", "beta", "out"),
    "energy_grad": MODEL + ("alpha", "grads"),
    "energy_grad_rows": MODEL + ("weights", "grads"),
    # energy_grad split for an epoch cut over threads: the parameters whose statistics are all dense
    # products, on this part's rows of the parameter (grad_span), and the others whole (grad_rest)
    "grad_span": MODEL + ("alpha", "grads", "part", "parts"),
    "grad_rest": MODEL + ("alpha", "grads"),
    "gibbs_rb": MODEL + ("masks", "free", "rb", "rbfree", "rng"),
    "train_epoch": ("params", "sizes", "consts", "data", "has_data", "pmask", "pfree", "init", "chains", "cfree",
                    "cmask", "rbmask", "rbfree", "velocity", "grads", "order", "batch", "rng", "lr", "momentum",
                    "decay", "k", "persistent", "mf_iters", "mf_tol", "mf_damping", "offsets", "centered",
                    "offset_rate", "part_grads", "shared_rows", "part", "parts", "sync"),
    "gibbs_tempered": MODEL + ("masks", "free", "bases", "beta", "rng"),
    "ais_steps": MODEL + ("masks", "free", "bases", "summed", "betas", "rng", "logw"),
    "gibbs_tempered_rows": MODEL + ("masks", "free", "row_bases", "beta", "rng"),
    "ais_steps_rows": MODEL + ("masks", "free", "row_bases", "summed", "betas", "rng", "logw"),
    # directed kernels: one set per program mode ("joint", "reparam"): `<mode>_values` ...
    "values": DIRECTED_MODEL,
    "forward": DIRECTED_MODEL + ("logp", "logq"),
    "backward": DIRECTED_MODEL + ("seed_p", "seed_q", "logp", "logq", "grads"),
    "sample_model": DIRECTED_MODEL + ("directed_masks", "rng"),
    "sample_guide": DIRECTED_MODEL + ("guide_masks", "rng"),
    # a model with a discriminator (a GAN): the generator draws every group from its noise into
    # all_state; its backward takes adjoints on the drawn groups back to the parameters. The
    # discriminator's logit per row, and its backward: d(sum_r seed[r] logit_r) into the
    # parameters (grads) and into the groups it reads (adjoints)
    "generate_values": GENERATOR,
    "generate_forward": GENERATOR,
    "generate_backward": GENERATOR + ("adjoints", "grads"),
    "discriminate_forward": DIRECTED_MODEL + ("logit",),
    "discriminate_backward": DIRECTED_MODEL + ("seed", "logit", "grads", "adjoints"),
    # a model that unfolds in time: reverse mode of one step (its "joint" program), and the
    # loops along time over sequences sorted longest first (`lengths`, descending)
    "step_backward": DIRECTED_MODEL + ("seed_p", "next_adjoints", "grads", "prev_adjoints"),
    "sequence_logp": ("n_rows", "lengths", "seqs", "params", "sizes", "consts", "out"),
    "sequence_backward": ("n_rows", "lengths", "seqs", "params", "sizes", "consts", "seed", "out", "grads"),
    "sequence_sample": ("n_rows", "lengths", "seqs", "seq_masks", "params", "sizes", "consts", "rng"),
    # ... and with an energy at every step (an RNN-RBM): the states before every step, CD-k
    # backpropagated through time, and step-by-step block Gibbs
    "sequence_states": ("n_rows", "lengths", "seqs", "params", "sizes", "consts", "kept"),
    "sequence_cd": ("n_rows", "lengths", "seqs", "seq_chains", "params", "sizes", "consts", "seed", "k",
                    "persistent", "rng", "out", "grads"),
    "sequence_gibbs_sample": ("n_rows", "lengths", "seqs", "seq_masks", "params", "sizes", "consts", "k", "rng"),
    # a denoiser's chain with latent states (a GSN), on the "reparam" program: the states drawn
    # as mean + std * eps into all_state; and the reverse mode of sum_r seed_p[r] log p_r +
    # sum dx_<state> * drawn state into the parameters and into the prev groups (dx_prev_<state>)
    "chain_forward": DIRECTED_MODEL,
    "chain_backward": DIRECTED_MODEL + ("seed_p", "logp", "grads", "adjoints"),
}


def family(name: str) -> Family:
    return FAMILIES.get(name) or Family(name)


def parameter_names(spec: Sequence[str], orders: Mapping[str, Sequence[str]]) -> list[str]:
    """The printed parameter list of a kernel with this spec."""
    return [n for f in spec for n in family(f).names(orders)]


def signature(kernel: str, spec: Sequence[str], orders: Mapping[str, Sequence[str]]) -> str:
    return f"{kernel}({', '.join(parameter_names(spec, orders))})"


# Domains whose values are one-hot rows along the last axis (K categories). A categorical_off
# row may also be all zero: K + 1 states, the pooling units of probabilistic max pooling,
# written `categorical(K, off)`.
ONE_HOT = ("categorical", "categorical_off")


def row_states(domain: str, categories: int) -> int:
    """How many values one row of a one-hot group takes."""
    return categories + 1 if domain == "categorical_off" else categories


def domain_text(domain: str, categories=None) -> str:
    """The domain as the .gdl source writes it."""
    if domain == "categorical_off":
        return f"categorical({categories}, off)"
    return domain + (f"({categories})" if categories is not None else "")


class MissingArgument(KeyError):
    pass


def arguments(spec: Sequence[str], orders: Mapping[str, Sequence[str]], values: Mapping[str, object]) -> list:
    """The positional arguments of a call: `values` maps each family to its value, or, for a
    per-item family, to a mapping from item to value (a tuple of values for several prefixes)."""
    out = []
    for name in spec:
        if name not in values:
            raise MissingArgument(f"no value for the kernel argument family {name!r}")
        f, value = family(name), values[name]
        if f.over is None:
            out.append(value)
            continue
        for item in orders[f.over]:
            v = value[item]
            if len(f.prefixes) > 1:
                out.extend(v)
            else:
                out.append(v)
    return out
