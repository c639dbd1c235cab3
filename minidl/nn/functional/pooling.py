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
"""
from __future__ import annotations

import numpy as np

from ...autograd.function import Function
from ...backend import array_module, scatter_add
from .conv import ConvGeometry, _check_4d, _non_negative_pair, _pair, _positive_pair, crop_image, pad_image, window_slices
from .upsampling import Resample2d, adaptive_average_map
from ...kernels.cpu.threads import channel_blocks, parallel_map

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
    _check_4d(x, op)
    kernel = _positive_pair(kernel_size, "kernel_size", op)
    stride = _default_stride(stride, kernel, op)
    padding = _non_negative_pair(padding, "padding", op)
    dilation = _positive_pair(dilation, "dilation", op)
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
    return _positive_pair(stride, "stride", op)


def _padded_size(geometry):
    """Size the padded input must have so that every window fits.

    Usually (H + 2*ph, W + 2*pw); in ceil_mode the last window may hang over
    the bottom/right padding, and the padded array grows to hold it.
    """
    return tuple(
        max(size + 2 * p, (out - 1) * s + d * (k - 1) + 1)
        for size, p, out, s, d, k in zip(geometry.image, geometry.padding, geometry.grid, geometry.stride, geometry.dilation, geometry.kernel)
    )


def _windows(padded, geometry):
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


def scatter_to_planes(values, indices, plane_shape, accumulate):
    """A zero (N, C, H, W) array with ``values`` written at the plane positions ``indices``.

    values, indices: (N, C, h, w); plane_shape: (H, W). With ``accumulate``,
    values landing on the same position add up (max-pool backward with
    overlapping windows); otherwise the last write wins (unpooling).
    The work is done on flattened arrays -- a 1-D scatter is the fast case
    of NumPy's ``add.at`` -- one block of planes at a time (see ``_max_over_windows``).
    """
    xp = array_module(values)
    out = xp.empty(values.shape[:2] + tuple(plane_shape), dtype=values.dtype)
    plane_size = plane_shape[0] * plane_shape[1]

    def scatter(block):
        # A block of a C-contiguous array is contiguous (whole images, or one image's channels in a
        # row), so this reshape is a view of ``out``: the writes land there.
        planes = out[block].reshape(-1)
        planes[...] = 0
        positions = _global_positions(indices[block], plane_size)
        if accumulate:
            scatter_add(planes, positions, values[block].reshape(-1))
        else:
            planes[positions] = values[block].reshape(-1)

    parallel_map(scatter, channel_blocks(out))
    return out


def gather_from_planes(array, indices):
    """array (N, C, H, W), indices (N, C, h, w) -> array's values at those plane positions, (N, C, h, w).

    The blocks are planned for ``array`` (the larger) and slice only N and C, so they fit ``out`` too.
    """
    out = array_module(array).empty(indices.shape, dtype=array.dtype)
    plane_size = array.shape[2] * array.shape[3]

    def gather(block):
        values = out[block]
        values[...] = array[block].reshape(-1)[_global_positions(indices[block], plane_size)].reshape(values.shape)

    parallel_map(gather, channel_blocks(array))
    return out


# =========================================================================== max_pool2d
def _lowest(dtype):
    """The padding value of max pooling: never chosen over a real element."""
    return -np.inf if np.dtype(dtype).kind == "f" else np.iinfo(dtype).min


def _window_starts(geometry, axis):
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


def _max_over_windows(x, geometry):
    """x (N, C, H, W) -> (max (N, C, OH, OW), plane indices (N, C, OH, OW) int64).

    No window crosses a channel plane, so the planes are worked through in
    blocks of a few MB (``threads.channel_blocks``) shared among the threads:
    each block's five buffers below then stay in the CPU's cache. Measured with
    2 threads: 8x32x240x240 80 -> 40 ms, 8x64x120x120 36 -> 13 ms.
    """
    xp = array_module(x)
    shape = x.shape[:2] + geometry.grid
    best, index = xp.empty(shape, dtype=x.dtype), xp.empty(shape, dtype=np.int64)
    parallel_map(lambda block: _max_over_block(x[block], geometry, best[block], index[block]), channel_blocks(x))
    return best, index


def _max_over_block(x, geometry, best, index):
    """x (n, c, H, W) -> its max into ``best`` (n, c, OH, OW) and its plane indices into ``index`` (the same, int64).

    A running maximum over the kh*kw window views, that also records which
    kernel offset k = i*kw + j holds the winner; at the end k becomes the
    winner's position in its input plane, h*W + w (PyTorch's index).

    Each window starts from -inf with its first real element as the winner
    (PyTorch's starting point), and an offset takes over only when it is
    strictly greater, or NaN: so ties keep the first maximum in row-major
    order, NaN propagates, and the -inf padding never wins -- PyTorch's
    choices exactly, so indices are interchangeable.

    Speed tricks (each measured ~5-10x on 8x64x120x120):
    - every window view is first copied into one contiguous buffer: NumPy's
      loops run SIMD on contiguous data and element by element on strided views;
    - the winner is updated without a masked write: offsets come in increasing
      k, so a new winner always has the larger k and
      ``winner = maximum(winner, take * k)`` does it branch-free (masked
      copies, ``copyto(where=...)``, are slow on random masks);
    - the winner is a uint8 (for kernels up to 16x16), not an int64 index.
    """
    xp = array_module(x)
    width, lowest = x.shape[3], _lowest(x.dtype)
    (kh, kw), (dh, dw) = geometry.kernel, geometry.dilation
    (row_start, row_first), (col_start, col_first) = _window_starts(geometry, 0), _window_starts(geometry, 1)
    padded = pad_image(x, geometry.padding, lowest, size=_padded_size(geometry))
    shape = best.shape
    best[...] = lowest
    code = np.min_scalar_type(kh * kw - 1)
    first_offset = np.add.outer(np.minimum((row_first - row_start) // dh, kh - 1) * kw, np.minimum((col_first - col_start) // dw, kw - 1))
    winner = xp.empty(shape, dtype=code)
    winner[...] = xp.asarray(first_offset.astype(code))
    window, take = xp.empty(shape, dtype=x.dtype), xp.empty(shape, dtype=bool)
    # NaN must win every comparison; one look at the whole input spares a test per offset when there is none
    has_nan = x.dtype.kind == "f" and bool(xp.isnan(x).any())
    for k, (_, _, view) in enumerate(_windows(padded, geometry)):
        window[...] = view
        xp.greater(window, best, out=take)
        if has_nan:
            take |= xp.isnan(window)
        xp.maximum(best, window, out=best)  # the same values as "take the winners"; NaN propagates
        xp.maximum(winner, xp.multiply(take, k, dtype=code), out=winner)
    del padded, window, take
    # offset k -> plane position: the window's corner (offset 0) plus the offset's shift i*dh*W + j*dw
    shifts = xp.asarray(np.add.outer(np.arange(kh) * dh * width, np.arange(kw) * dw).ravel())
    index[...] = shifts[winner]
    index += xp.asarray(np.add.outer(row_start * width, col_start))
    real = _real_windows(geometry)
    if real is not None:  # windows of padding only keep PyTorch's starting index, past the plane
        index[...] = xp.where(xp.asarray(real), index, xp.asarray(np.add.outer(row_first * width, col_first)))


def _real_windows(geometry):
    """(OH, OW) mask of windows holding at least one input element, or None when all do.

    Only a dilated window with padding can fall entirely into the padding;
    it outputs -inf, its index points outside the plane, and it passes no gradient.
    """
    masks = []
    for axis, size in enumerate(geometry.image):
        start, first = _window_starts(geometry, axis)
        end = np.minimum(start + (geometry.kernel[axis] - 1) * geometry.dilation[axis] + 1, size)
        masks.append(first < end)
    mask = np.logical_and.outer(*masks)
    return None if mask.all() else mask


class MaxPool2d(Function):
    """y = max over each window; the gradient goes to the element that was the max."""

    @staticmethod
    def forward(ctx, x, geometry):
        out, indices = _max_over_windows(x, geometry)
        ctx.save_for_backward(indices)
        ctx.overlapping = any(s < (k - 1) * d + 1 for s, k, d in zip(geometry.stride, geometry.kernel, geometry.dilation))
        ctx.input_plane = geometry.image
        ctx.real_windows = _real_windows(geometry)
        return out, indices

    @staticmethod
    def backward(ctx, grad):
        (indices,) = ctx.saved_tensors
        if ctx.real_windows is not None:  # windows of padding only: no gradient, and an index that points nowhere
            xp = array_module(grad)
            real = xp.asarray(ctx.real_windows)
            grad, indices = xp.where(real, grad, grad.dtype.type(0)), xp.where(real, indices, 0)
        # Overlapping windows may pick the same input twice: its gradients must add up.
        return scatter_to_planes(grad, indices, ctx.input_plane, accumulate=ctx.overlapping), None


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

    @staticmethod
    def forward(ctx, x, indices, output_plane):
        ctx.save_for_backward(indices)
        return scatter_to_planes(x, indices, output_plane, accumulate=False)

    @staticmethod
    def backward(ctx, grad):
        (indices,) = ctx.saved_tensors
        return gather_from_planes(grad, indices), None, None


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
    _check_4d(x, op)
    if not isinstance(indices, Tensor):
        indices = as_tensor(indices)
    if tuple(indices.shape) != tuple(x.shape):
        raise ValueError(f"{op}: indices must have the shape of the input {tuple(x.shape)}, got {tuple(indices.shape)}")
    if indices.dtype.kind not in "iu":
        raise TypeError(f"{op}: indices must be an integer tensor, got {indices.dtype}")
    kernel = _positive_pair(kernel_size, "kernel_size", op)
    stride = _default_stride(stride, kernel, op)
    padding = _non_negative_pair(padding, "padding", op)
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


def _is_tiling(geometry):
    """Windows that tile the input exactly: stride == kernel, no padding, no dilation, no partial window."""
    return (
        geometry.stride == geometry.kernel
        and geometry.padding == (0, 0)
        and geometry.dilation == (1, 1)
        and all(o * k <= s for o, k, s in zip(geometry.grid, geometry.kernel, geometry.image))
    )


def _sum_over_windows(x, geometry):
    """x (N, C, H, W) -> (N, C, OH, OW): the sum of each window (zero padding)."""
    padded = pad_image(x, geometry.padding, 0, size=_padded_size(geometry))
    total = None
    for _, _, window in _windows(padded, geometry):
        if total is None:
            total = window.copy()
        else:
            total += window
    return total


def _spread_over_windows(values, geometry):
    """The adjoint of ``_sum_over_windows``: every window's value added onto each of its elements.

    values (N, C, OH, OW) -> (N, C, H, W); padding positions are dropped at the end.
    """
    padded = array_module(values).zeros(values.shape[:2] + _padded_size(geometry), dtype=values.dtype)
    for _, _, window in _windows(padded, geometry):
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
        geometry = ctx.geometry
        if _is_tiling(geometry):
            return _tiled_backward(grad, geometry), None, None
        return _spread_over_windows(grad / ctx.divisor, geometry), None, None


def _tiled_backward(grad, geometry):
    """Fast path of the backward when windows tile the input (the usual 2x2, stride 2).

    Each input element then sits in exactly one window and receives its
    dy / (kh*kw): one broadcast copy of dy into the (N, C, OH, kh, OW, kw)
    tile layout, which reshapes to (N, C, OH*kh, OW*kw) for free. (Measured:
    33 ms against 52 ms for the general window loop at 8x64x120x120. The
    forward keeps the window loop: a NumPy ``mean`` over the two small tile
    axes was 3x slower than four strided adds.)
    """
    xp = array_module(grad)
    (kh, kw), (oh, ow), (h, w) = geometry.kernel, geometry.grid, geometry.image
    n, c = grad.shape[:2]
    share = (grad / grad.dtype.type(kh * kw))[:, :, :, None, :, None]  # (N, C, OH, 1, OW, 1)
    tiled = xp.broadcast_to(share, (n, c, oh, kh, ow, kw)).reshape(n, c, oh * kh, ow * kw)
    if (oh * kh, ow * kw) == (h, w):
        return tiled
    out = xp.zeros((n, c, h, w), dtype=grad.dtype)  # rows/columns no window covered get no gradient
    out[:, :, : oh * kh, : ow * kw] = tiled
    return out


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
    _check_4d(x, op)
    if isinstance(output_size, (int, np.integer)) or output_size is None:
        output_size = (output_size, output_size)
    if len(output_size) != 2:
        raise ValueError(f"{op}: output_size must be an int or a pair, got {output_size!r}")
    sizes = tuple(s if o is None else o for o, s in zip(output_size, x.shape[2:]))
    _pair(sizes, "output_size", op)
    if min(sizes) < 1 or min(x.shape[2:]) < 1:
        raise ValueError(f"{op}: output size {sizes} and input spatial size {tuple(x.shape[2:])} must be positive")
    rows, cols = (adaptive_average_map(size, out) for size, out in zip(x.shape[2:], sizes))
    return Resample2d.apply(x, rows, cols)
