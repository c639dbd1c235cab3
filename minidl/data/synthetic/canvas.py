"""The canvas a synthetic scene is painted on, and the shapes painted on it.

A ``Canvas`` holds three (H, W) layers that are always painted together:
  image     float32 (H, W, 3), RGB in [0, 1];
  label     int16,  the class of each pixel (what the mask will say);
  instance  int32,  which painted region owns each pixel, numbered in painting order, so a
            larger number is in front. The void bands are found from it (see scenes.py).

Painting is vectorised: a shape is a boolean mask computed from the pixel coordinate grids in
one go (no loop over pixels), and ``paint`` writes colour, class and instance under it. Each
object draws in a ``Window``, the part of the canvas around it, so a small bird costs little.
Coordinates are in pixels: x to the right, y down, pixel (row r, column c) at (x=c, y=r).
"""
from __future__ import annotations

import functools
import math

import numpy as np

from .textures import NoiseBank


class Canvas:
    """Image, labels and instances of one scene being painted; ``rng`` is its random generator."""

    def __init__(self, height, width, rng):
        self.height, self.width, self.rng = height, width, rng
        self.yy, self.xx = _grids(height, width)
        self.image = np.zeros((height, width, 3), np.float32)
        self.label = np.full((height, width), -1, np.int16)
        self.instance = np.zeros((height, width), np.int32)
        self.is_thing = [False]  # per instance: an object (gets a void band) or stuff (sky, grass...)
        self.noise = NoiseBank(rng, height, width)

    def new_instance(self, thing: bool) -> int:
        self.is_thing.append(thing)
        return len(self.is_thing) - 1

    def window(self, x0, y0, x1, y1) -> "Window":
        """The part of the canvas inside the box [x0, x1) x [y0, y1) (clipped to the canvas)."""
        return Window(self, x0, y0, x1, y1)

    def whole(self) -> "Window":
        return Window(self, 0, 0, self.width, self.height)


@functools.lru_cache(maxsize=8)
def _grids(height, width):
    """Row and column coordinate of every pixel, (H, W) float32 each; shared and read-only."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy.flags.writeable = xx.flags.writeable = False
    return yy, xx


class Window:
    """A rectangle of a canvas: coordinate grids ``yy``, ``xx`` and ``paint`` for masks of its shape."""

    def __init__(self, canvas, x0, y0, x1, y1):
        self.canvas = canvas
        top, bottom = (min(max(v, 0), canvas.height) for v in (math.floor(y0), math.ceil(y1)))
        left, right = (min(max(v, 0), canvas.width) for v in (math.floor(x0), math.ceil(x1)))
        self.region = (slice(top, bottom), slice(left, right))
        self.yy, self.xx = canvas.yy[self.region], canvas.xx[self.region]
        self.shape = self.yy.shape

    @property
    def empty(self) -> bool:
        return self.yy.size == 0

    def noise(self, kind) -> np.ndarray:
        """The canvas's noise field ``kind`` under this window, (h, w)."""
        return getattr(self.canvas.noise, kind)[self.region]

    def label(self) -> np.ndarray:
        """The classes painted so far under this window (a view)."""
        return self.canvas.label[self.region]

    def paint(self, mask, cls, colour, instance):
        """Under ``mask`` (h, w) bool: colour (RGB (3,) or field (h, w, 3)), class ``cls``, ``instance``."""
        # the layers' windows are views: copying into them writes the canvas
        np.copyto(self.canvas.image[self.region], colour, where=mask[..., None])
        np.copyto(self.canvas.label[self.region], cls, where=mask)
        np.copyto(self.canvas.instance[self.region], instance, where=mask)


# --------------------------------------------------------------------------- shapes
# Each returns a bool mask of the window's shape: True inside the shape.


def ellipse(w, cx, cy, rx, ry, angle=0.0, power=2.0):
    """Ellipse centred (cx, cy) with radii (rx, ry), turned by ``angle`` radians.

    power > 2 gives a "superellipse", boxier with rounded corners (a cow's body, a car).
    """
    dx, dy = w.xx - cx, w.yy - cy
    if angle:
        c, s = math.cos(angle), math.sin(angle)
        dx, dy = c * dx + s * dy, -s * dx + c * dy
    return np.abs(dx / max(rx, 0.5)) ** power + np.abs(dy / max(ry, 0.5)) ** power <= 1.0


def capsule(w, p0, p1, radius):
    """A thick line from p0 to p1 with round ends: pixels within ``radius`` of the segment."""
    (x0, y0), (x1, y1) = p0, p1
    vx, vy = x1 - x0, y1 - y0
    length2 = max(vx * vx + vy * vy, 1e-6)
    # t: position of the closest point on the segment, 0 at p0 and 1 at p1
    t = np.clip(((w.xx - x0) * vx + (w.yy - y0) * vy) / length2, 0.0, 1.0)
    radius = max(radius, 0.6)  # never thinner than about a pixel
    return (w.xx - x0 - t * vx) ** 2 + (w.yy - y0 - t * vy) ** 2 <= radius * radius


def polygon(w, points):
    """A convex polygon (points in order, either direction): inside every edge's half-plane."""
    left = np.ones(w.shape, bool)
    right = np.ones(w.shape, bool)
    for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1]):
        cross = (x1 - x0) * (w.yy - y0) - (y1 - y0) * (w.xx - x0)  # sign: which side of the edge
        left &= cross >= 0
        right &= cross <= 0
    return left | right


def box(w, x0, y0, x1, y1):
    """The axis-aligned rectangle [x0, x1) x [y0, y1)."""
    return (w.xx >= x0) & (w.xx < x1) & (w.yy >= y0) & (w.yy < y1)


def ring(w, cx, cy, radius, width):
    """A circle's outline: pixels whose distance to (cx, cy) is within width/2 of ``radius``."""
    distance = np.hypot(w.xx - cx, w.yy - cy)
    return np.abs(distance - radius) <= max(width, 1.0) / 2
