"""Pictures of segmentations: colour-coded masks, prediction grids, overlays.

Drawn with Pillow only (a runtime dependency anyway). Charts -- training curves,
run comparisons -- are the examples' business and use matplotlib
(examples/plots.py); the graph of a computation is ``minidl.autograd.to_dot``.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

_FONT = ImageFont.load_default()
_BACKGROUND, _INK = (255, 255, 255), (30, 30, 30)


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
