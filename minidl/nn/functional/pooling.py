"""Pooling: max_pool2d (with PyTorch-compatible indices), max_unpool2d, avg_pool2d, adaptive_avg_pool2d.

Windows without copies
----------------------
A pooling window slides like a convolution kernel, so these ops reuse the
convolution's geometry (``ConvGeometry``) and its ``window_slices``: for each
of the kh*kw kernel offsets (i, j), one strided *view* of the (padded) input
holds, at every output pixel, the element that offset sees. Max pooling is a
running maximum over those kh*kw views, average pooling a running sum. The
only Python loop is over kernel offsets (4 for a 2x2 window).

Output size, per spatial axis (PyTorch's rule)::

    out = floor((in + 2*padding - dilation*(kernel-1) - 1 + (stride-1 if ceil_mode)) / stride) + 1
    and, in ceil_mode, one less if the last window would start beyond the input
    and its left padding: (out-1)*stride >= in + padding.

Indices
-------
``max_pool2d(..., return_indices=True)`` gives, for every output element, the
flat position ``h * W + w`` of the chosen input element *within its own
(n, c) channel plane* -- PyTorch's convention, so indices move freely between
the two libraries. ``max_unpool2d`` scatters values back to those positions.

This file is the reference; minidl/kernels/cpu/pooling.py holds the fast CPU
kernels (the same numbers, a cache-sized block of planes at a time).
"""
from __future__ import annotations

import numpy as np

from ...autograd.function import Function
from ...backend import array_module, scatter_add
from .common import check_4d, non_negative_pair, pair, positive_pair
from .conv import ConvGeometry, crop_image, pad_image, window_slices
from .upsampling import Resample2d, adaptive_average_map

__all__ = ["max_pool2d", "max_unpool2d", "avg_pool2d", "adaptive_avg_pool2d"]


# =========================================================================== geometry
def _pool_output_size(size, kernel, stride, padding, dilation, ceil_mode):
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1  # the last window must start inside the input or its left padding
    return out


def _pool_geometry(op, x, kernel_size, stride, padding, dilation, ceil_mode):
    """Check the arguments and describe the windows as a ConvGeometry (one group)."""
    check_4d(x, op)
    kernel = positive_pair(kernel_size, "kernel_size", op)
    stride = _default_stride(stride, kernel, op)
    padding = non_negative_pair(padding, "padding", op)
    dilation = positive_pair(dilation, "dilation", op)
    if any(p > k // 2 for p, k in zip(padding, kernel)):
        raise ValueError(f"{op}: padding {padding} should be at most half of the kernel size {kernel}")
    image = tuple(x.shape[2:])
    grid = tuple(
        _pool_output_size(s, k, st, p, d, ceil_mode) for s, k, st, p, d in zip(image, kernel, stride, padding, dilation)
    )
    if min(grid) < 1:
        raise ValueError(
            f"{op}: output size {grid} is too small: input of shape {tuple(x.shape)} with padding {padding} "
            f"is smaller than the window {tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation))}"
        )
    return ConvGeometry(kernel, stride, padding, dilation, 1, image, grid)


def _default_stride(stride, kernel, op):
    """PyTorch's default stride is the kernel size (windows side by side); None or () ask for it."""
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        return kernel
    return positive_pair(stride, "stride", op)


def padded_size(geometry):
    """Size the padded input must have so that every window fits.

    Usually (H + 2*ph, W + 2*pw); in ceil_mode the last window may hang over
    the bottom/right padding, and the padded array grows to hold it.
    """
    return tuple(
        max(size + 2 * p, (out - 1) * s + d * (k - 1) + 1)
        for size, p, out, s, d, k in zip(geometry.image, geometry.padding, geometry.grid, geometry.stride, geometry.dilation, geometry.kernel)
    )


def windows(padded, geometry):
    """(i, j, view) for every kernel offset; ``view`` (N, C, OH, OW) is what offset (i, j) sees."""
    for i, j, (rows, cols) in window_slices(geometry.kernel, geometry.stride, geometry.dilation, geometry.grid):
        yield i, j, padded[:, :, rows, cols]


# =========================================================================== scatter / gather by plane index
def _global_positions(indices, plane_size):
    """Per-plane indices (N, C, ...) -> positions in the flattened (N*C*plane_size,) array."""
    xp = array_module(indices)
    n, c = indices.shape[:2]
    plane_starts = xp.arange(n * c, dtype=np.int64).reshape((n, c) + (1,) * (indices.ndim - 2)) * plane_size
    return (indices + plane_starts).reshape(-1)


def scatter_to_planes(values, indices, plane_shape, accumulate, out=None):
    """A zero (N, C, H, W) array with ``values`` written at the plane positions ``indices``.

    values, indices: (N, C, h, w); plane_shape: (H, W). With ``accumulate``,
    values landing on the same position add up (max-pool backward with
    overlapping windows); otherwise the last write wins (unpooling). One
    scatter into the flattened array, through each value's global position.
    ``out`` (C-contiguous, optional) receives the result.
    """
    xp = array_module(values)
    if out is None:
        out = xp.empty(values.shape[:2] + tuple(plane_shape), dtype=values.dtype)
    flat = out.reshape(-1)  # a view: out is contiguous
    flat[...] = 0
    positions = _global_positions(indices, plane_shape[0] * plane_shape[1])
    if accumulate:
        scatter_add(flat, positions, values.reshape(-1))
    else:
        flat[positions] = values.reshape(-1)
    return out


def gather_from_planes(array, indices):
    """array (N, C, H, W), indices (N, C, h, w) -> array's values at those plane positions, (N, C, h, w)."""
    positions = _global_positions(indices, array.shape[2] * array.shape[3])
    return array.reshape(-1)[positions].reshape(indices.shape)


# =========================================================================== max_pool2d
def lowest(dtype):
    """The padding value of max pooling: never chosen over a real element."""
    return -np.inf if np.dtype(dtype).kind == "f" else np.iinfo(dtype).min


def window_starts(geometry, axis):
    """Along one axis: where each window starts (may be in the padding) and its first real element.

    A window starting at ``start`` = o*stride - padding reads start, start +
    dilation, ...; its first position inside the input is ``start`` moved
    forward by whole dilation steps until it is >= 0 (PyTorch's rule; it may
    lie past the input's end when a dilated window holds only padding).
    """
    stride, padding, dilation = geometry.stride[axis], geometry.padding[axis], geometry.dilation[axis]
    start = np.arange(geometry.grid[axis]) * stride - padding
    first = start + dilation * (-(start // dilation)).clip(min=0)  # ceil(-start / d) steps when start < 0
    return start, first


def first_real_offsets(geometry):
    """(OH, OW) int64: the kernel offset k = i*kw + j of each window's first real element.

    A window's starting winner (PyTorch's): it keeps it when no element is
    greater than -inf.
    """
    (kh, kw), (dh, dw) = geometry.kernel, geometry.dilation
    (row_start, row_first), (col_start, col_first) = window_starts(geometry, 0), window_starts(geometry, 1)
    return np.add.outer(np.minimum((row_first - row_start) // dh, kh - 1) * kw,
                        np.minimum((col_first - col_start) // dw, kw - 1))


def plane_indices(offsets, geometry, width):
    """The kernel offset k of each window's winner (N, C, OH, OW) -> its position h*W + w in its input plane.

    The position is the window's corner (offset 0) plus the offset's shift
    i*dh*W + j*dw. A window of padding only points at its first "real"
    position (past the plane; it passes no gradient), as in PyTorch.
    """
    xp = array_module(offsets)
    (kh, kw), (dh, dw) = geometry.kernel, geometry.dilation
    (row_start, row_first), (col_start, col_first) = window_starts(geometry, 0), window_starts(geometry, 1)
    shifts = xp.asarray(np.add.outer(np.arange(kh) * dh * width, np.arange(kw) * dw).ravel())
    index = shifts[offsets] + xp.asarray(np.add.outer(row_start * width, col_start))
    real = real_windows(geometry)
    if real is not None:
        index = xp.where(xp.asarray(real), index, xp.asarray(np.add.outer(row_first * width, col_first)))
    return index


def real_windows(geometry):
    """(OH, OW) mask of windows holding at least one input element, or None when all do.

    Only a dilated window with padding can fall entirely into the padding;
    it outputs -inf, its index points outside the plane, and it passes no gradient.
    """
    masks = []
    for axis, size in enumerate(geometry.image):
        start, first = window_starts(geometry, axis)
        end = np.minimum(start + (geometry.kernel[axis] - 1) * geometry.dilation[axis] + 1, size)
        masks.append(first < end)
    mask = np.logical_and.outer(*masks)
    return None if mask.all() else mask


def max_over_windows(x, geometry):
    """x (N, C, H, W) -> (max (N, C, OH, OW), plane indices (N, C, OH, OW) int64).

    A running maximum over the kh*kw window views that also records which
    kernel offset k holds the winner. Each window starts from -inf with its
    first real element as the winner, and an offset takes over only when it
    is strictly greater, or NaN: so ties keep the first maximum in row-major
    order, NaN propagates, and the -inf padding never wins -- PyTorch's
    choices exactly, so indices are interchangeable.
    """
    xp = array_module(x)
    padded = pad_image(x, geometry.padding, lowest(x.dtype), size=padded_size(geometry))
    shape = x.shape[:2] + geometry.grid
    best = xp.full(shape, lowest(x.dtype), dtype=x.dtype)
    winner = xp.broadcast_to(xp.asarray(first_real_offsets(geometry)), shape)
    for k, (_, _, window) in enumerate(windows(padded, geometry)):
        take = (window > best) | xp.isnan(window)
        best = xp.where(take, window, best)
        winner = xp.where(take, k, winner)
    return best, plane_indices(winner, geometry, x.shape[3])


class MaxPool2d(Function):
    """y = max over each window; the gradient goes to the element that was the max.

    The fast CPU kernel (minidl/kernels/cpu/pooling.py) replaces the two
    helpers named below with blocked ones.
    """

    max_over_windows = staticmethod(max_over_windows)
    scatter_to_planes = staticmethod(scatter_to_planes)

    @staticmethod
    def forward(ctx, x, geometry):
        out, indices = ctx.max_over_windows(x, geometry)
        ctx.save_for_backward(indices)
        ctx.overlapping = any(s < (k - 1) * d + 1 for s, k, d in zip(geometry.stride, geometry.kernel, geometry.dilation))
        ctx.input_plane = geometry.image
        ctx.real_windows = real_windows(geometry)
        return out, indices

    @staticmethod
    def backward(ctx, grad):
        (indices,) = ctx.saved_tensors
        if ctx.real_windows is not None:  # windows of padding only: no gradient, and an index that points nowhere
            xp = array_module(grad)
            real = xp.asarray(ctx.real_windows)
            grad, indices = xp.where(real, grad, grad.dtype.type(0)), xp.where(real, indices, 0)
        # Overlapping windows may pick the same input twice: its gradients must add up.
        return ctx.scatter_to_planes(grad, indices, ctx.input_plane, accumulate=ctx.overlapping), None


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Maximum over sliding windows.

    Shapes: x (N, C, H, W) -> (N, C, OH, OW), OH by the formula in the module
    docstring (stride defaults to kernel_size; padding counts as -inf and is
    at most kernel_size // 2). With ``return_indices`` also returns the int64
    indices (N, C, OH, OW) of the maxima, flat within each input plane
    (h * W + w), as PyTorch does -- the input of ``max_unpool2d``.
    """
    geometry = _pool_geometry("max_pool2d", x, kernel_size, stride, padding, dilation, ceil_mode)
    out, indices = MaxPool2d.apply(x, geometry)
    return (out, indices) if return_indices else out


# =========================================================================== max_unpool2d
class MaxUnpool2d(Function):
    """y = zeros with x written at ``indices``; the gradient gathers dy back from the same places."""

    scatter_to_planes = staticmethod(scatter_to_planes)
    gather_from_planes = staticmethod(gather_from_planes)

    @staticmethod
    def forward(ctx, x, indices, output_plane):
        ctx.save_for_backward(indices)
        return ctx.scatter_to_planes(x, indices, output_plane, accumulate=False)

    @staticmethod
    def backward(ctx, grad):
        (indices,) = ctx.saved_tensors
        return ctx.gather_from_planes(grad, indices), None, None


def max_unpool2d(x, indices, kernel_size, stride=None, padding=0, output_size=None):
    """The partial inverse of ``max_pool2d`` (SegNet's decoder): put each value back where its max came from.

    Shapes: x (N, C, h, w) and indices (N, C, h, w), as returned by
    ``max_pool2d(..., return_indices=True)`` here or in PyTorch -> (N, C, H, W),
    zero everywhere except at the indices. Default
    H = (h-1)*stride - 2*padding + kernel_size (the same for W);
    ``output_size`` may override it with (H, W) or (N, C, H, W), for inputs
    whose pooled size was rounded down (within ``stride`` of the default).

    The gradient gathers dy at the indices. If two values share an index
    (pooling windows that overlapped), the last one written wins the forward
    but both receive that position's gradient -- PyTorch's behaviour too.
    """
    from ..._tensor import Tensor
    from ...creation import as_tensor

    op = "max_unpool2d"
    check_4d(x, op)
    if not isinstance(indices, Tensor):
        indices = as_tensor(indices)
    if tuple(indices.shape) != tuple(x.shape):
        raise ValueError(f"{op}: indices must have the shape of the input {tuple(x.shape)}, got {tuple(indices.shape)}")
    if indices.dtype.kind not in "iu":
        raise TypeError(f"{op}: indices must be an integer tensor, got {indices.dtype}")
    kernel = positive_pair(kernel_size, "kernel_size", op)
    stride = _default_stride(stride, kernel, op)
    padding = non_negative_pair(padding, "padding", op)
    output_plane = _unpool_output_plane(op, x.shape, kernel, stride, padding, output_size)
    _check_index_range(op, indices, output_plane)
    return MaxUnpool2d.apply(x, indices.to(np.int64), output_plane)


def _unpool_output_plane(op, x_shape, kernel, stride, padding, output_size):
    default = tuple((size - 1) * s - 2 * p + k for size, s, p, k in zip(x_shape[2:], stride, padding, kernel))
    if output_size is None:
        plane = default
    else:
        output_size = tuple(int(v) for v in output_size)
        if len(output_size) == 4:
            output_size = output_size[2:]  # (N, C, H, W) as from x.shape: keep the plane
        if len(output_size) != 2:
            raise ValueError(f"{op}: output_size must be (H, W) or (N, C, H, W), got {output_size}")
        for size, d, s in zip(output_size, default, stride):
            if not d - s < size < d + s:
                raise ValueError(
                    f"{op}: output_size {output_size} must lie strictly between {tuple(v - t for v, t in zip(default, stride))} "
                    f"and {tuple(v + t for v, t in zip(default, stride))} for input of shape {tuple(x_shape)}"
                )
        plane = output_size
    if min(plane) < 1:
        raise ValueError(f"{op}: output size {plane} is too small for input of shape {tuple(x_shape)}")
    return plane


def _check_index_range(op, indices, plane):
    if indices.numel() == 0:
        return
    low, high = int(indices._array.min()), int(indices._array.max())
    if low < 0 or high >= plane[0] * plane[1]:
        bad = low if low < 0 else high
        raise ValueError(f"{op}: found an invalid max index {bad} (output planes are of size {plane[0]}x{plane[1]})")


# =========================================================================== avg_pool2d
def _window_counts(size, kernel, stride, padding, out, count_include_pad):
    """How many elements each window along one axis averages over (a NumPy vector of length ``out``).

    A window starts at o*stride - padding. With count_include_pad it counts
    the padding it covers but never reaches past the right padding (ceil_mode
    windows can); without, only real input elements count.
    """
    start = np.arange(out) * stride - padding
    end = np.minimum(start + kernel, size + padding)
    if count_include_pad:
        return end - start
    return np.minimum(end, size) - np.maximum(start, 0)


def _divisor(geometry, count_include_pad, xp, dtype):
    """(OH, OW) array of window sizes: the product of the per-axis counts (windows are rectangles)."""
    rows, cols = (
        _window_counts(s, k, st, p, o, count_include_pad)
        for s, k, st, p, o in zip(geometry.image, geometry.kernel, geometry.stride, geometry.padding, geometry.grid)
    )
    return xp.asarray(np.outer(rows, cols).astype(dtype))


def _sum_over_windows(x, geometry):
    """x (N, C, H, W) -> (N, C, OH, OW): the sum of each window (zero padding)."""
    padded = pad_image(x, geometry.padding, 0, size=padded_size(geometry))
    total = None
    for _, _, window in windows(padded, geometry):
        if total is None:
            total = window.copy()
        else:
            total += window
    return total


def spread_over_windows(values, geometry):
    """The adjoint of ``_sum_over_windows``: every window's value added onto each of its elements.

    values (N, C, OH, OW) -> (N, C, H, W); padding positions are dropped at the end.
    """
    padded = array_module(values).zeros(values.shape[:2] + padded_size(geometry), dtype=values.dtype)
    for _, _, window in windows(padded, geometry):
        window += values  # ``window`` is a view: this adds into ``padded``
    return crop_image(padded, geometry.padding, geometry.image)


class AvgPool2d(Function):
    """y = sum over each window / window size; each element gets dy / window size from every window holding it."""

    @staticmethod
    def forward(ctx, x, geometry, count_include_pad):
        ctx.geometry = geometry
        ctx.divisor = _divisor(geometry, count_include_pad, array_module(x), x.dtype)
        total = _sum_over_windows(x, geometry)
        total /= ctx.divisor
        return total

    @staticmethod
    def backward(ctx, grad):
        return spread_over_windows(grad / ctx.divisor, ctx.geometry), None, None


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Average over sliding windows.

    Shapes: x (N, C, H, W) -> (N, C, OH, OW), OH by the pooling formula of the
    module docstring (no dilation; stride defaults to kernel_size). Padding is
    zeros; ``count_include_pad`` says whether it counts in the divisor.
    """
    geometry = _pool_geometry("avg_pool2d", x, kernel_size, stride, padding, 1, ceil_mode)
    return AvgPool2d.apply(x, geometry, bool(count_include_pad))


# =========================================================================== adaptive_avg_pool2d
def adaptive_avg_pool2d(x, output_size):
    """Average pooling to a fixed output size, whatever the input size.

    Shapes: x (N, C, H, W) -> (N, C, OH, OW) with ``output_size`` = OH, (OH, OW),
    or None in a place to keep that input size. Output row i averages input
    rows floor(i*H/OH) <= h < ceil((i+1)*H/OH) (PyTorch's bins; neighbouring
    bins may overlap), the same for columns.

    A bin is a rectangle, so its average is an average over rows followed by
    one over columns: ``y = A_rows @ x @ A_cols^T`` with small (OH, H) and
    (OW, W) averaging matrices. That is the separable resampling that
    ``interpolate`` uses, so this op is built on it.
    """
    op = "adaptive_avg_pool2d"
    check_4d(x, op)
    if isinstance(output_size, (int, np.integer)) or output_size is None:
        output_size = (output_size, output_size)
    if len(output_size) != 2:
        raise ValueError(f"{op}: output_size must be an int or a pair, got {output_size!r}")
    sizes = tuple(s if o is None else o for o, s in zip(output_size, x.shape[2:]))
    pair(sizes, "output_size", op)
    if min(sizes) < 1 or min(x.shape[2:]) < 1:
        raise ValueError(f"{op}: output size {sizes} and input spatial size {tuple(x.shape[2:])} must be positive")
    rows, cols = (adaptive_average_map(size, out) for size, out in zip(x.shape[2:], sizes))
    return Resample2d.apply(x, rows, cols)
