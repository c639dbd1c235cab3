"""Elementwise ops: arithmetic, powers, exp/log, clamps, activations, casts.

Ops of one tensor (exp, relu, sigmoid) are ``Pointwise`` subclasses: a
function ``f`` and its derivative ``df``, from which ``Pointwise`` makes
forward and backward. The activations with parameters in
``minidl/nn/functional/activation.py`` use the same base.

Every binary op broadcasts like NumPy; its backward sums the gradient back to
each input's shape with ``unbroadcast``. Binary ops receive the result dtype
from ``binary_operands`` (PyTorch's promotion rules) and cast in forward; the
engine casts gradients back to each input's dtype.
"""
from __future__ import annotations

import numpy as np

from ..autograd.function import Function, unbroadcast
from ..backend import array_module
from .. import dtypes


# --------------------------------------------------------------------------- operands
def binary_operands(a, b):
    """Turn ``a op b`` operands into (a, b, result_dtype).

    Tensors stay Tensors. A Python or NumPy scalar becomes a NumPy scalar of
    the result dtype, so it never widens the tensor (float32 * 2.5 -> float32).
    A NumPy array becomes a Tensor of its own dtype.
    """
    from .._tensor import Tensor
    from ..creation import tensor

    if isinstance(a, np.ndarray):
        a = tensor(a)
    if isinstance(b, np.ndarray):
        b = tensor(b)
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return a, b, dtypes.promote(a.dtype, b.dtype)
    if isinstance(a, Tensor):
        dtype = dtypes.scalar_dtype(a.dtype, b)
        return a, dtype.type(b), dtype
    if isinstance(b, Tensor):
        dtype = dtypes.scalar_dtype(b.dtype, a)
        return dtype.type(a), b, dtype
    raise TypeError(f"expected at least one Tensor operand, got {type(a).__name__} and {type(b).__name__}")


def _shape(value):
    return getattr(value, "shape", ())


def _xp(a, b):
    """Array module of a binary op's operands (one of them may be a NumPy scalar)."""
    return array_module(b) if isinstance(a, np.generic) else array_module(a)


class Add(Function):
    """out = a + b"""

    @staticmethod
    def forward(ctx, a, b, dtype):
        ctx.shapes = _shape(a), _shape(b)
        return _cast(a + b, dtype)

    @staticmethod
    def backward(ctx, grad):
        a_shape, b_shape = ctx.shapes
        return unbroadcast(grad, a_shape), unbroadcast(grad, b_shape), None


class Sub(Function):
    """out = a - b"""

    @staticmethod
    def forward(ctx, a, b, dtype):
        ctx.shapes = _shape(a), _shape(b)
        return _cast(a - b, dtype)

    @staticmethod
    def backward(ctx, grad):
        a_shape, b_shape = ctx.shapes
        grad_b = unbroadcast(-grad, b_shape) if ctx.needs_input_grad[1] else None
        return unbroadcast(grad, a_shape), grad_b, None


class Mul(Function):
    """out = a * b;  da = grad * b,  db = grad * a"""

    @staticmethod
    def forward(ctx, a, b, dtype):
        ctx.save_for_backward(a, b)
        return _cast(a * b, dtype)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        grad_a = unbroadcast(grad * b, _shape(a)) if ctx.needs_input_grad[0] else None
        grad_b = unbroadcast(grad * a, _shape(b)) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b, None


class Div(Function):
    """out = a / b;  da = grad / b,  db = -grad * out / b"""

    @staticmethod
    def forward(ctx, a, b, dtype):
        if not dtypes.is_floating(dtype):  # true division of integers gives floats, as in PyTorch
            dtype = dtypes.default_float
        out = _cast(_cast(a, dtype) / b, dtype)
        ctx.save_for_backward(b, out)
        ctx.a_shape = _shape(a)
        return out

    @staticmethod
    def backward(ctx, grad):
        b, out = ctx.saved_tensors
        grad_over_b = grad / b
        grad_a = unbroadcast(grad_over_b, ctx.a_shape) if ctx.needs_input_grad[0] else None
        grad_b = unbroadcast(-grad_over_b * out, _shape(b)) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b, None


class Pow(Function):
    """out = a ** b;  da = grad * b * a**(b-1),  db = grad * out * log(a)"""

    @staticmethod
    def forward(ctx, a, b, dtype):
        out = _cast(_cast(a, dtype) ** b, dtype)
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        a, b, out = ctx.saved_tensors
        xp = array_module(grad)
        grad_a = unbroadcast(grad * b * a ** (b - 1), _shape(a)) if ctx.needs_input_grad[0] else None
        grad_b = None
        if ctx.needs_input_grad[1]:
            # where a == 0 the derivative in b is taken as 0 (PyTorch does the same)
            log_a = xp.log(xp.where(a > 0, a, 1))
            grad_b = unbroadcast(grad * out * log_a, _shape(b))
        return grad_a, grad_b, None


def _cast(value, dtype):
    return value.astype(dtype, copy=False) if hasattr(value, "astype") else dtype.type(value)


class Maximum(Function):
    """out = max(a, b); the gradient goes to the larger input (split evenly on ties, as PyTorch)."""

    @staticmethod
    def forward(ctx, a, b, dtype):
        xp = _xp(a, b)
        ctx.save_for_backward(a, b)
        return _cast(xp.maximum(a, b), dtype)

    @staticmethod
    def backward(ctx, grad):
        return _select_backward(ctx, grad, lambda a, b: a > b)


class Minimum(Function):
    """out = min(a, b); the gradient goes to the smaller input (split evenly on ties)."""

    @staticmethod
    def forward(ctx, a, b, dtype):
        xp = _xp(a, b)
        ctx.save_for_backward(a, b)
        return _cast(xp.minimum(a, b), dtype)

    @staticmethod
    def backward(ctx, grad):
        return _select_backward(ctx, grad, lambda a, b: a < b)


def _select_backward(ctx, grad, a_wins):
    """Shared backward of maximum/minimum: the winner gets the gradient, ties get half each."""
    a, b = ctx.saved_tensors
    xp = array_module(grad)
    share_a = xp.where(a_wins(a, b), 1.0, xp.where(a == b, 0.5, 0.0)).astype(grad.dtype)
    grad_a = unbroadcast(grad * share_a, _shape(a)) if ctx.needs_input_grad[0] else None
    grad_b = unbroadcast(grad * (1 - share_a), _shape(b)) if ctx.needs_input_grad[1] else None
    return grad_a, grad_b, None


class Where(Function):
    """out = a where condition else b; each side's gradient is masked by the condition."""

    @staticmethod
    def forward(ctx, condition, a, b, dtype):
        xp = array_module(condition)
        ctx.save_for_backward(condition)
        ctx.shapes = _shape(a), _shape(b)
        return _cast(xp.where(condition, a, b), dtype)

    @staticmethod
    def backward(ctx, grad):
        (condition,) = ctx.saved_tensors
        xp = array_module(grad)
        zero = grad.dtype.type(0)
        grad_a = unbroadcast(xp.where(condition, grad, zero), ctx.shapes[0]) if ctx.needs_input_grad[1] else None
        grad_b = unbroadcast(xp.where(condition, zero, grad), ctx.shapes[1]) if ctx.needs_input_grad[2] else None
        return None, grad_a, grad_b, None


# --------------------------------------------------------------------------- pointwise ops
class Pointwise(Function):
    """y = f(x, *params) element by element; backward is dx = grad * df(x, y, *params).

    The shorthand for an op of one tensor whose derivative is elementwise
    (exp, relu, leaky_relu, a new activation): a subclass gives ``f`` and its
    derivative ``df``, and forward and backward follow. Anything else -- two
    tensor inputs, a reduction, a gradient that is not ``grad * f'(x)`` -- is
    a ``Function`` with forward and backward written out.

    ``params`` are forward arguments after x that are not Tensors (a slope,
    an alpha): give them as scalars of x's dtype, so that no float64 creeps
    in. They get no gradient.

    ``keeps`` says what backward needs: "x" (the input), "y" (the output, as
    for exp, where dy/dx = y), "xy" or "" (neither). Keeping only what is
    needed keeps the graph's memory down.
    """

    keeps = "x"

    @staticmethod
    def f(xp, x, *params):
        raise NotImplementedError

    @staticmethod
    def df(xp, x, y, *params):
        """dy/dx, from whichever of x and y ``keeps`` names (the other is None)."""
        raise NotImplementedError

    @staticmethod
    def forward(ctx, x, *params):
        y = ctx.f(array_module(x), x, *params)
        ctx.save_for_backward(x if "x" in ctx.keeps else None, y if "y" in ctx.keeps else None)
        ctx.params = params
        return y

    @staticmethod
    def backward(ctx, grad):
        x, y = ctx.saved_tensors
        return (grad * ctx.df(array_module(grad), x, y, *ctx.params),) + (None,) * len(ctx.params)


class Neg(Pointwise):
    keeps = ""
    f = staticmethod(lambda xp, x: -x)
    df = staticmethod(lambda xp, x, y: -1)


class Exp(Pointwise):
    keeps = "y"
    f = staticmethod(lambda xp, x: xp.exp(x))
    df = staticmethod(lambda xp, x, y: y)


class Log(Pointwise):
    f = staticmethod(lambda xp, x: xp.log(x))
    df = staticmethod(lambda xp, x, y: 1 / x)


class Sqrt(Pointwise):
    keeps = "y"
    f = staticmethod(lambda xp, x: xp.sqrt(x))
    df = staticmethod(lambda xp, x, y: 0.5 / y)


class Abs(Pointwise):
    f = staticmethod(lambda xp, x: xp.abs(x))
    df = staticmethod(lambda xp, x, y: xp.sign(x))


class Sigmoid(Pointwise):
    """sigma(x) = 1 / (1 + e^-x), computed without overflow for large |x|."""

    keeps = "y"

    @staticmethod
    def f(xp, x):
        # e^-|x| never overflows; choose the algebraically equal form per sign
        z = xp.exp(-xp.abs(x))
        return xp.where(x >= 0, 1 / (1 + z), z / (1 + z)).astype(x.dtype, copy=False)

    df = staticmethod(lambda xp, x, y: y * (1 - y))


class Tanh(Pointwise):
    keeps = "y"
    f = staticmethod(lambda xp, x: xp.tanh(x))
    df = staticmethod(lambda xp, x, y: 1 - y * y)


class Relu(Pointwise):
    """relu(x) = max(x, 0); its derivative is 1 where x > 0, else 0.

    Keeps the output, not the input: y > 0 exactly where x > 0.
    """

    keeps = "y"
    f = staticmethod(lambda xp, x: xp.maximum(x, x.dtype.type(0)))
    df = staticmethod(lambda xp, x, y: y > 0)  # a 0/1 mask; grad * mask keeps grad's dtype


class Clamp(Function):
    """out = min(max(x, low), high); the gradient passes where x is inside [low, high]."""

    @staticmethod
    def forward(ctx, x, low, high):
        xp = array_module(x)
        inside = xp.ones(x.shape, dtype=bool)
        if low is not None:
            inside &= x >= low
        if high is not None:
            inside &= x <= high
        ctx.save_for_backward(inside)
        return xp.clip(x, low, high).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return array_module(grad).where(inside, grad, grad.dtype.type(0)), None, None


class Cast(Function):
    """Change dtype; the gradient is cast back (by the engine) to the input's dtype."""

    @staticmethod
    def forward(ctx, x, dtype):
        return x.astype(dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class Clone(Function):
    """A copy that stays in the graph."""

    @staticmethod
    def forward(ctx, x):
        return x.copy()

    @staticmethod
    def backward(ctx, grad):
        return grad


# --------------------------------------------------------------------------- public functions
def _binary(op, a, b):
    a, b, dtype = binary_operands(a, b)
    return op.apply(a, b, dtype)


def add(a, b):
    return _binary(Add, a, b)


def sub(a, b):
    return _binary(Sub, a, b)


def mul(a, b):
    return _binary(Mul, a, b)


def div(a, b):
    return _binary(Div, a, b)


def pow(a, b):
    return _binary(Pow, a, b)


def maximum(a, b):
    """Elementwise maximum of two tensors (broadcast)."""
    return _binary(Maximum, a, b)


def minimum(a, b):
    """Elementwise minimum of two tensors (broadcast)."""
    return _binary(Minimum, a, b)


def where(condition, a, b):
    """``a`` where ``condition`` is true, else ``b`` (all broadcast together)."""
    from .._tensor import Tensor

    if not isinstance(condition, Tensor) or condition.dtype != dtypes.bool_:
        raise TypeError(f"where: condition must be a bool Tensor, got {getattr(condition, 'dtype', type(condition).__name__)}")
    a, b, dtype = binary_operands(a, b)
    return Where.apply(condition, a, b, dtype)


def neg(x):
    return Neg.apply(x)


def exp(x):
    return Exp.apply(_floating(x, "exp"))


def log(x):
    return Log.apply(_floating(x, "log"))


def sqrt(x):
    return Sqrt.apply(_floating(x, "sqrt"))


def abs(x):
    return Abs.apply(x)


def sigmoid(x):
    return Sigmoid.apply(_floating(x, "sigmoid"))


def tanh(x):
    return Tanh.apply(_floating(x, "tanh"))


def relu(x):
    return Relu.apply(x)


def clamp(x, min=None, max=None):
    """Limit values to [min, max] (either may be None)."""
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    low = None if min is None else x.dtype.type(min)
    high = None if max is None else x.dtype.type(max)
    return Clamp.apply(x, low, high)


def _floating(x, name):
    """Transcendental functions of integer tensors give float32, as in PyTorch."""
    return x if dtypes.is_floating(x.dtype) else x.to(dtypes.default_float)
