"""Pictures for people who would rather look than read: training curves, prediction grids, overlays.

Drawn with Pillow only (a runtime dependency anyway), so the examples need no plotting library.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

_FONT = ImageFont.load_default()
_BACKGROUND, _INK, _GRID = (255, 255, 255), (30, 30, 30), (225, 225, 225)
SERIES_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]


def _panel(draw, box, title, series, y_label_format="{:.2f}", x_label="epoch", level=None, legend_at="top"):
    """Draw one line chart in ``box`` = (x0, y0, x1, y1).

    series is {label: [y per epoch]} or {label: ([x, ...], [y, ...])}; ``level`` adds a labelled
    horizontal line (a target), e.g. ("scratch final", 0.60); ``legend_at`` "top" or "bottom" (right
    corner), where the curves are not: top for falling losses, bottom for rising accuracies.
    """
    x0, y0, x1, y1 = box
    left, right, top, bottom = x0 + 48, x1 - 10, y0 + 22, y1 - 30
    draw.text((x0 + 48, y0 + 4), title, fill=_INK, font=_FONT)
    series = {label: vs if isinstance(vs, tuple) else (list(range(1, len(vs) + 1)), vs)  # x = epoch 1, 2, ...
              for label, vs in series.items()}
    points_of = {label: [(x, y) for x, y in zip(*xy) if y is not None and np.isfinite(y)] for label, xy in series.items()}
    ys = [y for points in points_of.values() for _, y in points] + ([level[1]] if level else [])
    xs = [x for points in points_of.values() for x, _ in points]
    if not xs:
        return
    low, high = min(ys), max(ys)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    first, last = min(xs), max(xs)
    to_x = lambda x: left + (right - left) * ((x - first) / max(last - first, 1e-9))  # noqa: E731
    to_y = lambda v: bottom - (bottom - top) * (v - low) / (high - low)  # noqa: E731
    for k in range(5):  # horizontal grid lines with their values
        value = low + (high - low) * k / 4
        y = to_y(value)
        draw.line([(left, y), (right, y)], fill=_GRID)
        draw.text((x0 + 2, y - 6), y_label_format.format(value), fill=_INK, font=_FONT)
    draw.rectangle([left, top, right, bottom], outline=_INK)
    draw.text((left, bottom + 4), f"{first:.3g}", fill=_INK, font=_FONT)
    draw.text((right - 24, bottom + 4), f"{last:.3g}", fill=_INK, font=_FONT)
    draw.text(((left + right) // 2 - 15, bottom + 12), x_label, fill=_INK, font=_FONT)
    if level:
        name, value = level
        for x in range(int(left), int(right), 8):  # dashed
            draw.line([(x, to_y(value)), (min(x + 4, right), to_y(value))], fill=_INK)
        draw.text((left + 4, to_y(value) + 2), name, fill=_INK, font=_FONT)
    for k, (label, points) in enumerate(points_of.items()):
        colour = SERIES_COLOURS[k % len(SERIES_COLOURS)]
        points = [(to_x(x), to_y(y)) for x, y in points]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for x, y in points:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        legend_y = top + 6 + 12 * k if legend_at == "top" else bottom - 14 - 12 * (len(points_of) - 1 - k)
        draw.text((right - 150, legend_y), label, fill=colour, font=_FONT)


def plot_curves(history, path, panels=None):
    """Save a PNG of training curves. ``history`` is a list of per-epoch dicts.

    ``panels`` maps a panel title to the history keys drawn in it; by default
    loss (train) and accuracy (train and val).
    """
    panels = panels or {
        "loss": ["train_loss", "val_loss"],
        "pixel accuracy": ["train_accuracy", "val_pixel_accuracy"],
        "mean IoU": ["val_mean_iou"],
    }
    panels = {t: [k for k in keys if any(k in h for h in history)] for t, keys in panels.items()}
    panels = {t: keys for t, keys in panels.items() if keys}
    width, height = 420 * len(panels), 300
    image = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(image)
    for i, (title, keys) in enumerate(panels.items()):
        series = {key: [h.get(key) for h in history] for key in keys}
        _panel(draw, (420 * i, 0, 420 * (i + 1), height), title, series)
    image.save(path)
    return image


def plot_runs(runs, path, target=None):
    """Save a PNG comparing training runs: held-out pixel accuracy by epoch and by wall-clock minute.

    ``runs`` is {label: history} (train_segnet.py's per-epoch dicts, with ``elapsed_seconds``);
    ``target`` = (name, accuracy) draws that accuracy as a dashed line in both panels.
    """
    width, height = 480, 320
    image = Image.new("RGB", (2 * width, height), _BACKGROUND)
    draw = ImageDraw.Draw(image)
    by_epoch = {label: [h["val_pixel_accuracy"] for h in history] for label, history in runs.items()}
    by_minute = {label: ([h["elapsed_seconds"] / 60 for h in history], [h["val_pixel_accuracy"] for h in history])
                 for label, history in runs.items()}
    _panel(draw, (0, 0, width, height), "val pixel accuracy by epoch", by_epoch, level=target, legend_at="bottom")
    _panel(draw, (width, 0, 2 * width, height), "val pixel accuracy by minute", by_minute, x_label="minutes",
           level=target, legend_at="bottom")
    image.save(path)
    return image


def colourise(mask, palette):
    """(H, W) int labels -> (H, W, 3) uint8 colours; -1 (void) is black. ``palette`` is (classes, 3)."""
    palette = np.asarray(palette, dtype=np.uint8)
    table = np.concatenate([palette, np.zeros((1, 3), np.uint8)])  # index -1 wraps to the last row: black
    return table[np.asarray(mask)]


def to_uint8_image(image, mean=None, std=None):
    """(3, H, W) or (H, W, 3) float image (optionally normalised with mean/std) -> (H, W, 3) uint8."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3 and image.shape[0] == 3 and image.shape[-1] != 3:
        image = image.transpose(1, 2, 0)
    if mean is not None:
        image = image * np.asarray(std, np.float32) + np.asarray(mean, np.float32)
    if image.max() <= 1.0 + 1e-3:
        image = image * 255.0
    return np.clip(image, 0, 255).astype(np.uint8)


def prediction_grid(images, targets, predictions, class_names, palette, path, scale=2):
    """Save rows of image | ground truth | prediction, with a legend of the classes shown.

    images: list of (H, W, 3) uint8; targets, predictions: lists of (H, W) int labels (-1 = void).
    """
    height, width = images[0].shape[:2]
    cell_w, cell_h = width * scale, height * scale
    shown = sorted({int(c) for m in list(targets) + list(predictions) for c in np.unique(m) if c >= 0})
    legend_rows = (len(shown) + 2) // 3 + 1
    header, gap = 18, 6
    canvas_w = 3 * cell_w + 4 * gap
    canvas_h = header + len(images) * (cell_h + gap) + gap + 16 * legend_rows
    canvas = Image.new("RGB", (canvas_w, canvas_h), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for k, title in enumerate(["image", "ground truth", "prediction"]):
        draw.text((gap + k * (cell_w + gap), 3), title, fill=_INK, font=_FONT)
    for row, (image, target, prediction) in enumerate(zip(images, targets, predictions)):
        y = header + row * (cell_h + gap)
        for k, picture in enumerate([image, colourise(target, palette), colourise(prediction, palette)]):
            tile = Image.fromarray(picture).resize((cell_w, cell_h), Image.NEAREST)
            canvas.paste(tile, (gap + k * (cell_w + gap), y))
    y = header + len(images) * (cell_h + gap) + gap
    entries = [("void", (0, 0, 0))] + [(class_names[c], tuple(int(v) for v in palette[c])) for c in shown]
    column_w = canvas_w // 3
    for i, (name, colour) in enumerate(entries):
        x, yy = gap + (i % 3) * column_w, y + 16 * (i // 3)
        draw.rectangle([x, yy + 2, x + 10, yy + 12], fill=colour, outline=_INK)
        draw.text((x + 14, yy), name, fill=_INK, font=_FONT)
    canvas.save(path)
    return canvas


def overlay(image, mask, palette, alpha=0.5):
    """Blend the colour-coded mask over the image (void pixels keep the image). Returns (H, W, 3) uint8."""
    colours = colourise(mask, palette).astype(np.float32)
    blended = (1 - alpha) * image.astype(np.float32) + alpha * colours
    keep = np.asarray(mask) < 0
    blended[keep] = image[keep]
    return blended.astype(np.uint8)
