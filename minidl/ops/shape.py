"""Shape ops: reshape, permute, expand, indexing, cat, stack, pad.

None of them changes a value, so each backward only moves the gradient back
to where its element came from: reshape back, permute back, sum over what
was broadcast, scatter into the indexed places, split what was joined.
"""
from __future__ import annotations

import numpy as np

from ..autograd.function import Function, unbroadcast
from ..backend import array_module, scatter_add
from .reduction import normalize_dims


class Reshape(Function):
    """out = x with a new shape of the same number of elements."""

    @staticmethod
    def forward(ctx, x, shape):
        ctx.input_shape = x.shape
        return x.reshape(shape)

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape(ctx.input_shape), None


class Permute(Function):
    """out = x with its axes reordered; backward applies the inverse order."""

    @staticmethod
    def forward(ctx, x, dims):
        ctx.dims = dims
        return x.transpose(dims)

    @staticmethod
    def backward(ctx, grad):
        return grad.transpose(np.argsort(ctx.dims)), None


class Expand(Function):
    """out = x broadcast to ``shape`` (a view); backward sums over the copies."""

    @staticmethod
    def forward(ctx, x, shape):
        ctx.input_shape = x.shape
        return array_module(x).broadcast_to(x, shape)

    @staticmethod
    def backward(ctx, grad):
        return unbroadcast(grad, ctx.input_shape), None


class Index(Function):
    """out = x[index]: basic slices, integer arrays or a boolean mask.

    Backward writes the gradient into a zero array at the same places. With
    integer arrays an element may be picked twice, so their gradients must
    add up: ``scatter_add`` (``np.add.at``) does that; plain assignment would
    keep only one of them.
    """

    @staticmethod
    def forward(ctx, x, index):
        ctx.input_shape, ctx.index, ctx.dtype = x.shape, index, x.dtype
        return x[index]

    @staticmethod
    def backward(ctx, grad):
        xp = array_module(grad)
        grad_x = xp.zeros(ctx.input_shape, dtype=grad.dtype)
        if _is_advanced(ctx.index):
            scatter_add(grad_x, ctx.index, grad)
        else:
            grad_x[ctx.index] = grad
        return grad_x, None


def _is_advanced(index):
    parts = index if isinstance(index, tuple) else (index,)
    return any(hasattr(part, "shape") and part.ndim > 0 or isinstance(part, list) for part in parts)


class Cat(Function):
    """out = the inputs joined along ``axis``; backward cuts the gradient into the same pieces."""

    @staticmethod
    def forward(ctx, axis, *arrays):
        ctx.axis = axis
        ctx.sizes = [a.shape[axis] for a in arrays]
        return array_module(arrays[0]).concatenate(arrays, axis=axis)

    @staticmethod
    def backward(ctx, grad):
        pieces, start = [], 0
        for size in ctx.sizes:
            where = [slice(None)] * grad.ndim
            where[ctx.axis] = slice(start, start + size)
            pieces.append(grad[tuple(where)])
            start += size
        return (None, *pieces)


class Pad(Function):
    """Constant padding. ``widths`` is NumPy's ((before, after), ...) per axis."""

    @staticmethod
    def forward(ctx, x, widths, value):
        xp = array_module(x)
        out_shape = tuple(size + before + after for size, (before, after) in zip(x.shape, widths))
        out = xp.full(out_shape, value, dtype=x.dtype)
        ctx.inside = tuple(slice(before, before + size) for size, (before, _) in zip(x.shape, widths))
        out[ctx.inside] = x
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad[ctx.inside], None, None


# --------------------------------------------------------------------------- public functions
def reshape(x, *shape):
    """A tensor with the same elements in ``shape`` (one entry may be -1)."""
    return Reshape.apply(x, _resolve_shape(_shape_arg(shape), x.numel()))


def _resolve_shape(shape, numel):
    """Replace a -1 in ``shape`` by what makes the element count ``numel``; check the count."""
    known = 1
    for size in shape:
        if size != -1:
            known *= size
    invalid = shape.count(-1) > 1 or any(size < -1 for size in shape)
    if -1 in shape and not invalid and known and numel % known == 0:
        shape = tuple(numel // known if size == -1 else size for size in shape)
        known = numel
    if invalid or known != numel:
        raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
    return shape


def _shape_arg(shape):
    """Accept both ``f(2, 3)`` and ``f((2, 3))``."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)


def flatten(x, start_dim=0, end_dim=-1):
    """Merge dims ``start_dim..end_dim`` into one."""
    if x.ndim == 0:
        return reshape(x, 1)
    (start,), (end,) = normalize_dims(start_dim, x.ndim), normalize_dims(end_dim, x.ndim)
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    merged = 1
    for size in x.shape[start : end + 1]:
        merged *= size
    return reshape(x, x.shape[:start] + (merged,) + x.shape[end + 1 :])


def permute(x, *dims):
    """Reorder the axes: ``out.shape[i] = x.shape[dims[i]]``."""
    dims = _shape_arg(dims)
    if sorted(d % max(x.ndim, 1) for d in dims) != list(range(x.ndim)):
        raise ValueError(f"permute: dims {dims} are not a permutation of the {x.ndim} dims of shape {x.shape}")
    return Permute.apply(x, tuple(d % x.ndim for d in dims))


def transpose(x, dim0, dim1):
    """Swap two axes."""
    dims = list(range(x.ndim))
    (a,), (b,) = normalize_dims(dim0, x.ndim), normalize_dims(dim1, x.ndim)
    dims[a], dims[b] = dims[b], dims[a]
    return Permute.apply(x, tuple(dims))


def unsqueeze(x, dim):
    """Insert an axis of size 1 at ``dim`` (``-1`` appends)."""
    if not -x.ndim - 1 <= dim <= x.ndim:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-x.ndim - 1}, {x.ndim}], but got {dim})")
    dim = dim % (x.ndim + 1)
    return reshape(x, x.shape[:dim] + (1,) + x.shape[dim:])


def squeeze(x, dim=None):
    """Remove axes of size 1 (only ``dim`` when given; a dim whose size is not 1 is left alone)."""
    if dim is None:
        shape = tuple(s for s in x.shape if s != 1)
    else:
        axes = normalize_dims(dim, x.ndim)
        shape = tuple(s for i, s in enumerate(x.shape) if not (i in axes and s == 1))
    return reshape(x, shape)


def expand(x, *sizes):
    """Broadcast to ``sizes`` without copying; -1 keeps a dim's size."""
    sizes = _shape_arg(sizes)
    if len(sizes) < x.ndim:
        raise ValueError(f"expand: the number of sizes ({len(sizes)}) must be at least the number of dims ({x.ndim})")
    offset = len(sizes) - x.ndim
    target = tuple(x.shape[i - offset] if s == -1 and i >= offset else s for i, s in enumerate(sizes))
    for i, size in enumerate(x.shape):
        if size != 1 and size != target[i + offset]:
            raise ValueError(f"expand: the size {size} of dim {i} of shape {x.shape} cannot be expanded to {target}")
    return Expand.apply(x, target)


def getitem(x, index):
    """``x[index]`` with Tensor indices turned into arrays and bool masks checked."""
    from .._tensor import Tensor

    def convert(part):
        if isinstance(part, Tensor):
            return part._array
        if isinstance(part, list):
            return array_module(x._array).asarray(part)
        return part

    index = tuple(convert(p) for p in index) if isinstance(index, tuple) else convert(index)
    try:
        return Index.apply(x, index)
    except IndexError as error:
        raise IndexError(f"index {index!r} is invalid for a tensor of shape {tuple(x.shape)}: {error}") from None


def cat(tensors, dim=0):
    """Join tensors along an existing ``dim``; all other sizes must match."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty list of Tensors")
    first = tensors[0]
    (axis,) = normalize_dims(dim, first.ndim)
    for i, t in enumerate(tensors):
        if t.ndim != first.ndim or any(a != b for j, (a, b) in enumerate(zip(t.shape, first.shape)) if j != axis):
            raise ValueError(f"cat: tensor {i} has shape {tuple(t.shape)}, which does not match {tuple(first.shape)} outside dim {dim}")
        if t.dtype != first.dtype:
            raise TypeError(f"cat: tensor {i} has dtype {t.dtype}, tensor 0 has {first.dtype}")
    return Cat.apply(axis, *tensors)


def stack(tensors, dim=0):
    """Join same-shaped tensors along a new ``dim``."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expected a non-empty list of Tensors")
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"stack: expects each tensor to be equal size, got shapes {sorted(shapes)}")
    return cat([unsqueeze(t, dim) for t in tensors], dim)


def pad(x, pad, mode="constant", value=0.0):
    """Constant padding in PyTorch's order: ``pad = (left, right, top, bottom, ...)`` from the last dim backwards."""
    if mode != "constant":
        raise NotImplementedError(f"pad: only mode='constant' is implemented, got {mode!r}")
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(f"pad: needs an even number of widths, at most 2 per dim; got {len(pad)} for {x.ndim} dims")
    if any(p < 0 for p in pad):
        raise ValueError(f"pad: negative padding {tuple(pad)} is not supported")
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    return Pad.apply(x, tuple(widths), x.dtype.type(value))
