"""Reductions: sum, mean, var, max/min (with indices), argmax/argmin.

A reduction's backward spreads the output gradient back over the reduced
axes: equally for sum and mean, to the winning element for max/min.
"""
from __future__ import annotations

from collections import namedtuple

from ..autograd.function import Function
from ..backend import array_module, quiet_float_errors
from .. import dtypes


def normalize_dims(dim, ndim, name="dim"):
    """``dim`` (None, an int or a sequence, negatives allowed) -> a tuple of axes, or None for all.

    Raises IndexError, as PyTorch does, for a dimension out of range.
    """
    if dim is None:
        return None
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    span = ndim or 1  # a 0-d tensor accepts dim 0 and -1, as in PyTorch
    low, high = -span, span - 1
    axes = []
    for d in dims:
        if not isinstance(d, int) or not low <= d <= high:
            raise IndexError(f"Dimension out of range (expected to be in range of [{low}, {high}], but got {d})")
        axes.append(d % span if ndim else 0)
    if len(set(axes)) != len(axes):
        raise ValueError(f"{name} {dim} names a dimension more than once")
    return tuple(axes) if ndim else ()


def _expand_back(grad, input_shape, axes, keepdim):
    """Reshape a reduced gradient so that it broadcasts against the input again."""
    if axes is None:
        axes = tuple(range(len(input_shape)))
    if not keepdim:
        shape = [1 if i in axes else size for i, size in enumerate(input_shape)]
        grad = grad.reshape(shape)
    return grad


class Sum(Function):
    """out = x summed over ``axes``; every input element gets the output's gradient."""

    @staticmethod
    def forward(ctx, x, axes, keepdim):
        ctx.input_shape, ctx.axes, ctx.keepdim = x.shape, axes, keepdim
        return x.sum(axis=axes, keepdims=keepdim)

    @staticmethod
    def backward(ctx, grad):
        grad = _expand_back(grad, ctx.input_shape, ctx.axes, ctx.keepdim)
        # a read-only broadcast view: no copy (backward never writes into its grad)
        return array_module(grad).broadcast_to(grad, ctx.input_shape), None, None


class Var(Function):
    """Variance over ``axes`` with ``correction`` (1 = unbiased, PyTorch's default).

    d var / dx_i = 2 (x_i - mean) / (n - correction)
    """

    @staticmethod
    def forward(ctx, x, axes, correction, keepdim):
        n = x.size if axes is None else _count(x.shape, axes)
        centred = x - x.mean(axis=axes, keepdims=True)
        ctx.save_for_backward(centred)
        ctx.axes, ctx.keepdim, ctx.divisor = axes, keepdim, n - correction if n > correction else 0
        with quiet_float_errors(array_module(x)):
            return ((centred * centred).sum(axis=axes, keepdims=keepdim) / ctx.divisor).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        (centred,) = ctx.saved_tensors
        grad = _expand_back(grad, centred.shape, ctx.axes, ctx.keepdim)
        with quiet_float_errors(array_module(grad)):
            return grad * centred * (2.0 / ctx.divisor if ctx.divisor else float("nan")), None, None, None


def _count(shape, axes):
    n = 1
    for axis in axes:
        n *= shape[axis]
    return n


class ExtremeAlongDim(Function):
    """max or min along one dim, with the index of the winner (``mode`` = "max" or "min")."""

    @staticmethod
    def forward(ctx, x, axis, keepdim, mode):
        xp = array_module(x)
        indices = (xp.argmax if mode == "max" else xp.argmin)(x, axis=axis, keepdims=True)
        values = xp.take_along_axis(x, indices, axis=axis)
        ctx.save_for_backward(indices)
        ctx.input_shape, ctx.axis, ctx.keepdim = x.shape, axis, keepdim
        if not keepdim:
            values, indices = values.squeeze(axis), indices.squeeze(axis)
        return values, indices.astype(dtypes.int64, copy=False)

    @staticmethod
    def backward(ctx, grad):
        (indices,) = ctx.saved_tensors
        xp = array_module(grad)
        if not ctx.keepdim:
            grad = xp.expand_dims(grad, ctx.axis)
        grad_x = xp.zeros(ctx.input_shape, dtype=grad.dtype)
        xp.put_along_axis(grad_x, indices, grad, axis=ctx.axis)
        return grad_x, None, None, None


class ExtremeAll(Function):
    """max or min over all elements; ties share the gradient evenly (as PyTorch's ``max()``)."""

    @staticmethod
    def forward(ctx, x, mode):
        xp = array_module(x)
        if x.size == 0:
            raise RuntimeError(f"{mode}(): expected a non-empty tensor")
        out = x.max() if mode == "max" else x.min()
        ctx.save_for_backward(x == out)
        return xp.asarray(out)

    @staticmethod
    def backward(ctx, grad):
        (winners,) = ctx.saved_tensors
        return winners * (grad / winners.sum()), None


MaxMin = namedtuple("MaxMin", ["values", "indices"])


def sum(x, dim=None, keepdim=False, dtype=None):
    """Sum over ``dim`` (all dims by default). Bool and int tensors sum to int64, as in PyTorch."""
    if dtype is not None:
        x = x.to(dtype)
    elif not dtypes.is_floating(x.dtype):
        x = x.to(dtypes.int64)
    return Sum.apply(x, normalize_dims(dim, x.ndim), keepdim)


def mean(x, dim=None, keepdim=False):
    """Mean over ``dim`` (all dims by default); floating tensors only."""
    if not dtypes.is_floating(x.dtype):
        raise TypeError(f"mean(): expected a floating point tensor, got {x.dtype}; use x.float().mean()")
    axes = normalize_dims(dim, x.ndim)
    n = x.numel() if axes is None else _count(x.shape, axes)
    return sum(x, dim, keepdim) / n if n else sum(x, dim, keepdim) * float("nan")


def var(x, dim=None, unbiased=True, keepdim=False, correction=None):
    """Variance over ``dim``; ``correction`` 1 (unbiased, default) or 0."""
    if correction is None:
        correction = 1 if unbiased else 0
    return Var.apply(x, normalize_dims(dim, x.ndim), correction, keepdim)


def std(x, dim=None, unbiased=True, keepdim=False, correction=None):
    """Standard deviation: ``sqrt(var)``."""
    return var(x, dim, unbiased, keepdim, correction).sqrt()


def _extreme(x, dim, keepdim, mode):
    if dim is None:
        return ExtremeAll.apply(x, mode)
    (axis,) = normalize_dims(dim, x.ndim)
    if x.ndim == 0:
        return MaxMin(x, x.new_zeros((), dtype=dtypes.int64))
    values, indices = ExtremeAlongDim.apply(x, axis, keepdim, mode)
    return MaxMin(values, indices)


def max(x, dim=None, keepdim=False):
    """``max(x)``: the largest element. ``max(x, dim)``: (values, indices) along ``dim``."""
    return _extreme(x, dim, keepdim, "max")


def min(x, dim=None, keepdim=False):
    """``min(x)``: the smallest element. ``min(x, dim)``: (values, indices) along ``dim``."""
    return _extreme(x, dim, keepdim, "min")


def argmax(x, dim=None, keepdim=False):
    """Index of the largest element (of the flattened tensor when ``dim`` is None), int64."""
    return _arg(x, dim, keepdim, "argmax")


def argmin(x, dim=None, keepdim=False):
    """Index of the smallest element (of the flattened tensor when ``dim`` is None), int64."""
    return _arg(x, dim, keepdim, "argmin")


def _arg(x, dim, keepdim, name):
    from .._tensor import Tensor

    xp = array_module(x._array)
    if dim is None:
        out = getattr(xp, name)(x._array)
        out = out.reshape((1,) * x.ndim) if keepdim else out
    else:
        (axis,) = normalize_dims(dim, x.ndim)
        out = getattr(xp, name)(x._array, axis=axis, keepdims=keepdim)
    return Tensor._from_array(xp.asarray(out).astype(dtypes.int64, copy=False))
