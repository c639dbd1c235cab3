"""Composing one synthetic outdoor scene: ``generate_scene(rng, height, width)``.

1. Stuff, back to front: sky (with clouds) above a horizon line, maybe mountains on it, and
   the ground below it -- grass, road or water, as the scene kind says.
2. Things, back to front: trees and buildings on the horizon, aeroplanes and birds in the
   sky, then animals, people, cars... standing on the ground region that suits them, sorted
   so that nearer (lower) objects cover farther ones, and smaller the nearer the horizon.
3. Void bands: as in MSRC-v2's hand-made labels, a band a few pixels wide around each object
   is left unlabelled (-1).

Context is what tells look-alike classes apart (see textures.py): water is below the
horizon, sky above; a white woolly blob on grass is a sheep, in the sky a cloud.
"""
from __future__ import annotations

import numpy as np

from . import textures as T
from . import things as O
from .canvas import Canvas, ellipse, polygon
from .textures import field, pick
from .things import COW, DOG, CAT, GRASS, HORSE, MOUNTAIN, ROAD, SHEEP, SKY, WATER

VOID = -1

# scene kind -> probability
SCENE_KINDS = {"countryside": 0.28, "street": 0.24, "waterside": 0.18, "garden": 0.20, "airfield": 0.10}
# where the horizon sits, as a fraction of the height, per scene kind
HORIZON = {"countryside": (0.30, 0.50), "street": (0.30, 0.45), "waterside": (0.30, 0.50),
           "garden": (0.15, 0.35), "airfield": (0.55, 0.75)}


def generate_scene(rng, height=96, width=96):
    """One random scene. Returns image uint8 (H, W, 3) and mask int8 (H, W): MSRC classes, -1 = void."""
    canvas = Canvas(height, width, rng)
    kind = rng.choice(list(SCENE_KINDS), p=list(SCENE_KINDS.values()))
    horizon = _horizon(rng, kind, height, width)
    _paint_stuff(canvas, rng, kind, horizon)
    plan = _Plan(canvas, rng, horizon)
    SCENE_CONTENTS[kind](plan, rng)
    plan.draw()
    mask = void_bands(canvas, radius=int(rng.choice([1, 2, 2, 3])) * max(1, round(height / 96)),
                      stuff_edges=rng.random() < 0.4)
    return _finish(canvas, rng), mask


def _horizon(rng, kind, height, width):
    """The horizon's row for every column, (W,) float: a straight line, slightly tilted on land."""
    low, high = HORIZON[kind]
    tilt = 0.0 if kind == "waterside" else rng.uniform(-0.08, 0.08)
    return rng.uniform(low, high) * height + tilt * (np.arange(width) - width / 2)


# --------------------------------------------------------------------------- stuff
def _paint_stuff(canvas, rng, kind, horizon):
    w = canvas.whole()
    above = w.yy < horizon[None, :]
    # sky: a vertical gradient from its colour at the top to a paler one at the horizon
    sky, instance = pick(rng, T.BLUES), canvas.new_instance(thing=False)
    t = np.clip(w.yy / max(horizon.max(), 1), 0, 1)[..., None]
    w.paint(above, SKY, field(w, sky, "smooth") * (1 - 0.35 * t) + 0.35 * t * np.float32(0.9), instance)
    if rng.random() < 0.6:  # clouds are sky too: white wool wherever coarse noise is high
        clouds = above & (w.noise("coarse") > rng.uniform(0.6, 1.4))
        w.paint(clouds, SKY, field(w, pick(rng, T.WHITES), "wool"), instance)
    if rng.random() < {"countryside": 0.5, "waterside": 0.5, "airfield": 0.3}.get(kind, 0.15):
        _mountains(canvas, rng, horizon, sky)

    below = ~above
    if kind == "street" and rng.random() < 0.5:
        _ground(canvas, rng, below, ROAD)
    else:
        _ground(canvas, rng, below, WATER if kind == "waterside" else GRASS)
    if kind == "waterside":
        if rng.random() < 0.6:  # a shore of grass or road in the foreground
            shore_row = horizon + rng.uniform(0.4, 0.8) * (canvas.height - horizon)
            wave = rng.uniform(1, 4) * np.sin(np.arange(canvas.width) / rng.uniform(5, 15) + rng.uniform(0, 6))
            _ground(canvas, rng, w.yy > (shore_row + wave)[None, :], ROAD if rng.random() < 0.3 else GRASS)
    elif kind in ("street", "airfield") or rng.random() < 0.25:
        _road(canvas, rng, horizon, straight=kind == "airfield")
    if kind == "countryside" and rng.random() < 0.2:  # a pond
        cy = rng.uniform(0.3, 0.8) * (canvas.height - horizon.mean()) + horizon.mean()
        pond = ellipse(w, rng.uniform(0, canvas.width), cy, rng.uniform(0.15, 0.4) * canvas.width,
                       rng.uniform(0.05, 0.12) * canvas.height) & below
        _ground(canvas, rng, pond, WATER)


def _ground(canvas, rng, region, cls):
    """Paint ``region`` (H, W bool) as grass, road or water, with an instance of its own (returned)."""
    w = canvas.whole()
    if cls == GRASS:
        colour = field(w, pick(rng, T.GREENS), "grass")
    elif cls == ROAD:
        colour = field(w, pick(rng, T.GREYS), "grain")
    else:  # water: the sky's blues, with horizontal ripples
        base = pick(rng, T.BLUES) * rng.uniform(0.75, 1.0)
        period = rng.uniform(3, 7)
        ripples = 1 + 0.06 * np.sin(w.yy * (2 * np.pi / period) + 2 * w.noise("coarse")) + 0.03 * w.noise("fine")
        colour = ripples[..., None] * base
    instance = canvas.new_instance(thing=False)
    w.paint(region, cls, colour, instance)
    return instance


def _road(canvas, rng, horizon, straight):
    """A road running to a vanishing point on the horizon (or a straight band), with lane marks."""
    w, height, width = canvas.whole(), canvas.height, canvas.width
    if straight:  # a runway or street across the image
        top = horizon.max() + rng.uniform(0.1, 0.4) * (height - horizon.max())
        region = (w.yy > top) & (w.yy < top + rng.uniform(0.2, 0.5) * (height - top))
        centre = None
    else:
        vanish_x = rng.uniform(0.2, 0.8) * width
        vanish_y = np.interp(vanish_x, np.arange(width), horizon)
        left, right = sorted(rng.uniform(-0.3, 1.3, size=2) * width)
        right = max(right, left + 0.5 * width)
        region = polygon(w, [(vanish_x - 1, vanish_y), (vanish_x + 1, vanish_y), (right, height), (left, height)])
        centre = (vanish_x, vanish_y, (left + right) / 2)
    instance = _ground(canvas, rng, region, ROAD)
    if centre is not None and rng.random() < 0.7:  # dashed centre line, dashes shorter far away
        vx, vy, bx = centre
        depth = np.clip((w.yy - vy) / (height - vy), 0, 1)
        line_x = vx + (bx - vx) * depth
        dashes = np.sin(np.sqrt(np.maximum(w.yy - vy, 0)) * rng.uniform(2.0, 3.0)) > 0.2
        marks = region & (np.abs(w.xx - line_x) < 0.3 + 1.2 * depth) & dashes & (depth > 0.08)
        w.paint(marks, ROAD, pick(rng, [(230, 230, 225), (230, 200, 60)]), instance)


def _mountains(canvas, rng, horizon, sky):
    """A ridge of one to three peaks standing on the horizon, hazy with the sky colour, maybe snowy."""
    w = canvas.whole()
    x = np.arange(canvas.width, dtype=np.float32)
    ridge = np.zeros(canvas.width, np.float32)
    for _ in range(rng.integers(1, 4)):
        peak, half = rng.uniform(0, canvas.width), rng.uniform(0.25, 0.6) * canvas.width
        ridge = np.maximum(ridge, rng.uniform(0.1, 0.3) * canvas.height * np.clip(1 - np.abs(x - peak) / half, 0, 1))
    ridge += np.interp(x, np.linspace(0, canvas.width, 12), rng.uniform(-1.5, 1.5, 12))  # a rough edge
    top = horizon - ridge
    region = (w.yy >= top[None, :]) & (w.yy < horizon[None, :] + 1) & (ridge[None, :] > 1)
    colour = field(w, pick(rng, T.MOUNTAINS) * 0.75 + 0.25 * sky, "grain")
    instance = canvas.new_instance(thing=False)
    w.paint(region, MOUNTAIN, colour, instance)
    if rng.random() < 0.4:
        snow = region & (w.yy < (horizon - 0.7 * ridge.max())[None, :])
        w.paint(snow, MOUNTAIN, field(w, pick(rng, T.WHITES), "grain"), instance)


# --------------------------------------------------------------------------- things
class _Ground:
    """Where objects may stand: the pixels of each ground class, and how near each row is."""

    def __init__(self, canvas, horizon):
        self.canvas, self.horizon = canvas, horizon
        self.pixels = {cls: np.nonzero(canvas.label == cls) for cls in (GRASS, ROAD, WATER)}

    def spot(self, rng, classes, nearer_than=0.0):
        """A random (x, y, depth) on one of ``classes``; depth 0 at the horizon, 1 at the bottom."""
        rows = np.concatenate([self.pixels[c][0] for c in classes])
        cols = np.concatenate([self.pixels[c][1] for c in classes])
        depth = (rows - self.horizon[cols]) / np.maximum(self.canvas.height - self.horizon[cols], 1)
        keep = np.flatnonzero(depth > nearer_than)
        if keep.size == 0:
            return None
        k = keep[rng.integers(keep.size)]
        return float(cols[k]), float(rows[k]), float(depth[k])


class _Plan:
    """The objects of one scene, collected as (sort key, draw function) and drawn back to front.

    Keys: things on the horizon first (by row), then the sky's, then the ground's by the row
    of their feet -- a lower object is nearer, so it is drawn later and covers farther ones.
    """

    def __init__(self, canvas, rng, horizon):
        self.canvas, self.rng, self.horizon = canvas, rng, horizon
        self.H, self.W = canvas.height, canvas.width
        self.ground = _Ground(canvas, horizon)
        self.items = []

    def draw(self):
        for _, draw in sorted(self.items, key=lambda item: item[0]):
            draw()

    def facing(self):
        return 1 if self.rng.random() < 0.5 else -1

    # where things go
    def on_ground(self, classes, size, draw, nearer_than=0.05):
        """Stand an object on the ground; ``size`` (fraction of H) is its size nearest the camera."""
        spot = self.ground.spot(self.rng, classes, nearer_than)
        if spot is not None:
            x, y, depth = spot
            self.items.append((1000 + y, lambda: draw(x, y, size * self.H * (0.3 + 0.7 * depth))))

    def on_horizon(self, draw, size):
        x = self.rng.uniform(-0.05, 1.05) * self.W
        y = float(np.interp(x, np.arange(self.W), self.horizon)) + self.rng.uniform(0.0, 0.04) * self.H
        self.items.append((y, lambda: draw(x, y, size * self.H)))

    def in_sky(self, draw, size):
        x, y = self.rng.uniform(0.1, 0.9) * self.W, self.rng.uniform(0.1, 0.8) * float(self.horizon.min())
        self.items.append((500 + y, lambda: draw(x, y, size * self.H)))

    # what goes there
    def animal(self, cls, size):
        self.on_ground([GRASS], size, lambda x, y, s: O.quadruped(self.canvas, self.rng, cls, x, y, s, self.facing()))

    def people(self, n):
        for _ in range(n):
            self.on_ground([GRASS, ROAD], 0.7, lambda x, y, s: O.person(self.canvas, self.rng, x, y, s, self.facing()))

    def trees(self, n, size=(0.2, 0.5)):
        for _ in range(n):
            self.on_horizon(lambda x, y, s: O.tree(self.canvas, self.rng, x, y, s), self.rng.uniform(*size))

    def house(self, size):
        width = self.rng.uniform(1.5, 2.5)
        self.on_horizon(lambda x, y, s: O.building(self.canvas, self.rng, x - s, x + s * (width - 1), y, s), size)

    def street_row(self):
        """Buildings side by side along the horizon, now and then a gap."""
        x, y = self.rng.uniform(-0.3, 0.1) * self.W, float(self.horizon.max()) + 0.02 * self.H
        while x < self.W:
            left, width, height = x, self.rng.uniform(0.2, 0.45) * self.W, self.rng.uniform(0.2, 0.5) * self.H
            self.items.append((y, lambda left=left, width=width, height=height:
                               O.building(self.canvas, self.rng, left, left + width, y, height)))
            x += width + (self.rng.uniform(0.05, 0.3) * self.W if self.rng.random() < 0.4 else 0)

    def birds(self, p_flying, p_standing):
        if self.rng.random() < p_flying:
            for _ in range(self.rng.integers(1, 4)):
                self.in_sky(lambda x, y, s: O.bird(self.canvas, self.rng, x, y, s, self.facing(), flying=True),
                            self.rng.uniform(0.06, 0.14))
        if self.rng.random() < p_standing:
            self.on_ground([GRASS, ROAD, WATER], 0.2,
                           lambda x, y, s: O.bird(self.canvas, self.rng, x, y, s, self.facing(), flying=False))

    def thing(self, classes, size, draw_function, turns=False):
        """Another object on the ground: ``draw_function(canvas, rng, x, y, size)``, plus a random
        ``facing`` when it ``turns`` (a car or a chair does, a flower patch doesn't)."""
        if turns:
            draw = lambda x, y, s: draw_function(self.canvas, self.rng, x, y, s, self.facing())  # noqa: E731
        else:
            draw = lambda x, y, s: draw_function(self.canvas, self.rng, x, y, s)  # noqa: E731
        self.on_ground(classes, size, draw)


# --------------------------------------------------------------------------- what each kind of scene holds
def _countryside(plan, rng):
    plan.trees(rng.integers(0, 5))
    if rng.random() < 0.2:
        plan.house(rng.uniform(0.12, 0.3))
    sizes = {COW: 0.5, HORSE: 0.45, SHEEP: 0.36}
    species = rng.choice(list(sizes))  # a herd of one kind, now and then a stranger
    for _ in range(rng.integers(1, 4)):
        plan.animal(species, sizes[species])
    if rng.random() < 0.3:
        other = rng.choice(list(sizes))
        plan.animal(other, sizes[other])
    if rng.random() < 0.2:
        plan.animal(DOG, 0.4)
    plan.people(int(rng.random() < 0.25))
    plan.birds(0.3, 0.1)


def _street(plan, rng):
    plan.street_row()
    plan.trees(int(rng.random() < 0.4) * rng.integers(1, 3))
    for _ in range(rng.integers(1, 4)):
        plan.thing([ROAD], 0.6, O.car, turns=True)
    if rng.random() < 0.4:
        plan.thing([ROAD, GRASS], 0.5, O.bicycle)
    if rng.random() < 0.5:
        plan.thing([GRASS, ROAD], 0.7, O.sign)
    plan.people(rng.integers(0, 3))
    if rng.random() < 0.2:
        plan.animal(rng.choice([DOG, CAT]), 0.38)
    plan.birds(0.15, 0.05)


def _waterside(plan, rng):
    plan.trees(rng.integers(0, 4) * int(rng.random() < 0.5))
    if rng.random() < 0.25:
        plan.house(rng.uniform(0.1, 0.25))
    for _ in range(rng.integers(1, 4)):
        plan.thing([WATER], 0.55, O.boat, turns=True)
    plan.people(int(rng.random() < 0.3))
    if rng.random() < 0.1:
        plan.animal(DOG, 0.4)
    plan.birds(0.5, 0.25)


def _garden(plan, rng):
    plan.trees(rng.integers(0, 3), size=(0.3, 0.6))
    if rng.random() < 0.4:
        plan.house(rng.uniform(0.1, 0.25))
    for _ in range(rng.integers(1, 4)):
        plan.thing([GRASS], 0.25, O.flowers)
    if rng.random() < 0.7:
        plan.thing([GRASS], 0.6, O.chair, turns=True)
    if rng.random() < 0.6:
        plan.thing([GRASS], 0.45, O.books)
    for cls in (CAT, DOG):
        if rng.random() < 0.5:
            plan.animal(cls, 0.4)
    plan.people(int(rng.random() < 0.4))
    plan.birds(0.1, 0.2)


def _airfield(plan, rng):
    for _ in range(rng.integers(1, 3)):
        plan.in_sky(lambda x, y, s: O.aeroplane(plan.canvas, rng, x, y, s, plan.facing()), rng.uniform(0.3, 0.8))
    plan.trees(rng.integers(0, 4) * int(rng.random() < 0.4), size=(0.1, 0.25))
    if rng.random() < 0.3:
        plan.thing([ROAD], 0.45, O.car, turns=True)
    plan.people(int(rng.random() < 0.2))
    plan.birds(0.4, 0.0)


SCENE_CONTENTS = {"countryside": _countryside, "street": _street, "waterside": _waterside, "garden": _garden,
                  "airfield": _airfield}


# --------------------------------------------------------------------------- labels and pixels
def void_bands(canvas, radius, stuff_edges=False):
    """The final mask: the canvas labels with void (-1) bands outside every object's outline.

    A pixel becomes void when, within ``radius`` pixels, there is a pixel of a *thing* painted
    after it (so in front of it). The band therefore lies outside the front object, on what is
    behind it, and thin parts (legs, bicycle frames) keep their labels. With ``stuff_edges``,
    boundaries between stuff regions (grass/road, sky/mountain) get a 1-pixel band too.
    Vectorised: one comparison of shifted (H, W) arrays per offset in the disc.
    """
    instance = canvas.instance
    thing = np.asarray(canvas.is_thing)[instance]
    r = radius
    padded_instance = np.pad(instance, r, mode="edge")
    padded_thing = np.pad(thing, r, mode="edge")
    height, width = instance.shape
    void = np.zeros_like(thing)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dy * dy + dx * dx > r * r + r or (dy == 0 and dx == 0):
                continue
            window = (slice(r + dy, r + dy + height), slice(r + dx, r + dx + width))
            in_front = padded_instance[window] > instance
            void |= in_front & padded_thing[window]
            if stuff_edges and abs(dy) + abs(dx) == 1:
                void |= in_front & ~thing
    mask = canvas.label.astype(np.int8)
    mask[void] = VOID
    return mask


def _finish(canvas, rng):
    """The image as uint8: a random exposure and colour cast, a little sensor noise."""
    gain = rng.uniform(0.85, 1.1) * (1 + 0.04 * rng.standard_normal(3)).astype(np.float32)
    image = canvas.image * gain + 0.015 * canvas.noise.fine[..., None]
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
