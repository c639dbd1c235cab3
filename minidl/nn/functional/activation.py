"""Activations: leaky_relu, relu6, hardsigmoid, hardswish, elu, softmax, log_softmax.

(relu, sigmoid and tanh live in ``minidl/ops/elementwise.py``; ``F`` re-exports them.)

The pointwise ones are subclasses of ``Pointwise`` (minidl/ops/elementwise.py,
the base of exp and relu too): each gives the function ``f`` and its
derivative ``df(xp, x, y, *params)`` with the activation's parameters (a
slope, an alpha); they keep x, so y is None. Derivatives at the kinks follow
PyTorch, so gradients match it exactly.

softmax and log_softmax subtract the maximum along ``dim`` before
exponentiating: exp(x - max) lies in (0, 1], so logits of 1e4 do not
overflow, and the result is unchanged (the factor e^-max cancels).
"""
from __future__ import annotations

from ...autograd.function import Function
from ...backend import array_module
from ...ops.elementwise import Pointwise
from ...ops.reduction import normalize_dims
from ... import dtypes

__all__ = ["leaky_relu", "relu6", "hardsigmoid", "hardswish", "elu", "softmax", "log_softmax"]


# --------------------------------------------------------------------------- pointwise
def _where(xp, condition, a, b, like):
    """xp.where that keeps ``like``'s dtype when a or b is a Python number."""
    return xp.where(condition, a, b).astype(like.dtype, copy=False)


class LeakyRelu(Pointwise):
    """x for x > 0, slope * x otherwise."""

    f = staticmethod(lambda xp, x, slope: _where(xp, x > 0, x, x * slope, x))
    df = staticmethod(lambda xp, x, y, slope: _where(xp, x > 0, x.dtype.type(1), slope, x))


class Relu6(Pointwise):
    """min(max(x, 0), 6); the gradient is 1 strictly inside (0, 6) (PyTorch's hardtanh rule)."""

    f = staticmethod(lambda xp, x: xp.clip(x, 0, 6).astype(x.dtype, copy=False))
    df = staticmethod(lambda xp, x, y: ((x > 0) & (x < 6)).astype(x.dtype))


class Hardsigmoid(Pointwise):
    """relu6(x + 3) / 6: a piecewise-linear sigmoid; slope 1/6 strictly inside (-3, 3)."""

    f = staticmethod(lambda xp, x: (xp.clip(x + 3, 0, 6) / 6).astype(x.dtype, copy=False))
    df = staticmethod(lambda xp, x, y: ((x > -3) & (x < 3)).astype(x.dtype) / x.dtype.type(6))


class Hardswish(Pointwise):
    """x * relu6(x + 3) / 6; slope 0 up to -3, (2x + 3)/6 strictly inside (-3, 3), 1 from 3 on.

    (The slope jumps at both ends: from 0 to -1/2 at -3, from 3/2 to 1 at 3.)
    """

    f = staticmethod(lambda xp, x: (x * xp.clip(x + 3, 0, 6) / 6).astype(x.dtype, copy=False))

    @staticmethod
    def df(xp, x, y):
        middle = (2 * x + 3) / 6
        return _where(xp, x <= -3, x.dtype.type(0), _where(xp, x < 3, middle, x.dtype.type(1), x), x)


class Elu(Pointwise):
    """x for x > 0, alpha * (e^x - 1) otherwise; slope alpha * e^x for x <= 0."""

    # min(x, 0) keeps exp from overflowing on the positive side, which where() discards anyway
    f = staticmethod(lambda xp, x, alpha: _where(xp, x > 0, x, alpha * xp.expm1(xp.minimum(x, 0)), x))
    df = staticmethod(lambda xp, x, y, alpha: _where(xp, x > 0, x.dtype.type(1), alpha * xp.exp(xp.minimum(x, 0)), x))


def _pointwise(op, x, *params):
    if not dtypes.is_floating(x.dtype):
        raise TypeError(f"{op.__name__.lower()} expects a floating point input, got {x.dtype}")
    return op.apply(x, *(x.dtype.type(p) for p in params))


def leaky_relu(x, negative_slope=0.01, inplace=False):
    """x where x > 0, else negative_slope * x. (``inplace`` is accepted for PyTorch
    compatibility; minidl always returns a new tensor.)"""
    return _pointwise(LeakyRelu, x, negative_slope)


def relu6(x, inplace=False):
    """min(max(x, 0), 6)."""
    return _pointwise(Relu6, x)


def hardsigmoid(x, inplace=False):
    """relu6(x + 3) / 6."""
    return _pointwise(Hardsigmoid, x)


def hardswish(x, inplace=False):
    """x * relu6(x + 3) / 6 (MobileNetV3)."""
    return _pointwise(Hardswish, x)


def elu(x, alpha=1.0, inplace=False):
    """x where x > 0, else alpha * (exp(x) - 1)."""
    return _pointwise(Elu, x, alpha)


# --------------------------------------------------------------------------- softmax family
def _shifted(x, axis):
    """x - max(x) along ``axis``: every value <= 0, so exp never overflows. A new array.

    (Written with ``out=`` so that a 0-d input gives a 0-d array, not a NumPy
    scalar, which the in-place steps of the callers could not write into.)
    """
    xp = array_module(x)
    return xp.subtract(x, x.max(axis=axis, keepdims=True), out=xp.empty_like(x))


class Softmax(Function):
    """y = e^x / sum(e^x) along ``axis``;  dx = y * (dy - sum(dy * y))."""

    @staticmethod
    def forward(ctx, x, axis):
        y = _shifted(x, axis)
        array_module(x).exp(y, out=y)  # in place: the shifted copy becomes e^(x - max)
        y /= y.sum(axis=axis, keepdims=True)
        ctx.save_for_backward(y)
        ctx.axis = axis
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        dot = (grad * y).sum(axis=ctx.axis, keepdims=True)
        return y * (grad - dot), None


class LogSoftmax(Function):
    """y = x - logsumexp(x) along ``axis``;  dx = dy - softmax(x) * sum(dy) = dy - e^y * sum(dy)."""

    @staticmethod
    def forward(ctx, x, axis):
        xp = array_module(x)
        y = _shifted(x, axis)
        y -= xp.log(xp.exp(y).sum(axis=axis, keepdims=True))  # logsumexp of the shifted values
        ctx.save_for_backward(y)
        ctx.axis = axis
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        xp = array_module(grad)
        return grad - xp.exp(y) * grad.sum(axis=ctx.axis, keepdims=True), None


def _softmax_like(op, x, dim):
    if not dtypes.is_floating(x.dtype):
        raise TypeError(f"{op.__name__.lower()} expects a floating point input, got {x.dtype}")
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"{op.__name__.lower()}: dim must be an int, got {dim!r}")
    (axis,) = normalize_dims(dim, x.ndim) or (None,)  # a 0-d tensor: the one value is the whole slice
    return op.apply(x, axis)


def softmax(x, dim):
    """e^x / sum(e^x) along ``dim``: every slice along dim becomes a probability vector."""
    return _softmax_like(Softmax, x, dim)


def log_softmax(x, dim):
    """log(softmax(x)) along ``dim``, computed as x - logsumexp(x) (stable, no log of 0)."""
    return _softmax_like(LogSoftmax, x, dim)
