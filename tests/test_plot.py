"""Plotting helpers of gdsl.plot: sample grids, filters, training curves (Agg backend, no model)."""
from __future__ import annotations

import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from gdsl import plot  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    """(width, height) from a PNG's header (its IHDR chunk), checking that it is one."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG and head[12:16] == b"IHDR", head
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def saved_as_drawn(fig, path):
    """The file is a PNG of the figure's size at the dpi it was saved with (100)."""
    w, h = fig.get_size_inches() * 100
    assert png_size(path) == (round(w), round(h))


def images_of(fig):
    """The arrays drawn in each panel, in panel order."""
    return [ax.get_images()[0].get_array() for ax in fig.axes]


# ---------------------------------------------------------------- samples_grid
def test_samples_grid_one_panel_per_image_square_inferred(tmp_path):
    x = np.random.default_rng(0).random((7, 16))
    path = tmp_path / "grid.png"
    fig = plot.samples_grid(x, path=path)
    assert len(fig.axes) == 7  # no empty panels
    drawn = images_of(fig)
    assert all(d.shape == (4, 4) for d in drawn)
    np.testing.assert_allclose(drawn[3], x[3].reshape(4, 4))
    saved_as_drawn(fig, path)
    # 7 images in a square layout: 3 columns, 3 rows (the last two cells removed)
    geometry = {ax.get_subplotspec().get_geometry()[:2] for ax in fig.axes}
    assert geometry == {(3, 3)}


def test_samples_grid_given_shape_columns_and_count():
    x = np.zeros((30, 6))
    fig = plot.samples_grid(x, shape=(2, 3), ncols=4, n=10)
    assert len(fig.axes) == 10
    assert all(d.shape == (2, 3) for d in images_of(fig))
    assert {ax.get_subplotspec().get_geometry()[:2] for ax in fig.axes} == {(3, 4)}


def test_samples_grid_takes_images_and_a_common_grey_scale():
    x = np.arange(2 * 3 * 5, dtype=float).reshape(2, 3, 5)
    fig = plot.samples_grid(x)
    assert [d.shape for d in images_of(fig)] == [(3, 5), (3, 5)]
    assert {ax.get_images()[0].get_clim() for ax in fig.axes} == {(0.0, 29.0)}
    binary = plot.samples_grid(np.eye(4))  # values in [0, 1]: the scale is [0, 1]
    assert {ax.get_images()[0].get_clim() for ax in binary.axes} == {(0.0, 1.0)}
    assert len(binary.axes) == 4


def test_samples_grid_of_a_boolean_state_and_more_images_than_n():
    x = np.random.default_rng(1).random((150, 784)) < 0.2
    fig = plot.samples_grid(x)
    assert len(fig.axes) == 100  # n=100 by default
    assert images_of(fig)[0].shape == (28, 28)


@pytest.mark.parametrize("args, kw, match", [
    ((np.zeros((4, 12)),), {}, r"images have 12 values each, not a square number: give shape"),
    ((np.zeros((4, 12)),), {"shape": (5, 3)}, r"shape \(5, 3\) holds 15 values but each of the images has 12"),
    ((np.zeros((4, 3, 3)),), {"shape": (9, 1)}, r"images have shape \(3, 3\) each, but shape=\(9, 1\)"),
    ((np.zeros(16),), {}, r"images must have shape \(n, d\).*got shape \(16,\)"),
    ((np.zeros((2, 2, 2, 2)),), {}, r"images must have shape \(n, d\).*got shape \(2, 2, 2, 2\)"),
    ((np.zeros((0, 16)),), {}, r"at least one image"),
    ((np.full((2, 4), np.nan),), {}, r"images must hold finite numbers: \(0, 0\) is nan"),
    ((np.zeros((2, 4)),), {"shape": (2, 2.0)}, r"shape must be \(rows, cols\) of whole numbers"),
    ((np.zeros((2, 4)),), {"shape": (0, 4)}, r"shape must be \(rows, cols\)"),
    ((np.zeros((2, 4)),), {"ncols": 0}, r"ncols must be a whole number >= 1"),
    ((np.zeros((2, 4)),), {"n": 1.5}, r"n must be a whole number >= 1"),
    ((["a", "b"],), {}, r"images must be a real-valued numeric array"),
])
def test_samples_grid_refuses_bad_shapes(args, kw, match):
    with pytest.raises(ValueError, match=match):
        plot.samples_grid(*args, **kw)


# ---------------------------------------------------------------- filters
def test_filters_of_an_rbm_weight_one_image_per_hidden_unit(tmp_path):
    w = np.random.default_rng(2).normal(size=(36, 5))  # W[nv, nh]
    fig = plot.filters(w, path=tmp_path / "f.png")
    assert len(fig.axes) == 5
    drawn = images_of(fig)
    assert all(d.shape == (6, 6) for d in drawn)
    np.testing.assert_allclose(drawn[2], w[:, 2].reshape(6, 6))
    # each panel on its own scale by default
    assert fig.axes[2].get_images()[0].get_clim() == (w[:, 2].min(), w[:, 2].max())
    saved_as_drawn(fig, tmp_path / "f.png")


def test_filters_pixel_axis_rows_shape_and_common_scale():
    w = np.random.default_rng(3).normal(size=(4, 12))  # NADE's W[nh, d]: pixels along axis 1
    fig = plot.filters(w, shape=(3, 4))
    assert len(fig.axes) == 4 and all(d.shape == (3, 4) for d in images_of(fig))
    np.testing.assert_allclose(images_of(fig)[1], w[1].reshape(3, 4))
    top = np.abs(w).max()
    fig = plot.filters(w, shape=(3, 4), axis=1, scale="all", n=2)
    assert len(fig.axes) == 2
    assert {ax.get_images()[0].get_clim() for ax in fig.axes} == {(-top, top)}
    # both axes square (16 x 4): the longer one is the pixel axis
    fig = plot.filters(np.ones((16, 4)))
    assert len(fig.axes) == 4 and images_of(fig)[0].shape == (4, 4)
    fig = plot.filters(np.ones((16, 4)), axis=1)
    assert len(fig.axes) == 16 and images_of(fig)[0].shape == (2, 2)


def test_filters_of_convolutional_weights():
    w = np.random.default_rng(4).normal(size=(6, 3, 3))  # W[nk, f, f]
    fig = plot.filters(w, ncols=3)
    assert len(fig.axes) == 6 and all(d.shape == (3, 3) for d in images_of(fig))


@pytest.mark.parametrize("w, kw, match", [
    (np.zeros((10, 6)), {}, r"neither axis of weight \(shape \(10, 6\)\) has a square number"),
    (np.zeros((10, 6)), {"shape": (2, 2)}, r"shape \(2, 2\) holds 4 pixels, but weight has shape \(10, 6\)"),
    (np.zeros((10, 6)), {"axis": 0}, r"filters have 10 values each, not a square number"),
    (np.zeros((16, 6)), {"axis": 2}, r"axis must be 0 or 1"),
    (np.zeros((2, 3, 3)), {"axis": 0}, r"axis is for a 2-D weight"),
    (np.zeros(9), {}, r"weight must be 2-D .* or 3-D .*got shape \(9,\)"),
    (np.zeros((16, 4)), {"scale": "row"}, r"scale must be 'each' or 'all'"),
    (np.array([[np.inf]]), {}, r"weight must hold finite numbers"),
])
def test_filters_refuses_bad_shapes(w, kw, match):
    with pytest.raises(ValueError, match=match):
        plot.filters(w, **kw)


# ---------------------------------------------------------------- history
def energy_history(epochs=6):
    """What ModelBase.fit returns (docs/learning.md, "The history"), with validation data."""
    return [{"epoch": e, "lr": 0.05, "train_recon": 0.1 / e, "train_pll": -50.0 + e,
             "valid_recon": 0.12 / e, "valid_pll": -52.0 + e} for e in range(1, epochs + 1)]


def lines_of(ax):
    return {line.get_label(): line.get_xydata() for line in ax.get_lines() if not line.get_label().startswith("_")}


def test_history_one_panel_per_measurement(tmp_path):
    h = energy_history()
    fig = plot.history(h, path=tmp_path / "curve.png")
    assert len(fig.axes) == 2  # recon and pll; lr is constant, so not drawn
    recon = lines_of(fig.axes[0])
    assert set(recon) == {"train", "valid"}
    np.testing.assert_allclose(recon["valid"], [[r["epoch"], r["valid_recon"]] for r in h])
    assert fig.axes[0].get_ylabel() == "reconstruction error"
    assert fig.axes[1].get_ylabel() == "pseudo-log-likelihood"
    saved_as_drawn(fig, tmp_path / "curve.png")


def test_history_draws_a_changing_learning_rate_and_chosen_keys():
    h = [dict(r, lr=0.05 * (1 - i / 6)) for i, r in enumerate(energy_history())]
    assert len(plot.history(h).axes) == 3
    fig = plot.history(h, keys=["valid_pll"])
    assert len(fig.axes) == 1 and set(lines_of(fig.axes[0])) == {"valid"}
    fig = plot.history(h, keys="lr")
    assert fig.axes[0].get_ylabel() == "learning rate"


def test_history_of_directed_and_discriminative_histories():
    directed = [{"epoch": e, "lr": 1e-3, "train_objective": -90.0 + e, "train_elbo": -91.0 + e,
                 "train_iwae5": -90.5 + e} for e in (1, 2, 3)]
    fig = plot.history(directed)
    assert [ax.get_ylabel() for ax in fig.axes] == ["training objective", "ELBO", "IWAE bound (5 draws)"]
    discriminative = [{"epoch": e, "lr": 0.1, "train_cll": -1.0 / e, "train_error": 0.3 / e} for e in (1, 2)]
    assert len(plot.history(discriminative).axes) == 2


def test_history_of_greedy_layers_one_after_another():
    layers = [{"layer": "v -> h1", "history": [{"epoch": 1, "lr": 0.05}, {"epoch": 2, "lr": 0.05}],
               "replicated": ["v"], "halved": False},
              {"layer": "h1 -> h2", "history": [{"epoch": 1, "lr": 0.05}, {"epoch": 2, "lr": 0.05}],
               "replicated": ["h2"], "halved": False}]
    fig = plot.history(layers)  # only lr was recorded (greedy runs without monitors): drawn
    assert len(fig.axes) == 1
    xs = sorted(x for line in fig.axes[0].get_lines() for x in line.get_xdata() if line.get_linestyle() != ":")
    assert xs == [1, 2, 3, 4]
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["v -> h1", "h1 -> h2"]


def test_history_of_a_dict_of_lists_and_of_callback_records():
    fig = plot.history({"loss": [3.0, 2.0, 1.5], "valid_loss": [3.1, 2.2, 1.9]})
    assert len(fig.axes) == 1 and set(lines_of(fig.axes[0])) == {"loss", "valid"}
    np.testing.assert_allclose(lines_of(fig.axes[0])["loss"], [[1, 3.0], [2, 2.0], [3, 1.5]])


@pytest.mark.parametrize("history, kw, match", [
    ([], {}, r"history is empty"),
    ([{"epoch": 1}, {"epoch": 2}], {}, r"history holds no numbers to draw \(its records have epoch\)"),
    ([{"epoch": 1, "a": 1.0}, 5], {}, r"history\[1\] must be a dict"),
    (5, {}, r"history must be the list fit returns"),
    ("history", {}, r"history must be the list fit returns"),
    ({"a": [1, 2], "b": [1]}, {}, r"dict of equally long lists"),
    (energy_history(), {"keys": ["train_loss"]}, r"keys: 'train_loss'; the history has lr, train_recon"),
    (energy_history(), {"keys": []}, r"keys: none given"),
])
def test_history_refuses_what_it_cannot_draw(history, kw, match):
    with pytest.raises(ValueError, match=match):
        plot.history(history, **kw)


# ---------------------------------------------------------------- matplotlib missing
@pytest.mark.parametrize("call", [lambda: plot.samples_grid(np.zeros((1, 4))),
                                  lambda: plot.filters(np.zeros((4, 2))),
                                  lambda: plot.history(energy_history())])
def test_missing_matplotlib_says_what_to_install(monkeypatch, call):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(plot.MissingMatplotlib, match=r"pip install 'gdsl\[plot\]'"):
        call()
    assert issubclass(plot.MissingMatplotlib, ImportError)


def test_figures_do_not_touch_pyplot():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    plot.samples_grid(np.zeros((2, 4)))
    plot.history(energy_history())
    assert plt.get_fignums() == before


# ---------------------------------------------------------------- ais
def test_ais_draws_the_weights_and_the_estimates(tmp_path):
    rng = np.random.default_rng(0)
    forward = {"log_weights": rng.normal(0, 1, 100), "log_z0": 3.0, "reverse": False}
    reverse = {"log_weights": rng.normal(0, 1, 50), "log_z0": 5.0, "reverse": True}
    fig = plot.ais(forward, reverse, exact=4.0, path=tmp_path / "ais.png")
    saved_as_drawn(fig, tmp_path / "ais.png")
    hist, values = fig.axes
    assert len(hist.patches) > 10 and [t.get_text() for t in values.get_xticklabels()] == ["0: AIS", "1: reverse AIS"]
    with pytest.raises(ValueError, match="neither a model that has run AIS"):
        plot.ais({"log_z0": 1.0})
    with pytest.raises(ValueError, match="at least one run"):
        plot.ais()
