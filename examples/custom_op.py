"""Writing your own op, and testing it: SiLU as a minidl ``Function``.

    python examples/custom_op.py    # runs the checks below, then shows what each broken backward prints

    silu(x)  = x * s,                          s = sigmoid(x) = 1 / (1 + e^-x)
    silu'(x) = s + x * s * (1 - s) = s * (1 + x * (1 - s))

An op is a ``Function`` subclass with two static methods side by side:
``forward`` computes the output from raw NumPy (or CuPy) arrays and saves on
``ctx`` what backward will need; ``backward`` receives dLoss/dy, shaped like
the output, and returns dLoss/dx, shaped like x -- one gradient per forward
argument (None for an argument that needs none). ``SiLU.apply(tensor)``
runs it on Tensors and records it in the graph.

Then two tests: ``minidl.gradcheck`` compares backward with finite
differences at one input, and a hypothesis test (strategies from
``minidl.testing``) repeats that at inputs it draws, shrinking a failure to
the smallest input that still fails. The suite runs these same functions
(tests/test_custom_op.py).
"""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings

import minidl
from minidl.backend import array_module
from minidl.ops.elementwise import Pointwise
from minidl.testing import tensors


# --------------------------------------------------------------------------- the op
class SiLU(minidl.Function):
    """silu(x) = x * sigmoid(x);  dx = grad * s * (1 + x * (1 - s))."""

    @staticmethod
    def forward(ctx, x):                      # x: a NumPy/CuPy array, not a Tensor
        xp = array_module(x)                  # numpy or cupy: the same code runs on both
        s = 1 / (1 + xp.exp(-x))
        ctx.save_for_backward(x, s)           # what backward needs; freed after backward
        return x * s

    @staticmethod
    def backward(ctx, grad):                  # grad: dLoss/dy, shaped like y
        x, s = ctx.saved_tensors
        return grad * s * (1 + x * (1 - s))   # dLoss/dx, shaped like x


def silu(x):
    """SiLU of a Tensor, differentiable."""
    return SiLU.apply(x)


class SiLUPointwise(Pointwise):
    """The same op in the shorthand for elementwise ops: give f and its derivative df, and ``Pointwise``
    writes forward (saving x, as ``keeps`` says) and backward (grad * df)."""

    keeps = "x"
    f = staticmethod(lambda xp, x: x / (1 + xp.exp(-x)))

    @staticmethod
    def df(xp, x, y):                         # y is None: only x is kept
        s = 1 / (1 + xp.exp(-x))
        return s * (1 + x * (1 - s))


# --------------------------------------------------------------------------- its tests
def test_silu_values():
    x = minidl.tensor([-1.0, 0.0, 1.0, 2.0], dtype=minidl.float64)
    np.testing.assert_allclose(silu(x).numpy(), [-0.2689414214, 0.0, 0.7310585786, 1.7615941560])


def test_silu_gradient():
    x = minidl.randn(3, 4, dtype=minidl.float64, requires_grad=True)  # gradcheck needs float64
    assert minidl.gradcheck(silu, [x])


@settings(deadline=None)  # gradcheck runs the op twice per input element: some draws take a while
@given(tensors(min_dims=0, max_dims=3, max_side=4))
def test_silu_gradient_at_drawn_inputs(x):
    assert minidl.gradcheck(silu, [x])


@given(tensors(min_dims=0, max_dims=3, max_side=4))
def test_the_pointwise_shorthand_is_the_same_op(x):
    np.testing.assert_allclose(SiLUPointwise.apply(x).detach().numpy(), silu(x).detach().numpy(), rtol=1e-12)
    assert minidl.gradcheck(SiLUPointwise.apply, [x])


# --------------------------------------------------------------------------- broken on purpose
BROKEN_BACKWARDS = {
    # name: (the backward's return line, the backward)
    "dropped term": ("grad * s", lambda grad, x, s: grad * s),
    "wrong sign": ("grad * s * (1 - x * (1 - s))", lambda grad, x, s: grad * s * (1 - x * (1 - s))),
    "wrong shape": ("(grad * s * (1 + x * (1 - s))).sum(axis=0)",
                    lambda grad, x, s: (grad * s * (1 + x * (1 - s))).sum(axis=0)),
    "None": ("None", lambda grad, x, s: None),
    "wrong dtype: float32": ("(grad * s * (1 + x * (1 - s))).astype(np.float32)",
                             lambda grad, x, s: (grad * s * (1 + x * (1 - s))).astype(np.float32)),
    "wrong dtype: complex": ("(grad * s * (1 + x * (1 - s))).astype(np.complex128)",
                             lambda grad, x, s: (grad * s * (1 + x * (1 - s))).astype(np.complex128)),
    "a Tensor, not an array": ("minidl.tensor(grad * s * (1 + x * (1 - s)))",
                               lambda grad, x, s: minidl.tensor(grad * s * (1 + x * (1 - s)))),
}


def silu_with_backward(wrong_backward):
    """SiLU whose backward returns ``wrong_backward(grad, x, s)`` (its node is still ``SiLUBackward``)."""

    class BrokenSiLU(SiLU):
        @staticmethod
        def backward(ctx, grad):
            x, s = ctx.saved_tensors
            return wrong_backward(grad, x, s)

    BrokenSiLU.__name__ = "SiLU"
    return BrokenSiLU.apply


def what_it_prints(name):
    """(what ``silu(x).sum().backward()`` gives, what ``minidl.gradcheck`` gives) for a broken backward,
    at x = 1 everywhere in a (3, 4) tensor, where silu'(1) = 0.9277."""
    op = silu_with_backward(BROKEN_BACKWARDS[name][1])
    x = minidl.tensor(np.ones((3, 4)), requires_grad=True)
    return _outcome(lambda: _backward_result(op, x)), _outcome(lambda: minidl.gradcheck(op, [x]))


def _backward_result(op, x):
    op(x).sum().backward()
    return "no error; x.grad is None" if x.grad is None else f"no error; x.grad: {tuple(x.grad.shape)} {x.grad.dtype}"


def _outcome(run):
    try:
        result = run()
    except Exception as error:  # the point is to show any error as the student sees it
        return f"{type(error).__name__}: {error}"
    return "passes" if result is True else result


def main():
    for check in (test_silu_values, test_silu_gradient, test_silu_gradient_at_drawn_inputs,
                  test_the_pointwise_shorthand_is_the_same_op):
        check()
        print(f"ok  {check.__name__}")
    for name, (code, _) in BROKEN_BACKWARDS.items():
        backward, gradcheck = what_it_prints(name)
        print(f"\n## {name}: backward returns {code}\nbackward():  {backward}\ngradcheck:   {gradcheck}")


if __name__ == "__main__":
    main()
