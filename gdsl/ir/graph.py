"""The factor graph of a model: variable-group nodes, one factor node per monomial.

Exported as Graphviz DOT (written here, no pydot needed), GraphML (networkx), or a picture
of the DOT drawn by Graphviz (gdsl/picture.py).
"""
from __future__ import annotations

import os

import networkx as nx

from ..picture import PICTURES, render
from .model import ModelIR


def var_node(name: str) -> str:
    return f"var:{name}"


def factor_node(mid: int) -> str:
    return f"factor:m{mid}"


def build_factor_graph(ir: ModelIR) -> nx.Graph:
    g = nx.Graph(name=ir.name)
    for grp in ir.groups.values():
        g.add_node(var_node(grp.name), kind="variable", label=grp.name, role=grp.role, domain=grp.domain,
                   shape=",".join(str(d) for d in grp.shape))
    for m in ir.monomials:
        node = factor_node(m.id)
        g.add_node(node, kind="factor", label=f"m{m.id}", line=m.span.line, term=m.text())
        for f in m.factors:
            g.add_edge(node, var_node(f.group))
    return g


def add_directed(g: nx.Graph, directed) -> None:
    """The conditionals: a node per `x ~ family(...)`, edges from its parents and to x (directed=1)."""
    from .model import iexpr_accesses

    for grp in directed.groups.values():
        if var_node(grp.name) not in g:
            g.add_node(var_node(grp.name), kind="variable", label=grp.name, role=grp.role, domain=grp.domain,
                       shape=",".join(str(d) for d in grp.shape))
    for c in directed.model + directed.guide:
        node = f"{'guide' if c.in_guide else 'cond'}:{c.group}"
        g.add_node(node, kind="conditional", label=f"{'q' if c.in_guide else 'p'}({c.group} | ...) {c.family}",
                   line=c.span.line, term=c.family)
        parents = {a.name for _, e in c.args for a in iexpr_accesses(e) if a.kind == "group"} - {c.group}
        for p in sorted(parents):
            g.add_edge(var_node(p), node, directed=1, toward=node)
        g.add_edge(node, var_node(c.group), directed=1, toward=var_node(c.group))
    d = getattr(directed, "discriminator", None)
    if d is not None:  # a GAN's discriminator: a node reading the data it judges
        g.add_node("discriminator", kind="conditional", label="discriminator logit", line=d.span.line,
                   term="discriminator")
        for r in d.reads:
            g.add_edge(var_node(r), "discriminator", directed=1, toward="discriminator")


def group_graph(ir: ModelIR) -> nx.Graph:
    """Groups joined when they share a monomial; a self-loop marks lateral coupling."""
    g = nx.Graph()
    g.add_nodes_from(ir.groups)
    for m in ir.monomials:
        groups = m.groups
        for a in groups:
            for b in groups:
                if a < b:
                    g.add_edge(a, b)
        for a in groups:
            if len(m.occurrences(a)) > 1:
                g.add_edge(a, a)
    return g


def to_dot(graph: nx.Graph) -> str:
    lines = [f'graph "{_esc(graph.graph.get("name", "model"))}" {{']
    for node, data in graph.nodes(data=True):
        if data["kind"] == "variable":
            label = f'{data["label"]}\n{data["domain"]} [{data["shape"]}]'
            lines.append(f'  "{_esc(node)}" [shape=ellipse, label="{_esc(label)}"];')
        elif data["kind"] == "conditional":
            label = f'{data["label"]} (line {data["line"]})'
            lines.append(f'  "{_esc(node)}" [shape=diamond, label="{_esc(label)}"];')
        else:
            label = f'{data["label"]} (line {data["line"]})'
            lines.append(f'  "{_esc(node)}" [shape=box, label="{_esc(label)}", tooltip="{_esc(data["term"])}"];')
    for a, b, data in graph.edges(data=True):
        if data.get("directed"):  # drawn as an arrow toward the conditioned side
            a, b = (a, b) if data["toward"] == b else (b, a)
            lines.append(f'  "{_esc(a)}" -- "{_esc(b)}" [dir=forward];')
        else:
            lines.append(f'  "{_esc(a)}" -- "{_esc(b)}";')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _esc(s: str) -> str:
    return str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


GRAPH_FORMATS = (".dot", ".gv", ".graphml", ".xml", ".png", ".svg", ".pdf")


class UnknownGraphFormat(ValueError):
    """The output's ending names none of GRAPH_FORMATS (a user error, not a bug)."""


def write_graph(graph: nx.Graph, path: str) -> None:
    """By the file's ending: DOT text (.dot, .gv), GraphML (.graphml, .xml), or a picture
    (.png, .svg, .pdf: the DOT text drawn by Graphviz, gdsl/picture.py). Any other ending is a
    ValueError."""
    suffix = os.path.splitext(str(path))[1].lower()
    if suffix in (".graphml", ".xml"):
        nx.write_graphml(graph, path)
    elif suffix in (".dot", ".gv"):
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(to_dot(graph))
    elif suffix in PICTURES:
        data = render(to_dot(graph), PICTURES[suffix])
        with open(path, "wb") as fh:
            fh.write(data)
    else:
        raise UnknownGraphFormat(f"cannot tell the format of {path!r} from its ending; use one of "
                         f"{', '.join(GRAPH_FORMATS)}")
