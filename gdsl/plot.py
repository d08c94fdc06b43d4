"""Plots, drawn with matplotlib (an optional dependency: `pip install 'gdsl[plot]'`).

samples_grid, filters, history, ais: a grid of samples (or of any images), the rows or
columns of a weight matrix as images, the per-epoch measurements a `fit` returns, and an AIS
run's log-weights with its estimates. Each returns a matplotlib Figure (built without pyplot,
so it leaves the pyplot state and backend of the caller alone) and writes it to `path` when
one is given. docs/api.md. (The factor graph is drawn by Graphviz: gdsl/picture.py.)
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

NO_MATPLOTLIB = "drawing needs matplotlib: pip install 'gdsl[plot]' (or pip install matplotlib)"


class MissingMatplotlib(ImportError):
    pass


# ---------------------------------------------------------------- images and training curves
def _figure(**kw):
    """A matplotlib Figure not registered with pyplot (the caller's backend and figures stay as they are)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingMatplotlib(NO_MATPLOTLIB) from None
    return Figure(**kw)


def _count(value, what: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a whole number >= 1, got {value!r}")
    return int(value)


def _image_shape(shape, length: int | None, what: str) -> tuple | None:
    """`shape` checked as (rows, cols) of positive whole numbers with rows * cols == length, or the
    square shape of `length` values (None when it is not square)."""
    if shape is None:
        if length is None:
            return None
        side = math.isqrt(length)
        return (side, side) if side * side == length else None
    try:
        rows, cols = (int(v) for v in shape)
        ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in shape) and rows >= 1 \
            and cols >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"shape must be (rows, cols) of whole numbers >= 1, got {shape!r}")
    if length is not None and rows * cols != length:
        raise ValueError(f"shape {(rows, cols)} holds {rows * cols} values but each of the {what} has {length}")
    return rows, cols


def _real(value, what: str) -> np.ndarray:
    try:
        if np.iscomplexobj(value):
            raise ValueError
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a real-valued numeric array") from None
    bad = ~np.isfinite(arr)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{what} must hold finite numbers: {where} is {float(arr[where])!r}")
    return arr


def _as_images(images, shape, what: str) -> np.ndarray:
    """(n, d) rows or (n, rows, cols) images as an (n, rows, cols) float array."""
    arr = _real(images, what)
    if arr.ndim == 3:
        if shape is not None and tuple(_image_shape(shape, None, what)) != arr.shape[1:]:
            raise ValueError(f"{what} have shape {arr.shape[1:]} each, but shape={tuple(shape)!r} was given")
    elif arr.ndim == 2:
        side = _image_shape(shape, arr.shape[1], what)
        if side is None:
            raise ValueError(f"{what} have {arr.shape[1]} values each, not a square number: give "
                             f"shape=(rows, cols)")
        arr = arr.reshape(arr.shape[0], *side)
    else:
        raise ValueError(f"{what} must have shape (n, d), one flattened image per row, or (n, rows, cols), "
                         f"got shape {arr.shape}")
    if arr.shape[0] == 0 or arr[0].size == 0:
        raise ValueError(f"{what} must hold at least one image of at least one pixel, got shape {arr.shape}")
    return arr


def _grid(images, ncols, path, title, cmap, ranges):
    """One panel per image, `ranges[i]` = (vmin, vmax) of image i; returns the Figure."""
    n, h, w = images.shape
    ncols = min(n, math.ceil(math.sqrt(n)) if ncols is None else _count(ncols, "ncols"))
    nrows = math.ceil(n / ncols)
    panel = max(0.35, min(1.0, 8.0 / ncols))  # inches per panel: about 8 inches across for large grids
    top = 0.35 if title else 0.0
    fig = _figure(figsize=(ncols * panel, nrows * panel * h / w + top))
    axes = fig.subplots(nrows, ncols, squeeze=False, gridspec_kw=dict(wspace=0.05, hspace=0.05))
    for i, ax in enumerate(axes.flat):
        if i >= n:
            fig.delaxes(ax)  # no empty panels: the figure has exactly one axes per image
            continue
        lo, hi = ranges[i]
        ax.imshow(images[i], cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - top / fig.get_figheight() - 0.01)
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def samples_grid(images, shape=None, ncols=None, path=None, n: int = 100, title=None, cmap="gray",
                vmin=None, vmax=None):
    """A grid of images, one panel each: `images` of shape (k, d) (rows of pixels, e.g. `m.sample(...)["v"]`;
    the image shape is `shape`, or square when d is a square number) or (k, rows, cols). The first `n`
    images are shown, `ncols` to a row (default: a square grid). The grey scale is the same for every
    panel: [vmin, vmax], by default [0, 1] when every value lies in it, else the images' range.
    Returns the matplotlib Figure; writes it to `path` (.png, .svg, .pdf) when given."""
    imgs = _as_images(images, shape, "images")
    imgs = imgs[:_count(n, "n")]
    lo = float(imgs.min()) if vmin is None else float(vmin)
    hi = float(imgs.max()) if vmax is None else float(vmax)
    if vmin is None and vmax is None and lo >= 0.0 and hi <= 1.0:
        lo, hi = 0.0, 1.0
    return _grid(imgs, ncols, path, title, cmap, [(lo, hi)] * len(imgs))


def filters(weight, shape=None, n: int = 100, ncols=None, path=None, axis=None, scale="each", title=None,
            cmap="gray"):
    """The filters of a weight matrix as images. A 2-D `weight` holds one image per row or column:
    `axis` is its pixel axis (the one of length rows * cols): 0 for an RBM's W[nv, nh] (one image
    per hidden unit), 1 for NADE's W[nh, d]. Without `axis` it is the axis of length prod(shape)
    when `shape` is given, else the axis of square length, the longer one when both are. A 3-D
    `weight` (k, rows, cols) is k images already (a convolutional RBM's W[nk, f, f]).
    The first `n` filters are shown; scale="each" stretches each panel's grey scale over its own
    range, scale="all" uses one range, symmetric about 0, for every panel. Returns the Figure."""
    w = _real(weight, "weight")
    if scale not in ("each", "all"):
        raise ValueError(f"scale must be 'each' or 'all', got {scale!r}")
    if w.ndim == 2:
        if axis is not None:
            if axis not in (0, 1, -1, -2) or isinstance(axis, bool):
                raise ValueError(f"axis must be 0 or 1 (the pixel axis of the weight), got {axis!r}")
            pixel = axis % 2
        else:
            if shape is not None:
                length = math.prod(_image_shape(shape, None, "filters"))
                fits = [a for a in (0, 1) if w.shape[a] == length]
                if not fits:
                    raise ValueError(f"shape {tuple(shape)} holds {length} pixels, but weight has shape {w.shape}: "
                                     f"neither axis has {length} elements")
            else:
                fits = [a for a in (0, 1) if math.isqrt(w.shape[a]) ** 2 == w.shape[a]]
                if not fits:
                    raise ValueError(f"neither axis of weight (shape {w.shape}) has a square number of elements: "
                                     f"give shape=(rows, cols) and, if needed, axis (the pixel axis)")
            pixel = max(fits, key=lambda a: (w.shape[a], -a))  # the longer; axis 0 on a tie
        imgs = _as_images(np.moveaxis(w, pixel, -1), shape, "filters")
    elif w.ndim == 3:
        if axis is not None:
            raise ValueError("axis is for a 2-D weight; a 3-D weight is already (k, rows, cols) images")
        imgs = _as_images(w, shape, "filters")
    else:
        raise ValueError(f"weight must be 2-D (pixels along one axis) or 3-D (k, rows, cols), got shape {w.shape}")
    imgs = imgs[:_count(n, "n")]
    if scale == "all":
        top = float(np.abs(imgs).max()) or 1.0
        ranges = [(-top, top)] * len(imgs)
    else:
        ranges = []
        for img in imgs:
            lo, hi = float(img.min()), float(img.max())
            ranges.append((lo, hi) if hi > lo else (lo - 1.0, hi + 1.0))
    return _grid(imgs, ncols, path, title, cmap, ranges)


METRIC_NAMES = {"recon": "reconstruction error", "pll": "pseudo-log-likelihood", "loglik": "log-likelihood",
                "elbo": "ELBO", "objective": "training objective", "cll": "conditional log-likelihood",
                "error": "classification error", "mp_loss": "multi-prediction loss", "lr": "learning rate"}
SPLITS = ("train", "valid")


def _segments(history) -> list:
    """[(label, records)]: one segment for a fit's history, one per layer for greedy training."""
    if isinstance(history, Mapping):
        if "history" in history:  # a checkpoint's "training" entry, or one layer of a greedy history
            return [(history.get("layer"), _records(history["history"]))]
        lengths = {len(v) for v in history.values() if _sequence(v)}
        if not history or len(lengths) != 1 or not all(_sequence(v) for v in history.values()):
            raise ValueError("history must be the list fit returns (one dict per epoch), a greedy fit's list of "
                             "layers, or a dict of equally long lists (one per measurement)")
        (length,) = lengths
        return [(None, [{k: v[i] for k, v in history.items()} for i in range(length)])]
    if not _sequence(history):
        raise ValueError(f"history must be the list fit returns (one dict per epoch), got {type(history).__name__}")
    if len(history) and all(isinstance(r, Mapping) and "history" in r for r in history):
        return [(r.get("layer"), _records(r["history"])) for r in history]
    return [(None, _records(history))]


def _sequence(value) -> bool:
    return isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, (str, bytes))


def _records(history) -> list:
    if not _sequence(history):
        raise ValueError(f"history must be a list of per-epoch dicts, got {type(history).__name__}")
    for i, r in enumerate(history):
        if not isinstance(r, Mapping):
            raise ValueError(f"history[{i}] must be a dict of measurements (as fit records per epoch), "
                             f"got {type(r).__name__}")
    return list(history)


def _number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _metric(key: str) -> tuple:
    """'valid_recon' -> ('recon', 'valid'); 'lr' -> ('lr', None)."""
    for split in SPLITS:
        if key.startswith(split + "_"):
            return key[len(split) + 1:], split
    return key, None


def _title(metric: str) -> str:
    if metric.startswith("iwae") and metric[4:].isdigit():
        return f"IWAE bound ({metric[4:]} draws)"
    return METRIC_NAMES.get(metric, metric)


def history(history, path=None, keys=None, title=None):
    """The measurements of a training run against the epoch: one panel per measurement (the
    training and validation values of one in the same panel). `history` is what `fit` returns
    (a list of one dict per epoch, or the records a `callback` collected), a greedy fit's list of
    layers (drawn one after another, a dotted line between layers), a checkpoint's training
    entry, or a dict of equally long lists. `keys` chooses the record keys to draw (default: every
    number but `epoch`, and `lr` only when it changes). Returns the Figure."""
    segments = _segments(history)
    if not any(records for _, records in segments):
        raise ValueError("history is empty: there are no epochs to draw")
    available = []
    for _, records in segments:
        for r in records:
            available += [k for k, v in r.items() if k != "epoch" and _number(v) and k not in available]
    if not available:
        raise ValueError("history holds no numbers to draw (its records have "
                         f"{', '.join(sorted({k for _, rs in segments for r in rs for k in r})) or 'no keys'})")
    if keys is None:
        lrs = {float(r["lr"]) for _, rs in segments for r in rs if _number(r.get("lr"))}
        chosen = [k for k in available if k != "lr"]
        if len(lrs) > 1 or not chosen:
            chosen += [k for k in available if k == "lr"]
    else:
        chosen = [keys] if isinstance(keys, str) else list(keys)
        unknown = [k for k in chosen if k not in available]
        if unknown or not chosen:
            raise ValueError(f"keys: {', '.join(map(repr, unknown)) or 'none given'}; the history has "
                             f"{', '.join(available)}")
    metrics = []
    for k in chosen:
        if _metric(k)[0] not in metrics:
            metrics.append(_metric(k)[0])
    fig = _figure(figsize=(6.4, 0.6 + 2.0 * len(metrics)))
    axes = fig.subplots(len(metrics), 1, sharex=True, squeeze=False)[:, 0]
    colours = {"train": "tab:blue", "valid": "tab:orange", None: "tab:green"}
    offset, boundaries = 0, []
    for s, (label, records) in enumerate(segments):
        xs = [offset + (int(r["epoch"]) if _number(r.get("epoch")) else i + 1) for i, r in enumerate(records)]
        for ax, metric in zip(axes, metrics):
            for k in chosen:
                name, split = _metric(k)
                if name != metric:
                    continue
                pts = [(x, float(r[k])) for x, r in zip(xs, records) if _number(r.get(k))]
                if pts:
                    ax.plot(*zip(*pts), marker="." if len(pts) < 30 else None, color=colours[split],
                            label=(split or k) if s == 0 or not ax.get_legend_handles_labels()[1] else None)
        if label is not None:
            boundaries.append((offset, label))
        offset = max(xs, default=offset)
    for ax, metric in zip(axes, metrics):
        ax.set_ylabel(_title(metric))
        ax.grid(True, alpha=0.3)
        if len({lbl for lbl in ax.get_legend_handles_labels()[1]}) > 1:
            ax.legend(fontsize=8)
        for x, _ in boundaries[1:]:
            ax.axvline(x + 0.5, color="0.5", linestyle=":")
    for x, label in boundaries:
        axes[0].annotate(label, xy=(x + 0.5, 1.0), xycoords=("data", "axes fraction"), fontsize=7,
                         va="bottom", ha="left")
    axes[-1].set_xlabel("epoch" if len(segments) == 1 else "epoch (layers one after another)")
    return _finished(fig, title, path)


# ---------------------------------------------------------------- annealed importance sampling
def ais(*runs, exact=None, path=None, title=None):
    """The runs of annealed importance sampling: each run's log-weights (relative to its largest:
    a wide spread means a few runs carry the estimate, which is then unreliable) and the log Z
    estimates with their standard deviations, forward and reverse side by side (they bracket
    log Z on average), and `exact` as a line when it is known.

    Each run is a model (its last AIS run, `m.last_ais`) or a copy of such a dict, taken after
    each `log_partition(method="ais" | "reverse-ais")` call."""
    from .runtime.ais import estimate

    if not runs:
        raise ValueError("ais needs at least one run: a model after log_partition(method='ais'), or its last_ais")
    items = []
    for k, run in enumerate(runs):
        record = getattr(run, "last_ais", run)
        if not isinstance(record, Mapping) or "log_weights" not in record:
            raise ValueError(f"run {k} is neither a model that has run AIS nor its last_ais dict")
        logw = _real(record["log_weights"], f"the log-weights of run {k}").reshape(-1)
        if len(logw) == 0:
            raise ValueError(f"run {k} has no log-weights")
        est = estimate(float(record["log_z0"]), logw, bool(record["reverse"]))
        items.append(("reverse AIS" if record["reverse"] else "AIS", logw, est))
    fig = _figure(figsize=(9.0, 3.4))
    spread, values = fig.subplots(1, 2)
    for k, (label, logw, _) in enumerate(items):
        spread.hist(logw - logw.max(), bins=min(40, max(5, len(logw) // 3)), alpha=0.6,
                    label=f"{k}: {label} ({len(logw)} runs)")
    spread.set_xlabel("log-weight - largest log-weight")
    spread.set_ylabel("runs")
    spread.legend(fontsize=8)
    for k, (label, _, est) in enumerate(items):
        values.errorbar([k], [est.log_z], yerr=[est.sd], fmt="o", capsize=4,
                        color="tab:orange" if label.startswith("reverse") else "tab:blue")
    if exact is not None:
        values.axhline(float(exact), color="0.3", linestyle="--", label="exact")
        values.legend(fontsize=8)
    values.set_xticks(range(len(items)), [f"{k}: {label}" for k, (label, _, _) in enumerate(items)], fontsize=8)
    values.set_ylabel("log Z (± sd)")
    values.grid(True, alpha=0.3)
    return _finished(fig, title, path)


def _finished(fig, title, path):
    """A curve figure's title and layout, saved to `path` (at 100 dpi) when one is given."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def piano_rolls(rolls, path=None, titles=None, lowest: int = 21, title=None):
    """Binary piano rolls (frames, keys), one panel each (a list, or an array (n, frames, keys)),
    time across and pitch up, as a sequence model samples them; returns the Figure. Only the
    range of keys any roll uses is shown."""
    rolls = [np.asarray(r) for r in (rolls if isinstance(rolls, (list, tuple)) else list(np.asarray(rolls)))]
    if not rolls or any(r.ndim != 2 for r in rolls):
        raise ValueError("piano_rolls takes rolls of shape (frames, keys): a list, or an array (n, frames, keys)")
    used = np.nonzero(np.any([r.any(axis=0) for r in rolls], axis=0))[0]
    lo, hi = (int(used.min()), int(used.max()) + 1) if used.size else (0, rolls[0].shape[1])
    n = len(rolls)
    top = 0.35 if title else 0.0
    fig = _figure(figsize=(8.0, 1.8 * n + top))
    axes = fig.subplots(n, 1, squeeze=False)
    for i, (ax, r) in enumerate(zip(axes[:, 0], rolls)):
        ax.imshow(r[:, lo:hi].T, origin="lower", aspect="auto", cmap="Greys", interpolation="nearest",
                  extent=(0, r.shape[0], lowest + lo - 0.5, lowest + hi - 0.5), vmin=0, vmax=1)
        ax.set_ylabel("MIDI pitch")
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    axes[-1, 0].set_xlabel("frame (quarter note)")
    return _finished(fig, title, path)
