"""The order of summation in a monomial's loop nest: sum an index out early when it can be.

A monomial's kernel loop runs over all its indices at once: the precision of the mcRBM,
pp[a, b] += C[a, f] C[b, f] P[f, k] hc[k], costs a*b*f*k per chain. But k appears only in
factors without a or b, so t[f] = sum_k P[f, k] hc[k] can be formed first (f*k) and the
main nest runs over a, b, f with t[f] instead of two factors (a*b*f): one step of variable
elimination, as an einsum contraction order does. `plan` repeats such steps greedily:

- an index may be summed out early if it is not one the result is indexed by (a target);
- its factors become one partial sum over their other indices (the interface, which may
  hold target indices: the partial is formed before the main nest, per chain);
- a step is taken only if the partial's loops (interface and the index) are fewer than the
  nest's current loops, so it always saves work; the smallest partial goes first.

Only rectangular nests are planned (bounds free of other indices, no guards): a partial sum
over a range that depends on another index would need that index too.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Partial:
    """name[interface] = sum over `summed` of the product of `members` (term ids)."""

    name: str
    interface: tuple[str, ...]
    summed: tuple[str, ...]
    members: tuple[int, ...]


@dataclass
class Contraction:
    partials: list[Partial] = field(default_factory=list)
    main: tuple[str, ...] = ()  # the indices the main nest still runs over
    terms: dict[int, frozenset] = field(default_factory=dict)  # term id -> its indices (partials included)
    remaining: tuple[int, ...] = ()  # the term ids left in the main product


def plan(terms: list[frozenset], order: list[str], target: frozenset, prefix: str = "t") -> Contraction:
    """Terms are the index sets of the product's factors (ids 0..n-1); `order` the nest's loop
    order; `target` the indices the result is written at. Partials get ids n, n+1, ..."""
    current = dict(enumerate(terms))
    main = list(order)
    out = Contraction(terms=dict(current))
    while True:
        step = _best_step(current, main, target)
        if step is None:
            break
        r, members, interface = step
        pid = len(out.terms)
        name = f"{prefix}{len(out.partials) + 1}"
        ordered = tuple(i for i in order if i in interface)
        out.partials.append(Partial(name, ordered, (r,), tuple(members)))
        for k in members:
            del current[k]
        current[pid] = frozenset(interface)
        out.terms[pid] = frozenset(interface)
        main.remove(r)
    out.main = tuple(main)
    out.remaining = tuple(current)
    return out


def _best_step(current: dict, main: list[str], target: frozenset):
    best = None
    for r in main:
        if r in target:
            continue
        members = [k for k, idx in current.items() if r in idx]
        if not members:
            continue
        interface = frozenset().union(*(current[k] for k in members)) - {r}
        loops = len(interface) + 1
        if loops >= len(main):
            continue  # the partial would loop over everything the nest does: no saving
        if best is None or loops < best[0]:
            best = (loops, r, members, interface)
    return None if best is None else best[1:]
