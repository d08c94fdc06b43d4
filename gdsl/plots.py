"""Pictures, drawn with matplotlib (an optional dependency: `pip install 'gdsl[plot]'`).

draw_graph: the factor graph of a model (what `gdsl graph -o model.png` writes): variable
groups as ellipses in declaration order along the top, energy terms and conditionals as
boxes below, an edge from each to the groups it holds (an arrow for a directed conditional).
"""
from __future__ import annotations

import networkx as nx

PICTURES = (".png", ".svg", ".pdf")


class MissingMatplotlib(ImportError):
    pass


def pyplot():
    """matplotlib.pyplot on a non-interactive backend, or an error that says what to install."""
    try:
        import matplotlib
    except ImportError:
        raise MissingMatplotlib("drawing needs matplotlib: pip install 'gdsl[plot]' (or pip install matplotlib); "
                                "gdsl graph writes .dot and .graphml without it") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_graph(graph: nx.Graph, path: str) -> None:
    plt = pyplot()
    variables = [n for n, d in graph.nodes(data=True) if d["kind"] == "variable"]
    factors = [n for n, d in graph.nodes(data=True) if d["kind"] != "variable"]
    width = max(len(variables), len(factors), 2)
    pos = {n: ((k + 0.5) * width / len(variables), 1.0) for k, n in enumerate(variables)}
    pos.update({n: ((k + 0.5) * width / max(len(factors), 1), 0.0) for k, n in enumerate(factors)})
    fig, ax = plt.subplots(figsize=(max(4.0, 2.3 * width), 3.4))
    for a, b, data in graph.edges(data=True):
        (x0, y0), (x1, y1) = pos[a], pos[b]
        if data.get("directed"):
            src, dst = (a, b) if data["toward"] == b else (b, a)
            ax.annotate("", xy=pos[dst], xytext=pos[src],
                        arrowprops=dict(arrowstyle="-|>", color="0.3", shrinkA=18, shrinkB=18), zorder=1)
        else:
            ax.plot([x0, x1], [y0, y1], color="0.5", linewidth=1, zorder=1)
    for n in variables:
        d = graph.nodes[n]
        ax.text(*pos[n], f"{d['label']}\n{d['domain']} [{d['shape']}]", ha="center", va="center", fontsize=9,
                bbox=dict(boxstyle="round,pad=0.5", facecolor="#dce9f7", edgecolor="0.3"), zorder=2)
    for n in factors:
        d = graph.nodes[n]
        ax.text(*pos[n], f"{d['label']}\nline {d['line']}", ha="center", va="center", fontsize=8,
                bbox=dict(boxstyle="square,pad=0.4", facecolor="#f4f4f4", edgecolor="0.3"), zorder=2)
    ax.set_xlim(-0.2, width + 0.2)
    ax.set_ylim(-0.5, 1.5)
    ax.axis("off")
    ax.set_title(f"factor graph of {graph.graph.get('name', 'model')}")
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
