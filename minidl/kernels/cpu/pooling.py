"""Fast pooling: max_pool2d, max_unpool2d and avg_pool2d's backward, a cache-sized block of planes at a time.

No pooling window crosses a channel plane, so the reference's work
(minidl/nn/functional/pooling.py) splits into blocks of whole planes
(``threads.channel_blocks``, a few MB each) shared among the threads; every
pass over a block then finds it in the CPU's cache.
"""
from __future__ import annotations

import numpy as np

from .. import fast_kernel_for
from ...nn.functional.pooling import (
    AvgPool2d, MaxPool2d, MaxUnpool2d, first_real_offsets, gather_from_planes, lowest, pad_image, padded_size,
    plane_indices, scatter_to_planes, windows,
)
from .threads import channel_blocks, parallel_map


# =========================================================================== max_pool2d
def max_over_windows(x, geometry):
    """Equals the reference ``max_over_windows`` (the max of each window and its plane index), block by block."""
    shape = x.shape[:2] + geometry.grid
    best, index = np.empty(shape, dtype=x.dtype), np.empty(shape, dtype=np.int64)
    parallel_map(lambda block: _max_over_block(x[block], geometry, best[block], index[block]), channel_blocks(x))
    return best, index


def _max_over_block(x, geometry, best, index):
    """x (n, c, H, W) -> its max into ``best`` (n, c, OH, OW) and its plane indices into ``index`` (the same, int64).

    The reference's running maximum and its winner rule, with three changes
    that do not change the result:
    - every window view is first copied into one contiguous buffer: NumPy's
      loops run SIMD on contiguous data and element by element on strided views;
    - the winner is updated without a masked write: offsets come in increasing
      k, so a new winner always has the larger k and
      ``winner = maximum(winner, take * k)`` does it branch-free;
    - the winner is a uint8 (for kernels up to 16x16), not an int64.
    """
    kh, kw = geometry.kernel
    padded = pad_image(x, geometry.padding, lowest(x.dtype), size=padded_size(geometry))
    shape = best.shape
    best[...] = lowest(x.dtype)
    code = np.min_scalar_type(kh * kw - 1)
    winner = np.empty(shape, dtype=code)
    winner[...] = first_real_offsets(geometry).astype(code)
    window, take = np.empty(shape, dtype=x.dtype), np.empty(shape, dtype=bool)
    # NaN must win every comparison; one look at the whole input spares a test per offset when there is none
    has_nan = x.dtype.kind == "f" and bool(np.isnan(x).any())
    for k, (_, _, view) in enumerate(windows(padded, geometry)):
        window[...] = view
        np.greater(window, best, out=take)
        if has_nan:
            take |= np.isnan(window)
        np.maximum(best, window, out=best)  # the same values as "take the winners"; NaN propagates
        np.maximum(winner, np.multiply(take, k, dtype=code), out=winner)
    index[...] = plane_indices(winner, geometry, x.shape[3])


def blocked_scatter_to_planes(values, indices, plane_shape, accumulate):
    """Equals the reference ``scatter_to_planes``, block by block of planes."""
    out = np.empty(values.shape[:2] + tuple(plane_shape), dtype=values.dtype)

    def scatter(block):
        # A block of a C-contiguous array is contiguous (whole images, or one image's channels in a
        # row), so the reference writes straight into ``out``.
        scatter_to_planes(values[block], indices[block], plane_shape, accumulate, out=out[block])

    parallel_map(scatter, channel_blocks(out))
    return out


def blocked_gather_from_planes(array, indices):
    """Equals the reference ``gather_from_planes``, block by block (planned for ``array``, the larger)."""
    out = np.empty(indices.shape, dtype=array.dtype)

    def gather(block):
        out[block] = gather_from_planes(array[block], indices[block])

    parallel_map(gather, channel_blocks(array))
    return out


class BlockedPlanes:
    """The blocked scatter and gather, where the reference Functions look for theirs."""

    scatter_to_planes = staticmethod(blocked_scatter_to_planes)
    gather_from_planes = staticmethod(blocked_gather_from_planes)


@fast_kernel_for(MaxPool2d)
class FastMaxPool2d(BlockedPlanes, MaxPool2d):
    """Equals ``MaxPool2d``. Faster: blocks of planes in the cache, on several threads, contiguous window copies."""

    max_over_windows = staticmethod(max_over_windows)


@fast_kernel_for(MaxUnpool2d)
class FastMaxUnpool2d(BlockedPlanes, MaxUnpool2d):
    """Equals ``MaxUnpool2d``. Faster: its scatter and gather run block by block on several threads."""


# =========================================================================== avg_pool2d
def _is_tiling(geometry):
    """Windows that tile the input exactly: stride == kernel, no padding, no dilation, no partial window."""
    return (
        geometry.stride == geometry.kernel
        and geometry.padding == (0, 0)
        and geometry.dilation == (1, 1)
        and all(o * k <= s for o, k, s in zip(geometry.grid, geometry.kernel, geometry.image))
    )


def _tiled_backward(grad, geometry):
    """dx for windows that tile the input (the usual 2x2, stride 2).

    Each input element then sits in exactly one window and receives its
    dy / (kh*kw): one broadcast copy of dy into the (N, C, OH, kh, OW, kw)
    tile layout, which reshapes to (N, C, OH*kh, OW*kw) for free.
    """
    (kh, kw), (oh, ow), (h, w) = geometry.kernel, geometry.grid, geometry.image
    n, c = grad.shape[:2]
    share = (grad / grad.dtype.type(kh * kw))[:, :, :, None, :, None]  # (N, C, OH, 1, OW, 1)
    tiled = np.broadcast_to(share, (n, c, oh, kh, ow, kw)).reshape(n, c, oh * kh, ow * kw)
    if (oh * kh, ow * kw) == (h, w):
        return tiled
    out = np.zeros((n, c, h, w), dtype=grad.dtype)  # rows/columns no window covered get no gradient
    out[:, :, : oh * kh, : ow * kw] = tiled
    return out


@fast_kernel_for(AvgPool2d)
class FastAvgPool2d(AvgPool2d):
    """Equals ``AvgPool2d``. Faster where windows tile the input: one broadcast copy instead of the window loop."""

    @staticmethod
    def backward(ctx, grad):
        if _is_tiling(ctx.geometry):
            return _tiled_backward(grad, ctx.geometry), None, None
        return AvgPool2d.backward(ctx, grad)
