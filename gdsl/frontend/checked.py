"""What checking produces: the types of expressions and the checked model.

A `Type` is what the checker writes on every expression node (`.type`) for the lowering
stage; the `...Info` records and `CheckedModel` are the model's declarations with their
shapes and domains resolved. Shapes are tuples of `Poly`s in the size arguments.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..errors import Source, Span
from ..poly import Poly
from . import ast


@dataclass(frozen=True)
class Type:
    shape: tuple[Poly, ...] = ()
    groups: frozenset = frozenset()  # variable groups the value depends on
    is_int: bool = False  # an integer scalar (sizes, index variables, literals)

    @property
    def is_scalar(self) -> bool:
        return not self.shape


@dataclass
class GroupInfo:
    name: str
    role: str
    shape: tuple[Poly, ...]
    domain: str
    categories: Optional[Poly]
    decl: ast.GroupDecl


@dataclass
class ParamInfo:
    name: str
    shape: tuple[Poly, ...]
    constraints: tuple[str, ...]
    init: Optional[ast.Init]
    decl: ast.ParamDecl


@dataclass
class LetInfo:
    name: str
    type: Optional[Type]
    decl: ast.LetDecl


@dataclass
class CondInfo:
    """A directed conditional `group ~ family(args)`; `free` index names bind the group's leading axes."""
    group: str
    family: str
    args: dict[str, ast.Expr]  # canonical argument name -> expression
    free: tuple[str, ...]
    parents: frozenset  # groups the arguments depend on (itself, for autoregressive ones)
    span: Span
    in_guide: bool


@dataclass
class DiscInfo:
    """A GAN's discriminator: `logit` (a scalar expression per row) from the visible groups it
    reads, through its own let bindings and parameters (`params`, kept apart from p's and q's)."""
    logit: ast.Expr
    reads: tuple[str, ...]  # the visible groups the logit depends on, in declaration order
    params: tuple[str, ...]  # its parameters, in declaration order
    span: Span  # the whole `discriminator { ... }` block
    logit_span: Span  # the `logit = ...` statement


@dataclass
class DenoiserInfo:
    """A denoising autoencoder's chain (`denoiser { ... }`): the visible group it reconstructs,
    the group its corruption draws (the first `~`, a q conditional), the latent states drawn
    between (a GSN's; q conditionals too), and the groups `prev(h)` reads: name -> h."""
    visible: str
    corrupt: str
    states: tuple[str, ...]
    prev: dict  # the implicit group holding h one chain step back -> h
    span: Span  # the whole block
    init: dict = field(default_factory=dict)  # implicit group -> the parameter it holds before step 1 (prev(h, h0))


@dataclass
class CheckedModel:
    name: str
    sizes: dict[str, int]
    consts: dict[str, float]
    groups: dict[str, GroupInfo]
    params: dict[str, ParamInfo]
    energies: list[ast.EnergyDecl]
    ast: ast.Model
    source: Source
    decl_spans: dict[str, Span] = field(default_factory=dict)
    lets: dict[str, LetInfo] = field(default_factory=dict)
    conditionals: list[CondInfo] = field(default_factory=list)  # the model's, in topological order
    guide: list[CondInfo] = field(default_factory=list)  # the guide's, in topological order
    discriminator: Optional[DiscInfo] = None
    denoiser: Optional[DenoiserInfo] = None
    sequence: Optional["SequenceInfo"] = None  # a model with `time t` is checked as its step model

    @property
    def states(self) -> tuple[str, ...]:
        return tuple(self.sequence.states) if self.sequence is not None else ()

    @property
    def directed(self) -> set[str]:
        d = self.denoiser  # the groups of a denoiser's chain are its own, not an energy's
        return ({c.group for c in self.conditionals} | ({d.corrupt, *d.states, *d.prev} if d else set())
                | set(self.states))


def shape_str(shape: tuple[Poly, ...]) -> str:
    return "scalar" if not shape else "[" + ", ".join(str(d) for d in shape) + "]"
