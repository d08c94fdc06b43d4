"""Pictures of a model's factor graph: its DOT text laid out and drawn by Graphviz.

Graphviz comes with pygraphviz (its wheels carry the Graphviz libraries; an optional extra,
`pip install 'gdsl[graph]'`, part of the test set-up). The DOT text is the source: the
compiler writes it (`ir/graph.to_dot`, every label escaped) and `gdsl graph -o g.dot` keeps
it. Shared by the compiler (`gdsl graph -o g.png`) and the runtime (`m.graph()`), so it
imports neither.
"""
from __future__ import annotations

PICTURES = {".png": "png", ".svg": "svg", ".pdf": "pdf"}


class MissingGraphviz(ImportError):
    pass


def render(dot: str, fmt: str) -> bytes:
    """The picture of `dot` in format `fmt` ("png", "svg" or "pdf"), laid out by `dot`."""
    try:
        import pygraphviz
    except ImportError:
        raise MissingGraphviz("drawing the graph needs Graphviz through pygraphviz: pip install 'gdsl[graph]' "
                              "(or pip install pygraphviz); gdsl graph writes .dot and .graphml without it") from None
    return pygraphviz.AGraph(string=dot).draw(format=fmt, prog="dot")


class GraphPicture:
    """A factor graph that shows itself in Jupyter (as SVG), keeps its DOT `source`, and saves as
    .png, .svg, .pdf or .dot."""

    def __init__(self, dot: str):
        self.source = dot

    def _repr_svg_(self) -> str:
        return render(self.source, "svg").decode("utf-8")

    def save(self, path) -> None:
        import os

        suffix = os.path.splitext(str(path))[1].lower()
        if suffix in (".dot", ".gv"):
            data = self.source.encode("utf-8")
        elif suffix in PICTURES:
            data = render(self.source, PICTURES[suffix])
        else:
            raise ValueError(f"cannot tell the format of {str(path)!r} from its ending; use .png, .svg, .pdf or .dot")
        with open(path, "wb") as fh:
            fh.write(data)

    def __repr__(self) -> str:
        return f"<GraphPicture: {self.source.count(chr(10))} lines of DOT; .save('g.png') or display in Jupyter>"
