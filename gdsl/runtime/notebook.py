"""How models and training histories show in Jupyter (`_repr_html_`): plain HTML tables.

Every name shown comes from the model's module (identifiers checked by the compiler) or from
the user's records, and all of it is escaped: a notebook never renders markup from them."""
from __future__ import annotations

from html import escape


def table(header, rows) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def model_html(model) -> str:
    """Name and sizes, the variable groups, the parameters with shapes, and the schedule."""
    domains = getattr(model, "all_domains", model.domains)
    roles = getattr(model, "all_roles", model.roles)
    groups = [(g, roles[g], domains[g], _shape(model.shape(g))) for g in domains]
    params = [(p, _shape(model.shape(p)), model.dtype.name) for p in model.params]
    parts = [f"<p><b>{escape(repr(model))}</b></p>",
             table(("group", "role", "domain", "shape"), groups),
             table(("parameter", "shape", "dtype"), params) if params else "<p>no learned parameters</p>"]
    schedule = getattr(model, "SCHEDULE", "")
    if schedule:
        parts.append(f"<p>{escape(schedule)}</p>")
    return "\n".join(parts)


def _shape(shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]" if shape else "scalar"


class History(list):
    """A fit's records, one dict per epoch: a list, shown in a notebook as a table."""

    def _repr_html_(self) -> str:
        if not self:
            return "<p>no epochs recorded</p>"
        keys = list(dict.fromkeys(k for record in self for k in record))
        rows = [[_cell(record.get(k, "")) for k in keys] for record in self]
        return table(keys, rows)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
