"""``gradcheck``: compare an op's analytic gradient with central finite differences.

For a function f of some tensors, pick a random array ``v`` shaped like the
output (fixed by ``seed``) and check the gradient of the scalar
``L = sum(v * f(inputs))``:

- analytic: one ``backward`` of L gives dL/dx for every input x;
- numerical: for each element x[j], ``(L(x[j] + eps) - L(x[j] - eps)) / (2 eps)``.

A wrong backward disagrees with the finite differences for almost every
random ``v``, so one projection checks the whole Jacobian at the cost of one
backward. Everything runs in float64, where eps = 1e-6 leaves about 1e-10 of
rounding error, far below the tolerance.

dL/dx[j] is sum over k of v[k] * d out[k] / d x[j]: a mix of Jacobian entries
weighted by v, not the derivative one expects (for silu at x = 1, v[0] * 0.928,
not 0.928). So a failure also reports the plain Jacobian entry
``d out[k] / d x[j]`` -- analytic and numerical -- where the two differ most,
when the output is small enough (``JACOBIAN_LIMIT`` elements) for the one
backward per output element this takes.

What a failure says (a ``GradcheckError``):
- a backward returned a gradient that does not fit its input (wrong shape,
  not an array): the autograd engine's message, naming the Function;
- an input received no gradient at all (a backward returned None for it)
  although its numerical gradient is not zero;
- the numbers differ: which input, index, both values, the Jacobian entry,
  and the tolerance that was exceeded.
"""
from __future__ import annotations

import numpy as np

from . import dtypes

JACOBIAN_LIMIT = 1000  # outputs up to this many elements get the plain Jacobian entry in a failure report


class GradcheckError(AssertionError):
    """Raised when the analytic and numerical gradients disagree; the message says where and how."""


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0):
    """Check ``fn``'s gradients with respect to every input that requires grad.

    ``fn(*inputs)`` must return a Tensor (or a tuple whose first item is the
    differentiable output). Inputs that require grad must be float64 Tensors;
    they are perturbed in place while checking and restored, and their
    ``.grad`` is reset to None. Two values agree when
    ``|analytic - numerical| <= atol + rtol * |numerical|`` (``np.isclose``).
    Returns True, or raises GradcheckError (see the module docstring).
    """
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    checked = _inputs_to_check(inputs)
    output = _differentiable_output(fn)
    first = output(*inputs)
    direction = _like(first._array, np.random.default_rng(seed).standard_normal(first.shape))

    def projected():
        with _no_grad():
            return float((output(*inputs).double()._array * direction).sum())

    analytic = _analytic_gradients(first, direction, inputs, checked)
    for i, grad in zip(checked, analytic):
        numerical = _numerical_gradient(projected, inputs[i], eps)
        if grad is None:
            _check_no_gradient_needed(i, numerical, atol, rtol)
            continue
        bad = ~np.isclose(grad, numerical, atol=atol, rtol=rtol)
        if bad.any():
            where = _first(bad)
            entry = _jacobian_entry(output, inputs, i, np.ravel_multi_index(where, bad.shape), eps)
            raise GradcheckError(_mismatch_report(i, where, grad, numerical, bad, entry, atol, rtol, seed))
        inputs[i].grad = None
    return True


# --------------------------------------------------------------------------- the two gradients
def _inputs_to_check(inputs):
    """Indices of the inputs that require grad; each must be float64."""
    from ._tensor import Tensor

    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad, nothing to check")
    for i in checked:
        if inputs[i].dtype != dtypes.float64:
            raise TypeError(f"gradcheck: input {i} is {inputs[i].dtype}; finite differences need float64 inputs")
    return checked


def _differentiable_output(fn):
    """``fn`` reduced to its differentiable output (the first item of a tuple), checked to be a Tensor."""
    from ._tensor import Tensor

    def output(*args):
        out = fn(*args)
        out = out[0] if isinstance(out, tuple) else out
        if not isinstance(out, Tensor):
            raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
        return out

    return output


def _analytic_gradients(first, direction, inputs, checked):
    """d sum(direction * first) / d input for each checked input, by one backward: NumPy arrays, or None
    for an input no gradient reached."""
    from ._tensor import Tensor
    from .autograd.engine import InvalidGradientError

    for i in checked:
        inputs[i].grad = None
    if first.requires_grad:
        try:
            (first.double() * Tensor._from_array(direction)).sum().backward()
        except InvalidGradientError as error:
            raise GradcheckError(f"gradcheck failed: a backward returned a gradient that does not fit its input. {error}") from error
    return [None if inputs[i].grad is None else _host(inputs[i].grad) for i in checked]


def _numerical_gradient(evaluate, x, eps):
    """The central difference of the scalar ``evaluate()`` for every element of ``x``, shaped like ``x``."""
    flat = x._array.reshape(-1)  # a view: perturbing it perturbs the input in place
    return np.array([_central_difference(evaluate, flat, j, eps) for j in range(flat.size)]).reshape(x.shape)


def _central_difference(evaluate, flat, j, eps):
    """``(evaluate() at flat[j] + eps  -  evaluate() at flat[j] - eps) / (2 eps)``; flat[j] is restored."""
    original = float(flat[j])
    flat[j] = original + eps
    plus = evaluate()
    flat[j] = original - eps
    minus = evaluate()
    flat[j] = original
    return (plus - minus) / (2 * eps)


# --------------------------------------------------------------------------- verdicts
def _check_no_gradient_needed(i, numerical, atol, rtol):
    """An input that got no gradient passes only where its numerical gradient is zero (within tolerance)."""
    needed = ~np.isclose(0.0, numerical, atol=atol, rtol=rtol)
    if needed.any():
        where = _first(needed)
        raise GradcheckError(
            f"gradcheck failed for input {i} of shape {numerical.shape}: it received no gradient (a backward "
            f"returned None for it, or no recorded op connects it to the output), but its numerical gradient is "
            f"not zero: d sum(v * output) / d inputs[{i}]{_at(where)} is {numerical[where]:.10g} (v: a fixed "
            f"random array shaped like the output; {int(needed.sum())} of {needed.size} elements nonzero; "
            f"atol={atol}, rtol={rtol})"
        )


def _mismatch_report(i, where, analytic, numerical, bad, entry, atol, rtol, seed):
    """The message for input ``i`` whose gradients differ first at index ``where``."""
    a, n = analytic[where], numerical[where]
    lines = [
        f"gradcheck failed for input {i} of shape {analytic.shape} at index {where}: analytic {a:.10g}, "
        f"numerical {n:.10g} ({int(bad.sum())} of {bad.size} elements differ; atol={atol}, rtol={rtol})",
        f"  Both are d sum(v * output) / d inputs[{i}]{_at(where)}, where v is a fixed random array shaped like "
        f"the output (seed={seed}): one backward checks the whole Jacobian, weighted by v.",
    ]
    if entry is not None:
        k, a_k, n_k = entry
        lines.append(f"  The Jacobian entry that differs most, d output{_at(k)} / d inputs[{i}]{_at(where)}: "
                     f"analytic {a_k:.10g}, numerical {n_k:.10g}.")
    lines.append(f"  |analytic - numerical| = {abs(a - n):.3g} > atol + rtol * |numerical| = {atol + rtol * abs(n):.3g}.")
    return "\n".join(lines)


def _jacobian_entry(output, inputs, i, j, eps):
    """(k, analytic, numerical) of ``d output[k] / d inputs[i].flat[j]`` at the output index k where the two
    differ most; None when the output has more than JACOBIAN_LIMIT elements.

    The numerical column is one central difference of the whole output; the
    analytic one takes a backward per output element (a one-hot gradient).
    """
    out = output(*inputs)
    if out.numel() > JACOBIAN_LIMIT:
        return None

    def values():
        with _no_grad():
            return _host(output(*inputs).double())

    numerical = _central_difference(values, inputs[i]._array.reshape(-1), j, eps)
    analytic = np.zeros(out.shape)
    for k in np.ndindex(*out.shape):
        analytic[k] = _one_hot_gradient(out, inputs[i], k, j)
    k = np.unravel_index(np.argmax(np.abs(analytic - numerical)), out.shape)
    return tuple(int(c) for c in k), analytic[k], numerical[k]


def _one_hot_gradient(out, x, k, j):
    """d out[k] / d x.flat[j] by a backward of a one-hot gradient (the graph is kept for the next k)."""
    if not out.requires_grad:
        return 0.0
    seed = np.zeros(out.shape)
    seed[k] = 1.0
    x.grad = None
    out.backward(_like(out._array, seed), retain_graph=True)
    return 0.0 if x.grad is None else float(_host(x.grad).reshape(-1)[j])


# --------------------------------------------------------------------------- helpers
def _at(index):
    """``[0, 2]`` for the index (0, 2); nothing for the index () of a 0-d array."""
    return str(list(index)) if index else ""


def _first(mask):
    """Index (a tuple of ints) of the first True in ``mask``."""
    return tuple(int(w) for w in np.unravel_index(np.argmax(mask), mask.shape))


def _host(tensor):
    """A Tensor's values as a float64 NumPy array (copied from the GPU where needed)."""
    return np.asarray(tensor.detach().cpu()._array, dtype=np.float64)


def _like(array, values):
    """``values`` as a raw array on ``array``'s device (NumPy or CuPy)."""
    from .backend import array_module

    return array_module(array).asarray(values)


def _no_grad():
    from .autograd.grad_mode import no_grad

    return no_grad()
