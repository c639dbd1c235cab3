"""The examples' charts, drawn with matplotlib: training curves and run comparisons.

    plot_curves(history, "runs/synthetic/curves.png")          # train_segnet.py, after training
    plot_runs({"scratch": history_a, "lazy": history_b}, "runs/comparison.png", target=("scratch", 0.63))

matplotlib belongs to the examples' extra (``pip install 'minidl[examples]'``), not
to the library: minidl itself draws only masks and overlays, with Pillow
(``minidl/visualize.py``). A ``history`` is train_segnet.py's list of per-epoch
dicts ("train_loss", "val_pixel_accuracy", "elapsed_seconds", ...).

matplotlib is imported when a chart is drawn, not when this module is, so an
example that imports it still runs (without charts) where matplotlib is missing.
"""
from __future__ import annotations

import math

# Panel title -> the history keys drawn in it (a key no epoch has is left out).
CURVE_PANELS = {
    "loss": ["train_loss", "val_loss"],
    "pixel accuracy (non-void)": ["train_accuracy", "val_pixel_accuracy"],
    "mean IoU": ["val_mean_iou"],
}
LABELS = {"train_loss": "train", "val_loss": "held-out", "train_accuracy": "train",
          "val_pixel_accuracy": "held-out", "val_mean_iou": "held-out"}


def new_figure(panels, width=4.2, height=3.2):
    """A matplotlib Figure with ``panels`` axes side by side (no pyplot: nothing global, no display needed)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError("the examples draw charts with matplotlib: pip install 'minidl[examples]' "
                          "(or pip install matplotlib)") from error
    figure = Figure(figsize=(width * panels, height), layout="constrained")
    axes = figure.subplots(1, panels, squeeze=False)[0]
    for ax in axes:
        ax.grid(True, color="0.9")
    return figure, axes


def _finite(xs, ys):
    """The (x, y) pairs whose y is a number (an epoch without a figure is skipped)."""
    pairs = [(x, y) for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
    return [x for x, _ in pairs], [y for _, y in pairs]


def plot_curves(history, path, panels=None):
    """Save a PNG of training curves: one panel per entry of ``panels`` (default ``CURVE_PANELS``), by epoch."""
    panels = {title: [key for key in keys if any(key in h for h in history)]
              for title, keys in (panels or CURVE_PANELS).items()}
    panels = {title: keys for title, keys in panels.items() if keys}
    figure, axes = new_figure(len(panels))
    epochs = list(range(1, len(history) + 1))
    for ax, (title, keys) in zip(axes, panels.items()):
        for key in keys:
            ax.plot(*_finite(epochs, [h.get(key) for h in history]), marker=".", label=LABELS.get(key, key))
        ax.set(title=title, xlabel="epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(loc="best", fontsize="small")
    figure.savefig(path, dpi=100)
    return figure


def plot_runs(runs, path, target=None):
    """Save a PNG comparing runs: held-out pixel accuracy by epoch and by wall-clock minute.

    ``runs`` is {label: history} (each epoch with "val_pixel_accuracy" and
    "elapsed_seconds"); ``target`` = (name, accuracy) adds a dashed line in both panels.
    """
    figure, (by_epoch, by_minute) = new_figure(2, width=4.8, height=3.2)
    for label, history in runs.items():
        accuracy = [h["val_pixel_accuracy"] for h in history]
        by_epoch.plot(*_finite(range(1, len(history) + 1), accuracy), marker=".", label=label)
        by_minute.plot(*_finite([h["elapsed_seconds"] / 60 for h in history], accuracy), marker=".", label=label)
    by_epoch.xaxis.get_major_locator().set_params(integer=True)
    for ax, xlabel in ((by_epoch, "epoch"), (by_minute, "minutes")):
        if target:
            ax.axhline(target[1], color="0.3", linestyle="--", linewidth=1, label=target[0])
        ax.set(title=f"held-out pixel accuracy by {xlabel.rstrip('s')}", xlabel=xlabel)
        ax.yaxis.set_major_formatter("{x:.0%}")
        ax.legend(loc="lower right", fontsize="small")
    figure.savefig(path, dpi=100)
    return figure
