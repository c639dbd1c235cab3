"""Resizing images: ``interpolate`` (nearest, bilinear), and the resampling machinery behind it.

Resizing is separable
---------------------
Nearest and bilinear resizing act on rows and columns independently: every
output value is a weighted sum of input values, and the weight of input
pixel (h, w) for output pixel (i, j) is ``R_rows[i, h] * R_cols[j, w]``. So
per (n, c) plane::

    y = R_rows @ x @ R_cols^T        R_rows (OH, H), R_cols (OW, W)

with two small 1-D resampling matrices (``AxisMap``). Nearest has one 1 per
row; bilinear two weights (1 - lambda, lambda) that sum to 1;
``adaptive_avg_pool2d`` (in pooling.py) uses the same machinery with
averaging rows.

The gradient of ``y = R x`` is ``dx = R^T dy``: the backward pass is the same
resampling with the transposed matrices. ``R^T`` sums, for each input pixel,
the weighted gradients of all the outputs that read it.

Here the two products are dense matmuls (``resample``), the textbook line. The
fast CPU kernel (minidl/kernels/cpu/resample.py) reads only the few nonzero
entries of each row (a weighted sum of gathers), a block of planes at a time.

Source coordinates follow PyTorch exactly:

- an axis whose size does not change is copied unchanged (any mode);
- nearest: ``src = floor(dst * scale)`` (clamped to in-1), computed in float32
  as PyTorch does, with ``scale = 1/scale_factor`` when a scale factor is given
  and ``in/out`` otherwise;
- bilinear, align_corners=False: ``src = max(scale * (dst + 0.5) - 0.5, 0)``
  (half-pixel centres), same ``scale``;
- bilinear, align_corners=True: ``src = dst * (in-1)/(out-1)``: the corner
  pixels of input and output line up.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from ...autograd.function import Function
from ...backend import array_module
from .common import check_4d

__all__ = ["interpolate"]


# =========================================================================== the op
class AxisMap:
    """A linear map along one image axis, ``y[o] = sum_h matrix[o, h] * x[h]``: an (out, in) float64 matrix.

    Built once per (sizes, mode) and cached (see the ``*_map`` functions below).
    """

    def __init__(self, matrix):
        self.matrix = matrix

    @functools.cached_property
    def is_identity(self):
        """True for a map that copies the axis unchanged (the size and every value stay)."""
        return self.matrix.shape[0] == self.matrix.shape[1] and np.array_equal(self.matrix, np.eye(self.matrix.shape[0]))


def resample(x, rows, cols, transposed=False):
    """x (N, C, H, W) -> R_rows @ x @ R_cols^T (N, C, OH, OW), every plane at once.

    ``rows`` and ``cols`` are AxisMaps; ``transposed=True`` applies their
    transposes instead, R_rows^T @ x @ R_cols (the backward).
    """
    xp = array_module(x)
    row_matrix, col_matrix = (xp.asarray(m.matrix.T if transposed else m.matrix, dtype=x.dtype) for m in (rows, cols))
    return row_matrix @ x @ col_matrix.T  # (OH, H) @ (N, C, H, W) @ (W, OW)


class Resample2d(Function):
    """y = R_rows @ x @ R_cols^T per plane; backward dx = R_rows^T @ dy @ R_cols.

    x (N, C, H, W) -> y (N, C, OH, OW); ``rows`` and ``cols`` are AxisMaps.
    The fast CPU kernel (minidl/kernels/cpu/resample.py) replaces ``resample``.
    """

    resample = staticmethod(resample)

    @staticmethod
    def forward(ctx, x, rows, cols):
        ctx.maps = rows, cols
        return ctx.resample(x, rows, cols)

    @staticmethod
    def backward(ctx, grad):
        rows, cols = ctx.maps
        return ctx.resample(grad, rows, cols, transposed=True), None, None


def _from_sources(out_size, in_size, columns, weights):
    """An (out, in) matrix with ``weights[k][o]`` added at (o, columns[k][o])."""
    matrix = np.zeros((out_size, in_size))
    rows = np.arange(out_size)
    for column, weight in zip(columns, weights):
        np.add.at(matrix, (rows, column), weight)  # add: both bilinear taps may hit the border pixel
    return AxisMap(matrix)


@functools.lru_cache(maxsize=256)
def nearest_map(in_size, out_size, scale_factor):
    """R[o, src(o)] = 1 with PyTorch's ``nearest`` rule (float32 arithmetic, shortcuts for 1x and 2x)."""
    dst = np.arange(out_size)
    if out_size == in_size:
        src = dst
    elif out_size == 2 * in_size:
        src = dst // 2
    else:
        scale = np.float32(1.0 / scale_factor) if scale_factor else np.float32(in_size) / np.float32(out_size)
        src = np.minimum(np.floor(dst.astype(np.float32) * scale).astype(np.int64), in_size - 1)
    return _from_sources(out_size, in_size, [src], [1.0])


@functools.lru_cache(maxsize=256)
def linear_map(in_size, out_size, scale_factor, align_corners):
    """Linear interpolation weights: output o reads i0 and i1 = i0 + 1 with weights (1 - lambda, lambda).

    An axis whose size does not change is copied as it is, whatever the scale
    factor (PyTorch does the same).
    """
    dst = np.arange(out_size, dtype=np.float64)
    if out_size == in_size:
        return AxisMap(np.eye(in_size))
    if align_corners:
        src = dst * ((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0)
    else:
        scale = 1.0 / scale_factor if scale_factor else in_size / out_size
        src = np.maximum(scale * (dst + 0.5) - 0.5, 0.0)  # half-pixel centres, clamped at the left edge
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    lam = np.clip(src - i0, 0.0, 1.0)
    i1 = np.minimum(i0 + 1, in_size - 1)
    return _from_sources(out_size, in_size, [i0, i1], [1.0 - lam, lam])


@functools.lru_cache(maxsize=256)
def adaptive_average_map(in_size, out_size):
    """Row o averages inputs floor(o*in/out) <= h < ceil((o+1)*in/out) (PyTorch's adaptive bins)."""
    dst = np.arange(out_size)
    start = dst * in_size // out_size
    end = -(-(dst + 1) * in_size // out_size)  # ceil division
    h = np.arange(in_size)
    inside = (h >= start[:, None]) & (h < end[:, None])
    return AxisMap(inside / (end - start)[:, None])


# =========================================================================== interpolate
_MODES = ("nearest", "bilinear")


def interpolate(x, size=None, scale_factor=None, mode="nearest", align_corners=None, recompute_scale_factor=None):
    """Resize a batch of images: x (N, C, H, W) -> (N, C, OH, OW).

    Give exactly one of ``size`` (OH or (OH, OW)) and ``scale_factor`` (a float
    or a pair; then OH = floor(H * scale_factor)). ``mode`` is "nearest" or
    "bilinear"; ``align_corners`` (bilinear only, default False) chooses
    between half-pixel centres and corner-aligned sampling, see the module
    docstring. As in PyTorch, a given ``scale_factor`` is also used for the
    source coordinates unless ``recompute_scale_factor=True``.
    """
    op = "interpolate"
    if mode not in _MODES:
        raise ValueError(f"{op}: mode must be one of {_MODES}, got {mode!r}")
    if mode == "nearest" and align_corners is not None:
        raise ValueError(
            f"{op}: align_corners option can only be set with the interpolating modes (bilinear), got mode {mode!r}"
        )
    check_4d(x, op)
    in_sizes = tuple(x.shape[2:])
    out_sizes, scales = _output_sizes(op, in_sizes, size, scale_factor)
    if recompute_scale_factor:
        scales = (None, None)
    if min(in_sizes) < 1 or min(out_sizes) < 1:
        raise ValueError(f"{op}: input {in_sizes} and output {out_sizes} sizes should be greater than 0")
    if mode == "nearest":
        rows, cols = (nearest_map(i, o, s) for i, o, s in zip(in_sizes, out_sizes, scales))
    else:
        rows, cols = (linear_map(i, o, s, bool(align_corners)) for i, o, s in zip(in_sizes, out_sizes, scales))
    return Resample2d.apply(x, rows, cols)


def _output_sizes(op, in_sizes, size, scale_factor):
    """(OH, OW) and the scale factors to use for coordinates (None: use in/out)."""
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{op}: exactly one of size and scale_factor must be given, got size={size!r}, scale_factor={scale_factor!r}")
    if size is not None:
        sizes = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
        if len(sizes) != 2 or not all(isinstance(s, (int, np.integer)) for s in sizes):
            raise ValueError(f"{op}: size must be an int or a pair of ints for a 4-D input, got {size!r}")
        return tuple(int(s) for s in sizes), (None, None)
    factors = (scale_factor, scale_factor) if isinstance(scale_factor, (int, float)) else tuple(scale_factor)
    if len(factors) != 2 or not all(isinstance(f, (int, float)) and f > 0 for f in factors):
        raise ValueError(f"{op}: scale_factor must be a positive number or a pair of them, got {scale_factor!r}")
    return tuple(int(math.floor(i * float(f))) for i, f in zip(in_sizes, factors)), tuple(float(f) for f in factors)
