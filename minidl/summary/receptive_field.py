"""Receptive fields: which input pixels can change a given output pixel, read off the autograd graph.

Every layer that moves pixels around is one of two kinds, along each spatial axis
(rows and columns are handled separately: all these layers are separable):

- **gather** -- output ``o`` reads inputs ``o*s - p + d*t`` for ``t = 0 .. k-1``:
  convolution, pooling, and (with ``k = 1``) padding and cropping;
- **scatter** -- input ``i`` writes outputs ``i*s - p + d*t`` for ``t = 0 .. k-1``:
  transposed convolution, max-unpooling, and upsampling (nearest x2 is a scatter
  with ``k = s = 2``, bilinear x2 one with ``k = 4, s = 2, p = 1``).

Everything else (add, ReLU, batch norm, concatenation along channels...) is
**pointwise**: output pixel ``o`` reads input pixel ``o``.

The rules (a window ``[lo, hi]`` is an inclusive range of pixel indices)
-------------------------------------------------------------------------
Going *backward*, from a range of output pixels to the input pixels they read::

    gather:   [lo, hi]  ->  [lo*s - p,  hi*s - p + d*(k-1)]
    scatter:  [lo, hi]  ->  [ceil((lo + p - d*(k-1)) / s),  floor((hi + p) / s)]

and going *forward*, the jump (input-image pixels per output step)::

    gather:   jump * s          (a stride-2 layer doubles it)
    scatter:  jump / s          (upsampling shrinks it: 1/2 after a 2x upsampling of the image)

A tensor made from several inputs (a skip connection added, a U-Net concatenation)
gets the **hull of all its paths**: the lowest ``lo`` and the highest ``hi`` over
every path back to the image -- the path-wise maximum. That is why the rules run on
the graph of Function nodes (``tensor.grad_fn``, ``node.next_edges``) rather than
on the list of modules: the graph knows every path, the module list does not.

From an output pixel's window on the image follow the three figures the summary
reports per axis: **size** (``hi - lo + 1``, unclipped, the largest over output
pixels), **jump**, and **start** (``lo`` of output pixel 0: negative when the
window begins in the zero padding). For a plain conv/pool stack, output pixel
``o`` then sees image pixels ``start + o*jump .. start + o*jump + size - 1``.
After upsampling the windows of neighbouring output pixels may coincide (a 2x
nearest upsampling repeats each window twice), which is why windows, not
formulas, are the ground truth here.
"""
from __future__ import annotations

import functools
from fractions import Fraction
from typing import NamedTuple

import numpy as np

from ..autograd.engine import count_dependencies
from ..autograd.function import Function
from ..nn.functional.conv import Conv2d as ConvOp, ConvTranspose2d as ConvTransposeOp
from ..nn.functional.pooling import AvgPool2d as AvgPoolOp, MaxPool2d as MaxPoolOp, MaxUnpool2d as MaxUnpoolOp
from ..nn.functional.upsampling import Resample2d
from ..ops.shape import Cat, Index, Pad

# An empty window (an output pixel that reads nothing, e.g. one only padding feeds) is stored
# as lo > hi; EMPTY keeps it empty under min/max hulls.
EMPTY = 2**40
# A tensor that is not (N, C, H, W) -- flattened for a Linear layer, say -- has no pixels: each of
# its values may depend on all of its input. Its window, and the rule of its edges, is WHOLE.
WHOLE = "whole"


# =========================================================================== the per-axis rules
class Window(NamedTuple):
    """How one layer's output pixels depend on its input pixels along one axis (see the module docstring)."""

    kind: str  # "gather" or "scatter"
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    dilation: int = 1

    def read(self, lo, hi):
        """Output windows [lo, hi] (int arrays) -> the input windows they read (unclipped)."""
        s, p, span = self.stride, self.padding, self.dilation * (self.kernel - 1)
        if self.kind == "gather":
            return lo * s - p, hi * s - p + span
        return -((span - p - lo) // s), (hi + p) // s  # ceil((lo + p - span) / s), floor((hi + p) / s)

    def jump(self, jump):
        return jump * self.stride if self.kind == "gather" else jump / self.stride

    def period(self, period):
        """Output pixels per repeat of the window pattern: a scatter repeats every ``s`` pixels."""
        return period * self.stride if self.kind == "scatter" else period


POINTWISE = Window("gather")  # k = s = 1, p = 0: output pixel o reads input pixel o


class TableWindow(NamedTuple):
    """A resampling the two kinds cannot express (resize by 7/3, bilinear x3): its band, row by row.

    ``first[o]`` / ``last[o]`` are the first and last input pixel that output ``o``
    reads (a nonzero weight). Outside ``0 .. len(first)-1`` the edge rows are reused,
    so unclipped windows beyond the border are an approximation here.
    """

    first: np.ndarray
    last: np.ndarray
    in_size: int

    def read(self, lo, hi):
        end = len(self.first) - 1
        return self.first[np.clip(lo, 0, end)], self.last[np.clip(hi, 0, end)]

    def jump(self, jump):
        return jump * Fraction(self.in_size, len(self.first))

    def period(self, period):
        return period * len(self.first)


class Everything(NamedTuple):
    """A layer whose every output reads its whole input (global pooling, a flatten before Linear)."""

    in_size: int
    out_size: int

    def read(self, lo, hi):
        return np.zeros_like(lo), np.full_like(hi, self.in_size - 1)

    def jump(self, jump):
        return jump * Fraction(self.in_size, max(self.out_size, 1))

    def period(self, period):
        return period


def _band(matrix):
    """(out, in) matrix -> first and last column with a nonzero weight, per row."""
    nonzero = matrix != 0
    first = nonzero.argmax(axis=1)
    last = matrix.shape[1] - 1 - nonzero[:, ::-1].argmax(axis=1)
    return first, last


@functools.lru_cache(maxsize=512)
def resample_window(axis_map):
    """The Window of one axis of ``F.interpolate`` / ``adaptive_avg_pool2d`` (an ``AxisMap``).

    The map is a matrix; we look for the gather or scatter whose windows are exactly
    its band (clipped to the input): nearest x2 is found as scatter(k=2, s=2),
    bilinear x2 as scatter(k=4, s=2, p=1), global average pooling as gather(k=in).
    If none fits, the band itself is used (``TableWindow``).
    """
    out_size, in_size = axis_map.matrix.shape
    if axis_map.is_identity:
        return POINTWISE
    first, last = _band(axis_map.matrix)
    candidates = []
    if out_size % in_size == 0:  # upsampling by an integer factor f: a scatter with stride f
        f = out_size // in_size
        candidates = [Window("scatter", k, f, p) for k in range(1, 3 * f + 1) for p in range(k)]
    elif in_size % out_size == 0:  # downsampling by f: a gather with stride f
        f = in_size // out_size
        candidates = [Window("gather", k, f, p) for k in list(range(1, 3 * f + 1)) + [in_size] for p in range(k)]
    pixels = np.arange(out_size)
    for window in candidates:
        lo, hi = window.read(pixels, pixels)
        clipped = np.clip(lo, 0, in_size - 1), np.clip(hi, 0, in_size - 1)
        if (lo <= hi).all() and np.array_equal(clipped[0], first) and np.array_equal(clipped[1], last):
            return window
    return TableWindow(first, last, in_size)


# =========================================================================== which rule a graph node follows
def spatial_shape(edge):
    """(H, W) of the tensor an edge carries, or None when it is not a 4-D (N, C, H, W) tensor."""
    shape = edge.output_shape if isinstance(edge, Function) else edge.shape
    return tuple(shape[2:]) if len(shape) == 4 else None


def _main_windows(node, hints):
    """(rows Window, cols Window) of a node that moves pixels, for its first tensor input; else None.

    ``hints`` maps nodes to windows that their ctx does not record (max pooling and
    unpooling keep only indices): ``summary`` fills it from the modules' settings.
    """
    if node in hints:
        return hints[node]
    if isinstance(node, (ConvOp, AvgPoolOp)):
        g = node.geometry
        return tuple(Window("gather", g.kernel[a], g.stride[a], g.padding[a], g.dilation[a]) for a in range(2))
    if isinstance(node, ConvTransposeOp):
        g = node.geometry
        return tuple(Window("scatter", g.kernel[a], g.stride[a], g.padding[a], g.dilation[a]) for a in range(2))
    if isinstance(node, Resample2d):
        return tuple(resample_window(axis_map) for axis_map in node.maps)
    if isinstance(node, Pad) and len(node.inside) == 4:
        return tuple(Window("gather", padding=node.inside[a].start) for a in (2, 3))  # output o reads o - before
    # Max pooling and unpooling keep only indices. Without a module to ask (``hints``),
    # assume the usual tiling windows: kernel = stride = the ratio of the sizes.
    if isinstance(node, MaxPoolOp):
        ratios = [max(i // o, 1) for i, o in zip(node.input_plane, node.output_shape[2:])]
        return tuple(Window("gather", r, r) for r in ratios)
    if isinstance(node, MaxUnpoolOp) and node.next_edges[0] is not None:
        ratios = [max(o // i, 1) for i, o in zip(spatial_shape(node.next_edges[0]), node.output_shape[2:])]
        return tuple(Window("scatter", r, r) for r in ratios)
    return None


def _index_windows(node, in_shape):
    """x[..., a:b:s, c:d:t] crops and strides: gather(k=1, s=step, p=-start). Other indexing: None."""
    index = node.index if isinstance(node.index, tuple) else (node.index,)
    at = next((n for n, part in enumerate(index) if part is Ellipsis), None)
    if at is not None:
        index = index[:at] + (slice(None),) * (4 - len(index) + 1) + index[at + 1 :]
    index = index + (slice(None),) * (4 - len(index))
    if len(index) != 4 or not all(isinstance(part, slice) for part in index[2:]):
        return None
    windows = []
    for part, size in zip(index[2:], in_shape):
        start, _, step = part.indices(size)
        if step < 1:
            return None
        windows.append(Window("gather", 1, step, -start))
    return tuple(windows)


def edge_windows(node, hints):
    """[(edge, (rows Window, cols Window)) or (edge, WHOLE)] for every input edge of ``node``.

    The node's own rule applies to its first input; any other 4-D input of the
    output's size is pointwise (the second operand of an add, U-Net's concatenated
    skip); one of another size is read whole (``Everything``), which is also the
    fallback for ops that change the size in ways the rules do not know. Edges
    from or to tensors that are not 4-D are WHOLE.
    """
    out = spatial_shape(node)
    main = _main_windows(node, hints)
    if main is None and isinstance(node, Index) and out is not None and node.next_edges[0] is not None:
        main = _index_windows(node, spatial_shape(node.next_edges[0]))
    joined_along_space = isinstance(node, Cat) and node.axis % 4 >= 2  # rare: read each piece whole
    pairs = []
    for position, edge in enumerate(node.next_edges):
        if edge is None:
            continue
        shape = spatial_shape(edge)
        if shape is None or out is None:
            windows = WHOLE
        elif main is not None and position == 0:
            windows = main
        elif shape == out and not joined_along_space:
            windows = (POINTWISE, POINTWISE)
        else:
            windows = tuple(Everything(i, o) for i, o in zip(shape, out or (1, 1)))
        pairs.append((edge, windows))
    return pairs


# =========================================================================== walking the graph
def _consumers(roots, hints):
    """Every node reachable from ``roots`` along image edges, and how many image edges point at each."""
    return count_dependencies(roots, lambda node: [edge for edge, _ in edge_windows(node, hints)])


def input_windows(root, source, pixels, hints=None, clip=True):
    """The input window of each output pixel, per axis, by running the backward rules over the graph.

    root: the output's ``grad_fn``; source: the input Tensor (a leaf that required grad);
    pixels: (rows, cols), two int arrays of output pixel indices, one window per entry
    (for an output that is not 4-D, their length only says how many copies of its one
    window to return). ``clip=True`` clips every window to the tensor it lies in (the
    exact set, for a real image); ``clip=False`` lets windows run into the padding (the
    figures of an infinitely large image). Returns ((lo_rows, hi_rows), (lo_cols, hi_cols))
    on the input; a pixel that reads nothing gets lo > hi.

    Nodes are visited in reverse topological order (as the backward engine does):
    a node runs once every consumer has added its window, so skips merge as a hull.
    """
    hints = hints or {}
    count = len(pixels[0])
    counts = _consumers([root], hints)
    pending = {root: tuple((np.asarray(p), np.asarray(p)) for p in pixels) if spatial_shape(root) else WHOLE}
    result = [(np.full(count, EMPTY), np.full(count, -EMPTY)) for _ in pixels]
    ready = [root]
    while ready:
        node = ready.pop()
        windows = pending.pop(node)
        for edge, rules in edge_windows(node, hints):
            shape = spatial_shape(edge)
            if windows is WHOLE or rules is WHOLE:  # every pixel of the edge's tensor, if it has pixels
                read = WHOLE if shape is None else [(np.zeros(count, int), np.full(count, size - 1)) for size in shape]
            else:
                read = [_read(rule, lo, hi, size, clip) for (lo, hi), rule, size in zip(windows, rules, shape)]
            if edge is source:
                result = _hull(result, read)
            elif isinstance(edge, Function):
                pending[edge] = _hull(pending[edge], read) if edge in pending else read
                counts[edge] -= 1
                if counts[edge] == 0:
                    ready.append(edge)
    return tuple(result)


def _read(rule, lo, hi, size, clip):
    """One rule on one axis: the input windows read by output windows [lo, hi] (empty ones stay empty)."""
    new_lo, new_hi = rule.read(lo, hi)
    if clip:
        new_lo, new_hi = np.maximum(new_lo, 0), np.minimum(new_hi, size - 1)
    empty = (lo > hi) | (new_lo > new_hi)
    return np.where(empty, EMPTY, new_lo), np.where(empty, -EMPTY, new_hi)


def _hull(a, b):
    """Per axis, the smallest window holding both: the path-wise maximum of a skip."""
    if a is WHOLE or b is WHOLE:
        return WHOLE
    return [(np.minimum(lo1, lo2), np.maximum(hi1, hi2)) for (lo1, hi1), (lo2, hi2) in zip(a, b)]


def forward_figures(roots, source, hints=None):
    """{node: (jumps, period)} for every node on a path from ``source``, by the forward rules.

    jumps: (Fraction rows, Fraction cols), input pixels per output step; where paths
    meet, the largest; None for a tensor that is not 4-D. period: after how many output pixels the window pattern repeats
    (the product of the scatters' strides; 1 for a plain conv/pool stack).
    Nodes with no path from ``source`` are missing.
    """
    hints = hints or {}
    counts = _consumers(roots, hints)
    order, ready, remaining = [], [r for r in roots if counts[r] == 0], dict(counts)
    while ready:  # reverse topological order, then walked backwards = inputs before outputs
        node = ready.pop()
        order.append(node)
        for edge, _ in edge_windows(node, hints):
            if isinstance(edge, Function):
                remaining[edge] -= 1
                if remaining[edge] == 0:
                    ready.append(edge)
    figures = {}
    for node in reversed(order):
        incoming = []  # (jumps, period) through each edge that has a path from the source
        for edge, rules in edge_windows(node, hints):
            before = ((Fraction(1), Fraction(1)), 1) if edge is source else figures.get(edge)
            if before is None:
                continue
            jumps, period = before
            if rules is WHOLE or jumps is None:  # no pixels on one side: no jump
                incoming.append((None, period))
            else:
                incoming.append((tuple(rule.jump(j) for rule, j in zip(rules, jumps)),
                                 max(rule.period(period) for rule in rules)))
        if incoming:
            known = [jumps for jumps, _ in incoming if jumps is not None]
            jumps = tuple(max(j[a] for j in known) for a in range(2)) if known else None
            figures[node] = (jumps, max(period for _, period in incoming))
    return figures


class ReceptiveField(NamedTuple):
    """Per axis (rows, cols): window size, jump and start on the input image (see the module docstring).

    ``jump`` is None for a tensor without pixels (a Linear layer's output): its window is everything its
    input's pixels see.
    """

    size: tuple
    jump: tuple
    start: tuple


MAX_PERIOD = 64  # windows are measured over this many output pixels at most


def receptive_field(node, source, figures, hints=None):
    """The ReceptiveField of the tensor made by ``node`` (None when it does not depend on ``source``)."""
    if node is None or node not in figures:
        return None
    jumps, period = figures[node]
    pixels = np.arange(min(period, MAX_PERIOD))
    sizes, starts = [], []
    for lo, hi in input_windows(node, source, (pixels, pixels), hints, clip=False):
        sizes.append(int((hi - lo).max()) + 1)
        starts.append(int(lo[0]))
    return ReceptiveField(tuple(sizes), jumps, tuple(starts))
