"""2-D convolution and transposed convolution, both built on ONE ``im2col``/``col2im`` pair.

The idea: a convolution is a matrix product in disguise
-----------------------------------------------------------
Each output pixel of ``conv2d`` is a dot product between the weight of one
output channel, flattened to ``K = C/groups * kh * kw`` numbers, and the
``K`` input values under the kernel at that pixel. ``im2col`` ("image to
columns") copies, for every output pixel, those ``K`` values into one column
of a matrix. Then the whole convolution is ONE matrix product::

    weight (O, K)  @  columns (K, OH*OW)  =  output (O, OH*OW)      (per image)

which runs in BLAS at close to the machine's peak. ``col2im`` is the exact
adjoint (transpose) of ``im2col``: it adds every column entry back onto the
pixel it was copied from, summing where kernel windows overlap.

The three products of a convolution layer then read::

    forward        y      = W   @ im2col(x)
    input grad     dx     = col2im(W^T @ dy)
    weight grad    dW     = dy  @ im2col(x)^T          (summed over the batch)

and ``conv_transpose2d`` is the input-gradient line, run forward (see its
docstring for why).

Layouts (N batch, C input channels, O output channels, G groups)
-----------------------------------------------------------------
- ``x``       (N, C, H, W)
- ``weight``  (O, C/G, kh, kw)           viewed as (G, O/G, K),  K = C/G * kh * kw
- columns     (N, G, K, OH*OW)           so ``weight @ columns`` is a *batched* matmul
                                         over (N, G): no Python loop over the batch or
                                         the groups, and groups == channels (depthwise)
                                         is one call too.
- ``y``       (N, O, OH, OW)             the matmul result (N, G, O/G, OH*OW) reshaped.

Output size of conv2d, per spatial axis::

    out = floor((in + 2*padding - dilation*(kernel-1) - 1) / stride) + 1

This file is the reference: whole batches, one matmul per product. The fast
CPU kernel (minidl/kernels/cpu/conv.py) computes the same three products in
cache-sized pieces on several threads.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ...autograd.function import Function
from ...backend import array_module
from .common import check_4d, check_same_dtype, non_negative_pair, positive_pair

__all__ = ["conv2d", "conv_transpose2d"]


# =========================================================================== geometry
def conv_output_size(size, kernel, stride, padding, dilation):
    """floor((in + 2p - d(k-1) - 1) / s) + 1, the number of kernel positions along one axis."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


class ConvGeometry(NamedTuple):
    """Everything ``im2col``/``col2im`` need to know about one convolution.

    ``image`` is the spatial size (H, W) of conv2d's *input* and ``grid`` the
    size (OH, OW) of its *output*. Both are stored, not recomputed: for
    conv_transpose2d the grid is the given input and the image may be a
    little larger than the formula's inverse (output_padding).
    """

    kernel: tuple
    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int
    image: tuple
    grid: tuple

    @property
    def padded_image(self):
        return tuple(size + 2 * pad for size, pad in zip(self.image, self.padding))


def window_slices(kernel, stride, dilation, grid):
    """For each kernel offset (i, j): the slices of a padded image that it reads.

    The kernel entry at (i, j) meets, at output pixel (oh, ow), the padded-image
    pixel (oh*stride + i*dilation, ow*stride + j*dilation). Over all output
    pixels those form a strided sub-grid: one basic slice per axis, i.e. a
    *view*, no copy. Looping over the kh*kw offsets (9 for a 3x3 kernel) is the
    only Python loop of im2col, col2im and the pooling ops.

    Yields (i, j, (row_slice, col_slice)).
    """
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, grid
    for i in range(kh):
        rows = slice(i * dh, i * dh + sh * (oh - 1) + 1, sh)
        for j in range(kw):
            yield i, j, (rows, slice(j * dw, j * dw + sw * (ow - 1) + 1, sw))


def pad_image(x, padding, fill, size=None, out=None):
    """x (N, C, H, W) -> (N, C, H + 2*ph, W + 2*pw) with ``fill`` around it (or larger: ``size``).

    Returns ``x`` itself when nothing is added, else a new array (or ``out``,
    filled). Only the border strips are filled, not the whole buffer first:
    one pass over memory instead of two.
    """
    (ph, pw), (n, c, h, w) = padding, x.shape
    total_h, total_w = size if size is not None else (h + 2 * ph, w + 2 * pw)
    if (total_h, total_w) == (h, w):
        return x
    if out is None:
        out = array_module(x).empty((n, c, total_h, total_w), dtype=x.dtype)
    out[:, :, :ph, :] = fill
    out[:, :, ph + h :, :] = fill
    out[:, :, ph : ph + h, :pw] = fill
    out[:, :, ph : ph + h, pw + w :] = fill
    out[:, :, ph : ph + h, pw : pw + w] = x
    return out


def crop_image(padded, padding, size):
    """The inverse of ``pad_image``: the (H, W) interior of a padded (N, C, Hp, Wp) array (a view)."""
    (ph, pw), (h, w) = padding, size
    return padded[:, :, ph : ph + h, pw : pw + w]


def per_group(images, groups):
    """images (N, C, H, W) -> (N, G, C/G, H*W): each group's channels, pixels flattened (a view when contiguous)."""
    n, c, h, w = images.shape
    return images.reshape(n, groups, c // groups, h * w)


def grouped(weight, groups):
    """weight (O, C/G, kh, kw) -> (G, O/G, K): one weight matrix per group (a view)."""
    return weight.reshape(groups, weight.shape[0] // groups, -1)


# =========================================================================== im2col / col2im
def im2col(x, geometry):
    """x (N, C, H, W) -> columns (N, G, K, OH*OW), K = C/G * kh * kw.

    Column (n, g, :, p) holds the input values that the group-g kernels see at
    output pixel p, ordered (channel, i, j) -- the order of a weight
    (O, C/G, kh, kw) flattened per output channel, so ``weight @ columns``
    lines up. One copy per kernel offset: what offset (i, j) sees at every
    output pixel is one strided view of the padded image.
    """
    n, c = x.shape[:2]
    (kh, kw), (oh, ow) = geometry.kernel, geometry.grid
    padded = pad_image(x, geometry.padding, 0)
    columns = array_module(x).empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
    for i, j, (rows, cols) in window_slices(geometry.kernel, geometry.stride, geometry.dilation, geometry.grid):
        columns[:, :, i, j] = padded[:, :, rows, cols]
    return columns.reshape(n, geometry.groups, c // geometry.groups * kh * kw, oh * ow)


def col2im(columns, geometry):
    """columns (N, G, K, OH*OW) -> image (N, C, H, W): the adjoint of ``im2col``.

    Every column entry is *added* onto the pixel ``im2col`` copied it from;
    where kernel windows overlap (stride < kernel) a pixel receives several
    contributions -- exactly the sum the chain rule asks for.
    """
    n, groups, k = columns.shape[:3]
    (kh, kw), (oh, ow) = geometry.kernel, geometry.grid
    c = groups * k // (kh * kw)
    columns = columns.reshape(n, c, kh, kw, oh, ow)
    padded = array_module(columns).zeros((n, c) + geometry.padded_image, dtype=columns.dtype)
    for i, j, (rows, cols) in window_slices(geometry.kernel, geometry.stride, geometry.dilation, geometry.grid):
        padded[:, :, rows, cols] += columns[:, :, i, j]
    return crop_image(padded, geometry.padding, geometry.image)


# =========================================================================== the three products
def weight_times_columns(weight, x, geometry, bias=None):
    """conv2d's forward product, y = W @ im2col(x) + b.

    weight (O, C/G, kh, kw), x (N, C, H, W), bias (O,) or None -> y (N, O, OH, OW).
    """
    columns = im2col(x, geometry)  # (N, G, K, OH*OW)
    y = grouped(weight, geometry.groups) @ columns  # (G, O/G, K) @ (N, G, K, L) -> (N, G, O/G, L)
    y = y.reshape((x.shape[0], weight.shape[0]) + geometry.grid)
    return y if bias is None else y + bias.reshape(1, -1, 1, 1)


def input_gradient(weight, grad_out, geometry):
    """conv2d's input gradient, dx = col2im(W^T @ dy).

    weight (O, C/G, kh, kw), grad_out (N, O, OH, OW) -> dx (N, C, H, W).
    """
    weight_t = grouped(weight, geometry.groups).swapaxes(1, 2)  # (G, K, O/G)
    grad_columns = weight_t @ per_group(grad_out, geometry.groups)  # (G, K, O/G) @ (N, G, O/G, L) -> (N, G, K, L)
    return col2im(grad_columns, geometry)


def weight_gradient(grad_out, x, weight_shape, geometry):
    """conv2d's weight gradient, dW = sum over the batch of dy @ im2col(x)^T.

    grad_out (N, O, OH, OW), x (N, C, H, W) -> dW (O, C/G, kh, kw).
    """
    columns = im2col(x, geometry)  # (N, G, K, L)
    per_image = per_group(grad_out, geometry.groups) @ columns.swapaxes(2, 3)  # (N, G, O/G, L) @ (N, G, L, K)
    return per_image.sum(axis=0).reshape(weight_shape)


def _bias_gradient(grad_out):
    """A bias is added to every pixel of every image: its gradient sums over N, H and W."""
    return grad_out.sum(axis=(0, 2, 3))


# =========================================================================== conv2d
class Conv2d(Function):
    """y = conv2d(x, W) + b  via  y = W @ im2col(x) + b.

    Saves ``x`` (not the columns, which are kh*kw times larger) and rebuilds
    the columns in backward for the weight gradient: one extra copy buys a
    graph that holds 9x less memory for a 3x3 kernel.

    The three products are the functions above; the fast CPU kernel
    (minidl/kernels/cpu/conv.py) is this class with faster ones.
    """

    weight_times_columns = staticmethod(weight_times_columns)
    input_gradient = staticmethod(input_gradient)
    weight_gradient = staticmethod(weight_gradient)

    @staticmethod
    def forward(ctx, x, weight, bias, geometry):
        need_x, need_weight = ctx.needs_input_grad[:2]
        ctx.save_for_backward(x if need_weight else None, weight if need_x else None)  # only what backward uses
        ctx.geometry, ctx.weight_shape = geometry, weight.shape
        return ctx.weight_times_columns(weight, x, geometry, bias)  # y = W @ im2col(x) + b

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        need_x, need_weight, need_bias = ctx.needs_input_grad[:3]
        grad_x = ctx.input_gradient(weight, grad, ctx.geometry) if need_x else None  # col2im(W^T @ dy)
        grad_weight = ctx.weight_gradient(grad, x, ctx.weight_shape, ctx.geometry) if need_weight else None  # dy @ im2col(x)^T
        grad_bias = _bias_gradient(grad) if need_bias else None
        return grad_x, grad_weight, grad_bias, None


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation, as in every deep-learning library).

    Shapes:
        x       (N, C, H, W)
        weight  (O, C/groups, kh, kw)
        bias    (O,) or None
        result  (N, O, OH, OW),  OH = floor((H + 2*padding - dilation*(kh-1) - 1) / stride) + 1
                                 (and the same for OW)

    ``stride``, ``padding`` and ``dilation`` are ints or (height, width) pairs.
    With ``groups`` = G, the channels split into G independent groups (G == C
    is a depthwise convolution).
    """
    op = "conv2d"
    check_4d(x, op)
    check_4d(weight, op, "(out_channels, in_channels/groups, kh, kw)", "weight")
    check_same_dtype(op, input=x, weight=weight, bias=bias)
    geometry = _conv2d_geometry(x.shape, weight.shape, bias, stride, padding, dilation, groups)
    return Conv2d.apply(x, weight, bias, geometry)


def _check_groups(groups, op):
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups <= 0:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    return int(groups)


def _check_bias(bias, channels, op):
    if bias is not None and tuple(bias.shape) != (channels,):
        raise ValueError(f"{op}: bias must have shape ({channels},) (one per output channel), got {tuple(bias.shape)}")


def _check_kernel(w_shape, op):
    if min(w_shape[2:]) <= 0:
        raise ValueError(f"{op}: kernel size must be positive, got weight of shape {tuple(w_shape)}")


def _conv2d_geometry(x_shape, w_shape, bias, stride, padding, dilation, groups):
    op = "conv2d"
    stride, dilation = positive_pair(stride, "stride", op), positive_pair(dilation, "dilation", op)
    padding, groups = non_negative_pair(padding, "padding", op), _check_groups(groups, op)
    n, c, h, w = x_shape
    out_channels, in_per_group, kh, kw = w_shape
    _check_kernel(w_shape, op)
    if c != in_per_group * groups:
        raise ValueError(
            f"{op}: input of shape {tuple(x_shape)} has {c} channels, but weight of shape {tuple(w_shape)} "
            f"with groups={groups} expects {in_per_group * groups} (= weight.shape[1] * groups)"
        )
    if out_channels % groups:
        raise ValueError(f"{op}: weight of shape {tuple(w_shape)} has {out_channels} output channels, not divisible by groups={groups}")
    _check_bias(bias, out_channels, op)
    grid = tuple(conv_output_size(s, k, st, p, d) for s, k, st, p, d in zip((h, w), (kh, kw), stride, padding, dilation))
    if min(grid) < 1:
        raise ValueError(
            f"{op}: output size {grid} is too small: input {tuple(x_shape)} with padding {padding} is smaller than "
            f"the dilated kernel {tuple((k - 1) * d + 1 for k, d in zip((kh, kw), dilation))}"
        )
    return ConvGeometry((kh, kw), stride, padding, dilation, groups, (h, w), grid)


# =========================================================================== conv_transpose2d
class ConvTranspose2d(Function):
    """y = conv_transpose2d(x, W) + b  =  col2im(W^T @ x) + b: conv2d's input gradient, run forward.

    Its backward therefore runs conv2d's other two products:
        dx = W @ im2col(dy)                  (conv2d of dy: conv2d's forward)
        dW = x @ im2col(dy)^T                (conv2d's weight gradient, with x in the role of dy)
    """

    weight_times_columns = staticmethod(weight_times_columns)
    input_gradient = staticmethod(input_gradient)
    weight_gradient = staticmethod(weight_gradient)

    @staticmethod
    def forward(ctx, x, weight, bias, geometry):
        need_x, need_weight = ctx.needs_input_grad[:2]
        ctx.save_for_backward(x if need_weight else None, weight if need_x else None)
        ctx.geometry, ctx.weight_shape = geometry, weight.shape
        y = ctx.input_gradient(weight, x, geometry)  # col2im(W^T @ x)
        return y if bias is None else y + bias.reshape(1, -1, 1, 1)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        need_x, need_weight, need_bias = ctx.needs_input_grad[:3]
        grad_x = ctx.weight_times_columns(weight, grad, ctx.geometry) if need_x else None  # W @ im2col(dy)
        grad_weight = ctx.weight_gradient(x, grad, ctx.weight_shape, ctx.geometry) if need_weight else None  # x @ im2col(dy)^T
        grad_bias = _bias_gradient(grad) if need_bias else None
        return grad_x, grad_weight, grad_bias, None


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed 2-D convolution (a.k.a. "deconvolution", fractionally strided convolution).

    Shapes:
        x       (N, C_in, H, W)
        weight  (C_in, C_out/groups, kh, kw)      -- note: in-channels first
        bias    (C_out,) or None
        result  (N, C_out, OH, OW),
                OH = (H-1)*stride - 2*padding + dilation*(kh-1) + output_padding + 1
                (= (H-1)*stride - 2*padding + kh, the textbook formula, with no dilation
                and no output_padding; the same for OW)

    Why its forward IS conv2d's input gradient
    ------------------------------------------
    Take a conv2d ``y = conv2d(z, W)`` whose weight is this op's ``weight``
    (so (out=C_in, in/groups=C_out/groups, kh, kw)) and whose input z has
    C_out channels of size (OH, OW); its output then has C_in channels of
    size (H, W) -- this op's input shape. conv2d is linear in z: ``y = A z``
    for a big sparse matrix A. Its input gradient is ``dz = A^T dy``. The
    transposed convolution is *defined* as ``x -> A^T x``: each input pixel
    spreads (scatters) its value, weighted by the kernel, over a kh x kw patch
    of the output, patches ``stride`` apart. In code that is exactly
    ``col2im(W^T @ x)``, the function conv2d's backward already uses for dz.

    Because ``A^T``'s adjoint is ``A`` again, this op's backward is conv2d's
    forward (dx = conv2d(dy, W)) and conv2d's weight gradient.
    ``output_padding`` (< stride or dilation) picks among the several output
    sizes that a strided conv2d maps to the same input size; the extra
    rows/columns at the bottom/right receive no kernel contribution but a bias.
    """
    op = "conv_transpose2d"
    check_4d(x, op)
    check_4d(weight, op, "(in_channels, out_channels/groups, kh, kw)", "weight")
    check_same_dtype(op, input=x, weight=weight, bias=bias)
    geometry = _conv_transpose2d_geometry(x.shape, weight.shape, bias, stride, padding, output_padding, groups, dilation)
    return ConvTranspose2d.apply(x, weight, bias, geometry)


def _conv_transpose2d_geometry(x_shape, w_shape, bias, stride, padding, output_padding, groups, dilation):
    op = "conv_transpose2d"
    stride, dilation = positive_pair(stride, "stride", op), positive_pair(dilation, "dilation", op)
    padding = non_negative_pair(padding, "padding", op)
    output_padding = non_negative_pair(output_padding, "output_padding", op)
    groups = _check_groups(groups, op)
    n, c_in, h, w = x_shape
    w_in, out_per_group, kh, kw = w_shape
    _check_kernel(w_shape, op)
    if c_in != w_in:
        raise ValueError(
            f"{op}: input of shape {tuple(x_shape)} has {c_in} channels, but weight of shape {tuple(w_shape)} "
            f"expects {w_in} (= weight.shape[0], the in-channels of a transposed convolution)"
        )
    if c_in % groups:
        raise ValueError(f"{op}: input channels {c_in} (input shape {tuple(x_shape)}) are not divisible by groups={groups}")
    for extra, s, d in zip(output_padding, stride, dilation):
        if extra >= max(s, d):
            raise ValueError(
                f"{op}: output_padding {output_padding} must be smaller than stride {stride} or dilation {dilation}"
            )
    _check_bias(bias, out_per_group * groups, op)
    image = tuple(
        (size - 1) * s - 2 * p + d * (k - 1) + extra + 1
        for size, s, p, d, k, extra in zip((h, w), stride, padding, dilation, (kh, kw), output_padding)
    )
    if min(image) < 1:
        raise ValueError(f"{op}: output size {image} is too small for input {tuple(x_shape)}, weight {tuple(w_shape)}, padding {padding}")
    return ConvGeometry((kh, kw), stride, padding, dilation, groups, image, (h, w))
