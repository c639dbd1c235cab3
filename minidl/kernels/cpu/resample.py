"""Fast resampling (interpolate, adaptive_avg_pool2d): the reference's R_rows @ x @ R_cols^T, by gathers, in blocks.

The reference (minidl/nn/functional/upsampling.py) multiplies by dense (out, in)
matrices whose rows hold one (nearest) or two (bilinear) nonzeros: most of its
arithmetic is multiplying by zero. Here each matrix is read as a few *taps*
(for each output position: an input index and a weight), so a product is a
weighted sum of a few gathers. Each plane is resampled on its own, so the work
also splits into blocks of planes (``threads.channel_blocks``) shared among
the threads, whose temporaries stay in the CPU's cache.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from .. import fast_kernel_for
from ...nn.functional.upsampling import Resample2d
from .threads import channel_blocks, parallel_map

# Bands wider than this use one dense matmul (BLAS) instead of one gather per band position.
MAX_GATHER_TAPS = 4


@functools.lru_cache(maxsize=512)
def taps(axis_map, transposed):
    """The (out, in) matrix of ``axis_map`` (or its transpose) as a list of taps (index, weight).

    Row o's nonzeros lie in columns first[o] .. last[o]; tap k is column
    first[o] + k with its weight (0 past the row's band, None where every
    weight is 1). Then ``(matrix @ x)[o] = sum_k weight_k[o] * x[index_k[o]]``.
    """
    matrix = axis_map.matrix.T if transposed else axis_map.matrix
    out_size, in_size = matrix.shape
    nonzero = matrix != 0
    has_any = nonzero.any(axis=1)
    first = np.where(has_any, nonzero.argmax(axis=1), 0)
    last = np.where(has_any, in_size - 1 - nonzero[:, ::-1].argmax(axis=1), -1)
    width = int((last - first + 1).max(initial=0))
    rows = np.arange(out_size)
    result = []
    for k in range(width):
        column = np.minimum(first + k, in_size - 1)
        weight = np.where(first + k <= last, matrix[rows, column], 0.0)
        result.append((column, None if np.all(weight == 1) else weight))
    return result


def _apply_along(x, axis_map, transposed, axis):
    """``matrix @ x`` along ``axis`` (2: rows, 3: columns of (N, C, H, W)), by gathers or one matmul (wide band)."""
    if axis_map.is_identity:
        return x
    matrix_taps = taps(axis_map, transposed)
    if len(matrix_taps) > MAX_GATHER_TAPS:  # pooling to a few bins: the dense product costs about the same, in one call
        matrix = (axis_map.matrix.T if transposed else axis_map.matrix).astype(x.dtype)
        return np.matmul(matrix, x) if axis == 2 else np.matmul(x, matrix.T)
    weight_shape = (-1, 1) if axis == 2 else (-1,)  # a weight per output row / column
    out = None
    for index, weight in matrix_taps:
        term = np.take(x, index, axis=axis)
        if weight is not None:
            term *= weight.astype(x.dtype).reshape(weight_shape)
        if out is None:
            out = term
        else:
            out += term
    return out


def resample(x, rows, cols, transposed=False):
    """Equals the reference ``resample`` (R_rows @ x @ R_cols^T, or the transposes), by taps, block by block."""
    if transposed:
        def planes_out(planes):
            return _apply_along(_apply_along(planes, cols, True, axis=3), rows, True, axis=2)
        plane = rows.matrix.shape[1], cols.matrix.shape[1]
    else:
        def planes_out(planes):
            return _apply_along(_apply_along(planes, rows, False, axis=2), cols, False, axis=3)
        plane = rows.matrix.shape[0], cols.matrix.shape[0]
    blocks = channel_blocks(x, plane=max(tuple(plane), x.shape[2:], key=math.prod))  # planned for the larger
    if len(blocks) == 1:
        result = planes_out(x)
        return x.copy() if result is x else result  # never hand out the input array itself
    out = np.empty(x.shape[:2] + tuple(plane), dtype=x.dtype)

    def resample_block(block):
        out[block] = planes_out(x[block])

    parallel_map(resample_block, blocks)
    return out


@fast_kernel_for(Resample2d)
class FastResample2d(Resample2d):
    """Equals ``Resample2d``. Faster: a few gathers per axis instead of dense products, in blocks on several threads."""

    resample = staticmethod(resample)
