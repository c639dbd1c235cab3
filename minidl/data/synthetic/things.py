"""Objects ("things") of the synthetic scenes, each built from a few vectorised shapes.

Every function draws one object standing at ground point (x, y) -- bottom centre -- with a
size in pixels and, where it matters, ``facing`` = +1 (head to the right) or -1. All of an
object's parts share one instance number, so the void band goes around the whole object
and never between its parts.

Shape is what separates the look-alikes of textures.py: a cow is a boxy body on short thick
legs with its head low, a horse a slim body on long legs with a raised neck; a cat has
pointed ears and a long raised tail, a dog a snout and floppy ears; a sheep is a wool ball
with dark legs, a cloud the same wool without them, in the sky.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from . import textures as T
from .canvas import box, capsule, ellipse, polygon, ring
from .textures import field, pick

from ..palette import MSRC_CLASSES

(BUILDING, GRASS, TREE, COW, HORSE, SHEEP, SKY, MOUNTAIN, AEROPLANE, WATER, FACE, CAR, BICYCLE, FLOWER, SIGN,
 BIRD, BOOK, CHAIR, ROAD, CAT, DOG, BODY, BOAT) = range(23)
assert MSRC_CLASSES[DOG] == "dog" and MSRC_CLASSES[BOAT] == "boat"


class Sprite:
    """One object being drawn: a window around it, its class and its own instance number."""

    def __init__(self, canvas, cls, x0, y0, x1, y1):
        self.w = canvas.window(x0, y0, x1, y1)
        self.cls = cls
        self.instance = canvas.new_instance(thing=True)

    def part(self, mask, colour, texture="smooth", cls=None):
        """Paint ``mask`` with ``colour`` and ``texture``, as this object's class (or ``cls``)."""
        self.w.paint(mask, self.cls if cls is None else cls, field(self.w, colour, texture), self.instance)


def _along(start, elevation, length, facing):
    """The point ``length`` px from ``start`` in the direction ``elevation`` radians above horizontal."""
    return start[0] + facing * math.cos(elevation) * length, start[1] - math.sin(elevation) * length


def _direction_angle(elevation, facing):
    """The ``angle`` argument of ``ellipse`` that points an ellipse's long axis along ``elevation``."""
    return math.atan2(-math.sin(elevation), facing * math.cos(elevation))


# --------------------------------------------------------------------------- four-legged animals
@dataclass(frozen=True)
class Quadruped:
    """Proportions in units of the body length L (heights, lengths) and radians (angles, up > 0)."""

    body_height: float
    boxiness: float      # superellipse power of the body: 2 = ellipse, 3+ = box with round corners
    leg_length: float
    leg_radius: float
    neck_length: float
    neck_angle: float
    head_length: float
    head_height: float
    head_angle: float
    tail_length: float
    tail_angle: float
    coat: tuple
    texture: str


SPECIES = {
    COW: Quadruped(0.46, 3.4, 0.40, 0.075, 0.16, -0.3, 0.26, 0.15, -0.8, 0.42, -1.35, T.COATS, "fur"),
    HORSE: Quadruped(0.36, 2.2, 0.70, 0.05, 0.36, 0.95, 0.30, 0.11, -0.9, 0.50, -1.1, T.COATS, "fur"),
    SHEEP: Quadruped(0.62, 2.4, 0.30, 0.05, 0.10, 0.1, 0.20, 0.14, -0.5, 0.10, -1.2, T.WHITES, "wool"),
    DOG: Quadruped(0.36, 2.2, 0.45, 0.065, 0.18, 0.8, 0.30, 0.17, -0.15, 0.35, 0.7, T.FURS, "fur"),
    CAT: Quadruped(0.34, 2.0, 0.34, 0.055, 0.10, 0.6, 0.22, 0.22, 0.0, 0.75, 1.2, T.FURS, "fur"),
}


def quadruped(canvas, rng, cls, x, y, length, facing):
    """A cow, horse, sheep, dog or cat (``cls``) of body length ``length`` px, feet at (x, y)."""
    p, L, f = SPECIES[cls], length, facing
    s = Sprite(canvas, cls, x - 1.1 * L, y - 2.0 * L, x + 1.1 * L, y + 1)
    if s.w.empty:
        return
    coat = pick(rng, p.coat)
    dark = pick(rng, [(45, 40, 38), (30, 28, 26)])
    ry = p.body_height * L / 2
    cx, cy = x, y - p.leg_length * L - ry

    # legs first, so the body covers their tops: front and back pair, the far leg of each pair set back
    leg_colour = dark if cls == SHEEP else coat
    for offset in (0.36, 0.26, -0.26, -0.36):
        top = (cx + f * offset * L, cy + 0.4 * ry)
        s.part(capsule(s.w, top, (top[0], y - p.leg_radius * L * 0.5), p.leg_radius * L), leg_colour, "fur")

    s.part(ellipse(s.w, cx, cy, L / 2, ry, power=p.boxiness), coat, p.texture)
    if cls in (COW, HORSE, DOG) and rng.random() < 0.35:  # patches: black on white or white on brown
        patch = ellipse(s.w, cx, cy, L / 2, ry, power=p.boxiness) & (s.w.noise("coarse") > 0.5)
        s.part(patch, pick(rng, [(35, 32, 30), (230, 228, 220)]), "fur")

    shoulder = (cx + f * 0.40 * L, cy - 0.3 * ry)
    neck_end = _along(shoulder, p.neck_angle, p.neck_length * L, f)
    head_radius = p.head_height * L / 2
    s.part(capsule(s.w, shoulder, neck_end, head_radius * 0.9), coat, p.texture)
    head_centre = _along(neck_end, p.head_angle, 0.4 * p.head_length * L, f)
    head_colour = dark if (cls == SHEEP and rng.random() < 0.7) else coat
    s.part(ellipse(s.w, *head_centre, p.head_length * L / 2, head_radius, _direction_angle(p.head_angle, f)),
           head_colour, "fur")
    _ears(s, cls, head_centre, head_radius, f, head_colour, coat)

    rump = (cx - f * 0.47 * L, cy - 0.4 * ry)
    tail_end = _along(rump, p.tail_angle, p.tail_length * L, -f)  # -f: the tail points backwards
    s.part(capsule(s.w, rump, tail_end, max(0.04 * L, 0.7)), dark if cls in (COW, HORSE) else coat, "fur")
    if cls == CAT:  # the tip of a cat's tail curls forward
        s.part(capsule(s.w, tail_end, (tail_end[0] + f * 0.12 * L, tail_end[1] - 0.1 * L), 0.04 * L), coat)


def _ears(s, cls, head, radius, f, colour, coat):
    hx, hy = head
    if cls == CAT:  # two upright triangles
        for dx in (-0.5, 0.4):
            bx = hx + f * dx * radius
            s.part(polygon(s.w, [(bx - 0.5 * radius, hy - 0.6 * radius), (bx + 0.5 * radius, hy - 0.6 * radius),
                                 (bx, hy - 1.7 * radius)]), colour)
    elif cls == DOG:  # a floppy ear hanging behind the eye
        s.part(ellipse(s.w, hx - f * 0.5 * radius, hy + 0.2 * radius, 0.35 * radius, 0.9 * radius), colour, "fur")
    elif cls == HORSE:
        s.part(polygon(s.w, [(hx - f * 0.9 * radius, hy - 0.5 * radius), (hx - f * 0.3 * radius, hy - 0.5 * radius),
                             (hx - f * 0.7 * radius, hy - 1.6 * radius)]), colour)
    elif cls == COW:  # ears sticking out sideways
        s.part(ellipse(s.w, hx - f * 0.7 * radius, hy - 0.8 * radius, 0.6 * radius, 0.25 * radius), coat, "fur")


# --------------------------------------------------------------------------- people
def person(canvas, rng, x, y, height, facing):
    """Head (class face, with hair) on a body (class body: clothes, arms, legs), feet at (x, y)."""
    h = height
    body = Sprite(canvas, BODY, x - 0.4 * h, y - 1.05 * h, x + 0.4 * h, y + 1)
    if body.w.empty:
        return
    w = body.w
    clothes, trousers, skin = pick(rng, T.PAINTS), pick(rng, T.PAINTS + [(40, 50, 80)] * 3), pick(rng, T.SKINS)
    stride = rng.uniform(0, 0.09) * h
    for dx in (-stride, stride):  # legs
        body.part(capsule(w, (x + 0.35 * dx, y - 0.48 * h), (x + dx, y - 0.03 * h), 0.05 * h), trousers)
    body.part(ellipse(w, x, y - 0.64 * h, 0.14 * h, 0.19 * h, power=3), clothes)  # torso
    for side in (-1, 1):  # arms, hands in skin colour (still "body")
        shoulder = (x + side * 0.12 * h, y - 0.78 * h)
        hand = (x + side * rng.uniform(0.14, 0.3) * h, y - rng.uniform(0.42, 0.6) * h)
        body.part(capsule(w, shoulder, hand, 0.04 * h), clothes)
        body.part(ellipse(w, hand[0], hand[1], 0.035 * h, 0.04 * h), skin)
    # the head is drawn as part of the same instance, so no void band separates face and body
    hx, hy = x + facing * 0.01 * h, y - 0.90 * h
    body.part(ellipse(w, hx, hy, 0.075 * h, 0.095 * h), skin, cls=FACE)
    hair = ellipse(w, hx - facing * 0.01 * h, hy - 0.03 * h, 0.085 * h, 0.085 * h) & (w.yy < hy - 0.02 * h)
    body.part(hair, pick(rng, T.HAIRS), "fur", cls=FACE)


# --------------------------------------------------------------------------- vehicles
def car(canvas, rng, x, y, length, facing):
    """A side view of a car: boxy body, cabin with dark windows, two wheels; wheels touch y."""
    L, f = length, facing
    s = Sprite(canvas, CAR, x - 0.6 * L, y - 0.6 * L, x + 0.6 * L, y + 1)
    if s.w.empty:
        return
    paint = pick(rng, T.PAINTS + [(170, 170, 175)])
    cabin_back, cabin_front = x - f * 0.32 * L, x + f * 0.22 * L
    s.part(polygon(s.w, [(cabin_back, y - 0.32 * L), (cabin_front, y - 0.32 * L),
                         (x + f * 0.10 * L, y - 0.50 * L), (x - f * 0.24 * L, y - 0.50 * L)]), paint)
    s.part(polygon(s.w, [(cabin_back + f * 0.05 * L, y - 0.33 * L), (cabin_front - f * 0.05 * L, y - 0.33 * L),
                         (x + f * 0.07 * L, y - 0.46 * L), (x - f * 0.21 * L, y - 0.46 * L)]),
           pick(rng, [(40, 50, 65), (70, 85, 100)]))
    s.part(ellipse(s.w, x, y - 0.22 * L, 0.5 * L, 0.13 * L, power=4), paint)
    for wx in (x - 0.3 * L, x + 0.3 * L):
        s.part(ellipse(s.w, wx, y - 0.1 * L, 0.1 * L, 0.1 * L), pick(rng, [(25, 25, 28)]))
        s.part(ellipse(s.w, wx, y - 0.1 * L, 0.04 * L, 0.04 * L), pick(rng, T.GREYS))


def bicycle(canvas, rng, x, y, length):
    """Two wheel rings and a thin frame between them; ``length`` = distance between the hubs."""
    D = length
    r = 0.35 * D
    s = Sprite(canvas, BICYCLE, x - 0.5 * D - r - 1, y - 2 * r - 0.7 * D, x + 0.5 * D + r + 1, y + 1)
    if s.w.empty:
        return
    frame, tyre = pick(rng, T.PAINTS), pick(rng, [(25, 25, 28), (45, 45, 50)])
    thick = max(0.045 * D, 0.7)
    rear, front = (x - 0.5 * D, y - r), (x + 0.5 * D, y - r)
    for hub in (rear, front):
        s.part(ring(s.w, *hub, r - thick, 2 * thick), tyre)
    crank, seat, head = (x - 0.05 * D, y - r + 0.05 * D), (x - 0.2 * D, y - r - 0.5 * D), (x + 0.35 * D, y - r - 0.5 * D)
    for a, b in ((rear, crank), (crank, seat), (seat, rear), (crank, head), (seat, head), (head, front)):
        s.part(capsule(s.w, a, b, thick * 0.8), frame)
    s.part(capsule(s.w, (seat[0] - 0.1 * D, seat[1] - 0.05 * D), (seat[0] + 0.08 * D, seat[1] - 0.05 * D), thick), tyre)
    s.part(capsule(s.w, head, (head[0] - 0.05 * D, head[1] - 0.15 * D), thick * 0.8), frame)


def boat(canvas, rng, x, y, length, facing):
    """A hull on the waterline y, with a sail or a cabin."""
    L, f = length, facing
    s = Sprite(canvas, BOAT, x - 0.6 * L, y - 1.0 * L, x + 0.6 * L, y + 0.1 * L + 1)
    if s.w.empty:
        return
    hull = pick(rng, T.WHITES + [(180, 40, 40), (40, 60, 140), (120, 80, 50)])
    s.part(polygon(s.w, [(x - f * 0.5 * L, y - 0.14 * L), (x + f * 0.55 * L, y - 0.16 * L),
                         (x + f * 0.38 * L, y + 0.04 * L), (x - f * 0.42 * L, y + 0.04 * L)]), hull)
    if rng.random() < 0.55:  # sailing boat: mast and a white triangular sail
        mast = x - f * 0.05 * L
        s.part(capsule(s.w, (mast, y - 0.14 * L), (mast, y - 0.95 * L), 0.02 * L), pick(rng, T.BROWNS))
        s.part(polygon(s.w, [(mast + f * 0.03 * L, y - 0.9 * L), (mast + f * 0.03 * L, y - 0.2 * L),
                             (mast + f * 0.45 * L, y - 0.2 * L)]), pick(rng, T.WHITES), "wool")
    else:  # motor boat: a cabin with a dark window
        s.part(box(s.w, x - 0.25 * L, y - 0.32 * L, x + 0.15 * L, y - 0.14 * L), pick(rng, T.WHITES))
        s.part(box(s.w, x - 0.18 * L, y - 0.28 * L, x + 0.08 * L, y - 0.22 * L), pick(rng, [(40, 50, 65)]))


def aeroplane(canvas, rng, x, y, length, facing):
    """A side view of an airliner centred at (x, y): fuselage, wing, tail fin, engine, windows."""
    L, f = length, facing
    s = Sprite(canvas, AEROPLANE, x - 0.6 * L, y - 0.35 * L, x + 0.6 * L, y + 0.2 * L)
    if s.w.empty:
        return
    body = pick(rng, T.WHITES + [(185, 190, 198)])
    s.part(polygon(s.w, [(x - f * 0.42 * L, y - 0.04 * L), (x - f * 0.36 * L, y - 0.04 * L),
                         (x - f * 0.44 * L, y - 0.30 * L), (x - f * 0.52 * L, y - 0.30 * L)]),
           pick(rng, T.PAINTS + [(200, 200, 205)]))  # tail fin
    s.part(ellipse(s.w, x, y, 0.5 * L, 0.065 * L, power=2.5), body)
    s.part(polygon(s.w, [(x + f * 0.08 * L, y + 0.01 * L), (x - f * 0.02 * L, y + 0.01 * L),
                         (x - f * 0.16 * L, y + 0.16 * L), (x - f * 0.10 * L, y + 0.16 * L)]), body * 0.9)
    s.part(ellipse(s.w, x + f * 0.02 * L, y + 0.06 * L, 0.06 * L, 0.025 * L), body * 0.8)  # engine
    windows = (abs(s.w.yy - (y - 0.015 * L)) < 0.012 * L + 0.4) & (abs(s.w.xx - x) < 0.35 * L) & (s.w.xx.astype(int) % 3 == 0)
    s.part(windows, pick(rng, [(50, 60, 80)]))


# --------------------------------------------------------------------------- small things
def bird(canvas, rng, x, y, size, facing, flying):
    """A bird: flying (body and two wings in a V) or standing (body, head, beak, tail, legs)."""
    S, f = size, facing
    s = Sprite(canvas, BIRD, x - S, y - 1.2 * S, x + S, y + 0.6 * S + 1)
    if s.w.empty:
        return
    colour = pick(rng, [(40, 40, 45), (230, 230, 230), (120, 90, 60), (90, 90, 100)])
    if flying:  # (x, y) is the body centre
        s.part(ellipse(s.w, x, y, 0.3 * S, 0.1 * S), colour)
        lift = rng.uniform(0.2, 0.6) * S
        for side in (-1, 1):
            s.part(capsule(s.w, (x, y - 0.05 * S), (x + side * 0.8 * S, y - lift), 0.07 * S + 0.3), colour)
        return
    s.part(capsule(s.w, (x - 0.05 * S, y - 0.3 * S), (x - 0.05 * S, y), 0.03 * S), pick(rng, [(200, 150, 60)]))
    s.part(ellipse(s.w, x, y - 0.5 * S, 0.32 * S, 0.2 * S, angle=-f * 0.3), colour)
    s.part(capsule(s.w, (x - f * 0.25 * S, y - 0.45 * S), (x - f * 0.6 * S, y - 0.35 * S), 0.06 * S), colour)
    head = (x + f * 0.3 * S, y - 0.78 * S)
    s.part(ellipse(s.w, *head, 0.14 * S, 0.14 * S), colour)
    s.part(polygon(s.w, [(head[0] + f * 0.1 * S, head[1] - 0.04 * S), (head[0] + f * 0.1 * S, head[1] + 0.04 * S),
                         (head[0] + f * 0.32 * S, head[1])]), pick(rng, [(220, 170, 40)]))


def sign(canvas, rng, x, y, height):
    """A road sign: grey pole and a round, triangular or square panel with a white rim."""
    h = height
    s = Sprite(canvas, SIGN, x - 0.3 * h, y - 1.05 * h, x + 0.3 * h, y + 1)
    if s.w.empty:
        return
    s.part(capsule(s.w, (x, y), (x, y - 0.75 * h), 0.025 * h), pick(rng, T.GREYS), "grain")
    cy, r, shape = y - 0.8 * h, 0.2 * h, rng.integers(3)
    colour = pick(rng, [(200, 30, 35), (30, 70, 170), (30, 120, 60), (235, 200, 40)])
    if shape == 0:
        outer, inner = ellipse(s.w, x, cy, r, r), ellipse(s.w, x, cy, 0.7 * r, 0.7 * r)
    elif shape == 1:
        outer = polygon(s.w, [(x - r, cy + 0.8 * r), (x + r, cy + 0.8 * r), (x, cy - r)])
        inner = polygon(s.w, [(x - 0.6 * r, cy + 0.55 * r), (x + 0.6 * r, cy + 0.55 * r), (x, cy - 0.45 * r)])
    else:
        outer, inner = box(s.w, x - r, cy - r, x + r, cy + r), box(s.w, x - 0.75 * r, cy - 0.75 * r, x + 0.75 * r, cy + 0.75 * r)
    s.part(outer, colour)
    s.part(inner, pick(rng, T.WHITES) if rng.random() < 0.6 else colour * 0.7)


def chair(canvas, rng, x, y, height, facing):
    """A side view of a chair: legs, seat and backrest (wood or white plastic)."""
    h, f = height, facing
    s = Sprite(canvas, CHAIR, x - 0.4 * h, y - 1.05 * h, x + 0.4 * h, y + 1)
    if s.w.empty:
        return
    colour = pick(rng, T.BROWNS + [(235, 235, 230)])
    front, back = x + f * 0.22 * h, x - f * 0.22 * h
    seat = y - 0.48 * h
    for leg in (front, back, front - f * 0.06 * h, back + f * 0.06 * h):
        s.part(capsule(s.w, (leg, seat), (leg, y), 0.03 * h), colour * 0.85)
    s.part(box(s.w, x - 0.26 * h, seat - 0.06 * h, x + 0.26 * h, seat + 0.02 * h), colour, "grain")
    s.part(polygon(s.w, [(back, seat), (back + f * 0.07 * h, seat), (back - f * 0.02 * h, y - h),
                         (back - f * 0.09 * h, y - h)]), colour, "grain")


def books(canvas, rng, x, y, width):
    """A stack of 2-4 books lying flat, coloured covers and cream page edges, bottom at y."""
    s = Sprite(canvas, BOOK, x - 0.7 * width, y - 0.8 * width, x + 0.7 * width, y + 1)
    if s.w.empty:
        return
    top = y
    for _ in range(rng.integers(2, 5)):
        thickness, length = width * rng.uniform(0.1, 0.16), width * rng.uniform(0.8, 1.0)
        left = x - length / 2 + rng.uniform(-0.1, 0.1) * width
        s.part(box(s.w, left, top - thickness, left + length, top), pick(rng, T.PAINTS))
        s.part(box(s.w, left + 0.1 * length, top - 0.7 * thickness, left + length, top - 0.3 * thickness),
               pick(rng, [(235, 225, 200)]))
        top -= thickness


def flowers(canvas, rng, x, y, radius):
    """A patch of flowers: green leaves speckled with petals, an irregular blob centred at (x, y)."""
    s = Sprite(canvas, FLOWER, x - 1.4 * radius, y - radius, x + 1.4 * radius, y + radius)
    if s.w.empty:
        return
    d = ((s.w.xx - x) / (1.4 * radius)) ** 2 + ((s.w.yy - y) / radius) ** 2
    patch = d + 0.25 * s.w.noise("coarse") < 1
    s.part(patch, pick(rng, T.GREENS), "leafy")
    petals = patch & (s.w.noise("medium") > rng.uniform(0.3, 0.8))
    s.part(petals, pick(rng, T.PETALS), "fur")
    s.part(petals & (s.w.noise("fine") > 1.2), pick(rng, [(240, 210, 40), (250, 250, 240)]))


# --------------------------------------------------------------------------- background things
def tree(canvas, rng, x, y, height):
    """A tree with its foot at (x, y): brown trunk and a leafy crown (round or conical)."""
    h = height
    s = Sprite(canvas, TREE, x - 0.45 * h, y - 1.05 * h, x + 0.45 * h, y + 1)
    if s.w.empty:
        return
    s.part(capsule(s.w, (x, y), (x, y - 0.5 * h), 0.04 * h + 0.3), pick(rng, T.BROWNS), "grain")
    leaves = pick(rng, T.GREENS)
    if rng.random() < 0.35:  # conifer: stacked triangles
        for k in range(3):
            base, peak = y - (0.2 + 0.22 * k) * h, y - (0.55 + 0.22 * k) * h
            half = (0.3 - 0.06 * k) * h
            s.part(polygon(s.w, [(x - half, base), (x + half, base), (x, peak)]), leaves * 0.85, "leafy")
        return
    crown = ellipse(s.w, x, y - 0.68 * h, 0.3 * h, 0.3 * h)
    for _ in range(3):
        crown |= ellipse(s.w, x + rng.uniform(-0.22, 0.22) * h, y - rng.uniform(0.55, 0.8) * h,
                         rng.uniform(0.12, 0.22) * h, rng.uniform(0.12, 0.2) * h)
    s.part(crown, leaves, "leafy")


def building(canvas, rng, x0, x1, y, height):
    """A house or block between x0 and x1, standing on y: facade, window grid, door, maybe a roof."""
    top = y - height
    s = Sprite(canvas, BUILDING, x0, top - 0.4 * (x1 - x0), x1, y + 1)
    if s.w.empty:
        return
    wall = pick(rng, T.BRICKS)
    s.part(box(s.w, x0, top, x1, y + 1), wall, "grain")
    if rng.random() < 0.5:  # pitched roof
        s.part(polygon(s.w, [(x0 - 1, top), (x1 + 1, top), ((x0 + x1) / 2, top - 0.3 * (x1 - x0))]),
               pick(rng, [(110, 50, 40), (70, 70, 75)]), "grain")
    # windows: a grid drawn with modular arithmetic on the facade's own coordinates
    cell = max(4.0, height * rng.uniform(0.14, 0.25))
    u, v = (s.w.xx - x0) % cell, (s.w.yy - top) % cell
    windows = (u > 0.3 * cell) & (u < 0.8 * cell) & (v > 0.25 * cell) & (v < 0.75 * cell)
    windows &= box(s.w, x0 + 0.1 * cell, top + 0.1 * cell, x1 - 0.3 * cell, y - 0.6 * cell)
    s.part(windows, pick(rng, [(50, 60, 75), (70, 80, 90), (200, 200, 170)]), "smooth")
    door = (x0 + x1) / 2 + rng.uniform(-0.3, 0.3) * (x1 - x0)
    s.part(box(s.w, door - 0.08 * height, y - 0.3 * height, door + 0.08 * height, y + 1), pick(rng, T.BROWNS + T.PAINTS))
