"""``gradcheck``: compare an op's analytic gradient with central finite differences.

For a function f of some tensors, pick a random direction ``v`` in the output
space and check the gradient of the scalar ``L = <v, f(inputs)>``:

- analytic: one ``backward`` of L gives dL/dx for every input x;
- numerical: for each element x_i, ``(L(x_i + eps) - L(x_i - eps)) / (2 eps)``.

A wrong backward disagrees with the finite differences for almost every
random ``v``, so one projection checks the whole Jacobian at the cost of one
backward. Everything runs in float64, where eps = 1e-6 leaves about 1e-10 of
rounding error, far below the tolerance.
"""
from __future__ import annotations

import numpy as np

from . import dtypes


class GradcheckError(AssertionError):
    """Raised when the analytic and numerical gradients disagree; the message says where."""


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0):
    """Check ``fn``'s gradients with respect to every input that requires grad.

    ``fn(*inputs)`` must return a Tensor (or a tuple whose first item is the
    differentiable output). Inputs that require grad must be float64 Tensors.
    Returns True, or raises GradcheckError naming the input, the element index
    and both values.
    """
    from ._tensor import Tensor

    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad, nothing to check")
    for i in checked:
        if inputs[i].dtype != dtypes.float64:
            raise TypeError(f"gradcheck: input {i} is {inputs[i].dtype}; finite differences need float64 inputs")

    def output(*args):
        out = fn(*args)
        return out[0] if isinstance(out, tuple) else out

    first = output(*inputs)
    if not isinstance(first, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(first).__name__}")
    direction = np.random.default_rng(seed).standard_normal(first.shape)
    xp_direction = Tensor._from_array(_like(first._array, direction))

    def projected(*args):
        with _no_grad():
            return float((output(*args).double()._array * xp_direction._array).sum())

    for i in checked:
        inputs[i].grad = None
    if first.requires_grad:
        (first.double() * xp_direction).sum().backward()

    for i in checked:
        x = inputs[i]
        analytic = np.zeros(x.shape) if x.grad is None else np.asarray(x.grad.detach().cpu()._array, dtype=np.float64)
        numerical = np.zeros(x.shape)
        flat = x._array.reshape(-1)  # a view: perturbing it perturbs the input in place
        for j in range(flat.size):
            original = float(flat[j])
            flat[j] = original + eps
            plus = projected(*inputs)
            flat[j] = original - eps
            minus = projected(*inputs)
            flat[j] = original
            numerical.reshape(-1)[j] = (plus - minus) / (2 * eps)
        bad = ~np.isclose(analytic, numerical, atol=atol, rtol=rtol)
        if bad.any():
            where = np.unravel_index(np.argmax(bad), x.shape)
            raise GradcheckError(
                f"gradcheck failed for input {i} of shape {tuple(x.shape)} at index {tuple(int(w) for w in where)}: "
                f"analytic {analytic[where]:.10g}, numerical {numerical[where]:.10g} "
                f"({int(bad.sum())} of {bad.size} elements differ; atol={atol}, rtol={rtol})"
            )
        x.grad = None
    return True


def _like(array, values):
    from .backend import array_module

    return array_module(array).asarray(values)


def _no_grad():
    from .autograd.grad_mode import no_grad

    return no_grad()
