"""Colours and textures of the synthetic scenes.

Every class draws its colour from a small palette and its texture from a "shade" pattern
that multiplies the colour. The palettes deliberately overlap between classes that must be
told apart by *context*, not by the colour of one pixel:

  sky / water / cloud      the same blues and greys (water lies below the horizon)
  grass / tree / flower    the same greens (trees stand up against the sky, flowers have petals)
  cow / horse              the same coats, even the same patches (they differ in shape)
  dog / cat                the same furs (shape: snout and ears, tail)
  sheep / cloud / plane    the same off-whites (on the grass, in the sky, with wings)
  road / building / mountain / sign pole   the same greys
  car / body / book        the same paint colours;   face / body   the same skin (hands)
  chair / tree trunk / horse   the same browns

All noise comes from a per-image ``NoiseBank``: fields made once per image and cropped by
each object, which is cheaper than fresh noise per object and looks the same.
"""
from __future__ import annotations

import numpy as np


def smooth_noise(rng, height, width, cell_y, cell_x):
    """Value noise: random numbers on a grid of ``cell`` pixels, bilinearly interpolated; (H, W), std ~1."""
    grid = rng.standard_normal((height // cell_y + 2, width // cell_x + 2)).astype(np.float32)
    gy, gx = np.arange(height) / cell_y, np.arange(width) / cell_x
    y0, x0 = gy.astype(int), gx.astype(int)
    fy, fx = (gy - y0).astype(np.float32)[:, None], (gx - x0).astype(np.float32)[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    noise = top * (1 - fy) + bottom * fy
    return noise / (noise.std() + 1e-6)


class NoiseBank:
    """The noise fields of one image, each (H, W) with mean ~0 and std ~1.

    fine: per-pixel grain; medium: blobs of ~3 px (wool, leaves, petals);
    coarse: ~12 px (clouds, patches, lighting); streaks: long vertical strokes (grass blades).
    """

    def __init__(self, rng, height, width):
        scale = max(1, round(height / 96))  # keep feature sizes proportional to the image
        self.fine = rng.standard_normal((height, width)).astype(np.float32)
        self.medium = smooth_noise(rng, height, width, 3 * scale, 3 * scale)
        self.coarse = smooth_noise(rng, height, width, 12 * scale, 12 * scale)
        self.streaks = smooth_noise(rng, height, width, 6 * scale, 1)


# --------------------------------------------------------------------------- palettes (RGB 0..255)
BLUES = [(110, 160, 220), (135, 180, 230), (160, 195, 235), (95, 140, 200), (175, 185, 195), (200, 205, 210)]
GREENS = [(70, 130, 40), (90, 150, 50), (60, 110, 35), (110, 150, 60), (50, 95, 35), (80, 120, 45)]
WHITES = [(225, 225, 220), (235, 232, 225), (210, 210, 205), (240, 240, 240)]
GREYS = [(100, 100, 105), (120, 120, 120), (140, 138, 135), (85, 85, 90), (160, 158, 155)]
BROWNS = [(120, 80, 50), (90, 60, 40), (150, 100, 60), (110, 75, 45)]
COATS = BROWNS + [(40, 35, 30), (225, 220, 210), (170, 120, 70)]
FURS = [(190, 125, 65), (40, 36, 32), (130, 128, 125), (230, 225, 215), (120, 85, 55)]
PAINTS = [(180, 35, 35), (40, 65, 155), (35, 115, 60), (220, 195, 60), (230, 230, 230), (35, 35, 40), (120, 60, 140)]
SKINS = [(232, 195, 165), (205, 155, 120), (150, 105, 75), (105, 72, 52)]
HAIRS = [(40, 30, 25), (90, 60, 35), (200, 170, 110), (60, 55, 50)]
BRICKS = [(150, 75, 55), (170, 95, 70), (205, 185, 150), (130, 130, 135), (160, 155, 150)]
MOUNTAINS = [(120, 125, 140), (105, 100, 95), (135, 130, 145), (95, 110, 105)]
PETALS = [(220, 40, 50), (240, 210, 40), (235, 130, 180), (150, 70, 180), (245, 245, 240)]


def pick(rng, palette, jitter=0.07):
    """One colour from ``palette`` as float32 RGB in [0, 1], brightness and tint jittered a little."""
    base = np.asarray(palette[rng.integers(len(palette))], np.float32) / 255
    return base * np.float32(1 + jitter * rng.standard_normal()) + (0.5 * jitter * rng.standard_normal(3)).astype(np.float32)


# --------------------------------------------------------------------------- shade patterns
def _shade(w, kind):
    """A brightness multiplier (h, w) around 1 for texture ``kind``."""
    n = w.noise
    if kind == "smooth":  # paint, skin, sky: gentle light changes
        return 1 + 0.04 * n("coarse")
    if kind == "grain":  # asphalt, stone, concrete
        return 1 + 0.08 * n("fine") + 0.04 * n("coarse")
    if kind == "grass":  # fine blades: strong vertical streaks
        return 1 + 0.10 * n("fine") + 0.14 * n("streaks")
    if kind == "leafy":  # tree canopies: clumps with dark gaps
        return 1 + 0.22 * np.minimum(n("medium"), 1.0) + 0.06 * n("fine")
    if kind == "wool":  # sheep and clouds: soft curls
        return 1 + 0.07 * n("medium") + 0.03 * n("fine")
    if kind == "fur":
        return 1 + 0.06 * n("fine") + 0.05 * n("medium")
    raise ValueError(f"unknown texture {kind!r}")


def field(w, colour, kind="smooth"):
    """Colour field (h, w, 3): ``colour`` (RGB in [0, 1]) shaded by texture ``kind``.

    Values may stray a little outside [0, 1]; the finished image is clipped once, at the end.
    """
    return _shade(w, kind)[..., None] * colour
