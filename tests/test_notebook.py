"""Jupyter niceties (issue 23, item 7): a model and a training history show as HTML tables."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import load_model
from gdsl.runtime.notebook import History, table


def test_a_model_shows_its_groups_parameters_and_schedule():
    m = load_model("rbm")
    html = m._repr_html_()
    for text in ("<td>v</td><td>visible</td><td>binary</td><td>[4]</td>", "<td>W</td><td>[4, 3]</td>",
                 "2 Gibbs blocks {v} | {h}", "&lt;gdsl model rbm(nv=4, nh=3) float32&gt;"):
        assert text in html, text


def test_a_history_is_a_list_and_a_table():
    m = load_model("rbm")
    data = {"v": (np.random.default_rng(0).random((20, 4)) < 0.5).astype(np.float32)}
    history = m.fit(data, epochs=2, progress=False)
    assert isinstance(history, History) and isinstance(history, list) and len(history) == 2
    html = history._repr_html_()
    assert html.count("<tr>") == 3 and "<th>epoch</th>" in html
    assert History()._repr_html_() == "<p>no epochs recorded</p>"


def test_markup_in_cells_is_escaped():
    assert "<b>" not in table(["<b>"], [["<script>"]]) and "&lt;script&gt;" in table(["a"], [["<script>"]])


def test_a_model_draws_its_factor_graph(tmp_path):
    pytest.importorskip("pygraphviz")
    picture = load_model("dbm").graph()
    assert picture.source.startswith('graph "dbm" {') and '"var:h1"' in picture.source
    assert picture._repr_svg_().startswith("<?xml")
    for ext, magic in (("png", b"\x89PNG\r\n\x1a\n"), ("pdf", b"%PDF"), ("dot", b'graph "dbm"')):
        picture.save(tmp_path / f"g.{ext}")
        assert (tmp_path / f"g.{ext}").read_bytes().startswith(magic)
    with pytest.raises(ValueError, match="cannot tell the format"):
        picture.save(tmp_path / "g.jpg")
