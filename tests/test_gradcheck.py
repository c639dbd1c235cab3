"""minidl.gradcheck's verdicts: each kind of wrong backward gets a GradcheckError that says what is wrong."""
import importlib
import re

import numpy as np
import pytest

import minidl
from tests.broken_op import op_whose_backward_returns

gradcheck_module = importlib.import_module("minidl.gradcheck")  # `minidl.gradcheck` is the function


def leaf(*shape):
    return minidl.randn(*shape, dtype=minidl.float64, requires_grad=True)


def test_a_right_backward_passes():
    assert minidl.gradcheck(op_whose_backward_returns(lambda g: g * 2), [leaf(3, 4)])


def test_a_wrong_shaped_gradient_is_a_verdict_that_names_the_function():
    """(This was an IndexError from inside gradcheck's own report.) The verdict carries the engine's message."""
    fn = op_whose_backward_returns(lambda g: (g * 2).sum(axis=0))
    with pytest.raises(minidl.GradcheckError, match=r"does not fit its input\. Function BrokenBackward returned an "
                       r"invalid gradient at index 0 - got \[4\] but expected shape compatible with \[3, 4\]"):
        minidl.gradcheck(fn, [leaf(3, 4)])


def test_a_gradient_that_is_not_an_array_is_a_verdict():
    fn = op_whose_backward_returns(lambda g: 2.0)
    with pytest.raises(minidl.GradcheckError, match=r"index 0 - expected an array or None, got float"):
        minidl.gradcheck(fn, [leaf(3, 4)])


def test_a_missing_gradient_says_none_not_zero():
    fn = op_whose_backward_returns(lambda g: None)
    with pytest.raises(minidl.GradcheckError, match=r"input 0 of shape \(3, 4\): it received no gradient \(a backward "
                       r"returned None for it.*numerical gradient is not zero"):
        minidl.gradcheck(fn, [leaf(3, 4)])


def test_an_input_the_output_does_not_depend_on_needs_no_gradient():
    assert minidl.gradcheck(lambda a, b: a * 2, [leaf(3), leaf(2)])


def test_a_mismatch_names_the_projection_the_jacobian_entry_and_the_tolerance():
    fn = op_whose_backward_returns(lambda g: g * 3)
    with pytest.raises(minidl.GradcheckError) as failure:
        minidl.gradcheck(fn, [leaf(2, 2)], atol=1e-5, rtol=1e-3)
    message = str(failure.value)
    assert "gradcheck failed for input 0 of shape (2, 2) at index (0, 0): analytic " in message
    assert "4 of 4 elements differ; atol=1e-05, rtol=0.001" in message
    assert "d sum(v * output) / d inputs[0][0, 0], where v is a fixed random array shaped like the output (seed=0)" in message
    assert "d output[0, 0] / d inputs[0][0, 0]: analytic 3, numerical 2." in message
    assert "> atol + rtol * |numerical|" in message


def test_the_projected_values_are_v_times_the_jacobian_entry():
    """For an elementwise op, d sum(v * y) / dx[j] = v[j] * dy[j]/dx[j]: the message's two lines agree."""
    fn = op_whose_backward_returns(lambda g: g * 3)
    v = np.random.default_rng(5).standard_normal(3)
    with pytest.raises(minidl.GradcheckError) as failure:
        minidl.gradcheck(fn, [leaf(3)], seed=5)
    analytic, numerical = re.search(r"analytic (\S+), numerical (\S+) ", str(failure.value)).groups()
    assert float(analytic) == pytest.approx(3 * v[0]) and float(numerical) == pytest.approx(2 * v[0], rel=1e-6)


def test_the_second_input_is_named():
    class Broken(minidl.Function):
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(a, b)
            return a * b

        @staticmethod
        def backward(ctx, grad):
            a, b = ctx.saved_tensors
            return grad * b, grad * b  # the second should be grad * a

    with pytest.raises(minidl.GradcheckError, match=r"input 1 of shape \(3,\) at index"):
        minidl.gradcheck(Broken.apply, [leaf(3), leaf(3)])


def test_a_large_output_is_reported_without_jacobian_entries(monkeypatch):
    monkeypatch.setattr(gradcheck_module, "JACOBIAN_LIMIT", 3)
    fn = op_whose_backward_returns(lambda g: g * 3)
    with pytest.raises(minidl.GradcheckError) as failure:
        minidl.gradcheck(fn, [leaf(4)])
    assert "where v is a fixed random array" in str(failure.value)
    assert "Jacobian entry" not in str(failure.value)


def test_a_0d_input_and_output():
    fn = op_whose_backward_returns(lambda g: g * 3)
    with pytest.raises(minidl.GradcheckError, match=r"d output / d inputs\[0\]: analytic 3, numerical 2\."):
        minidl.gradcheck(fn, [minidl.tensor(0.5, dtype=minidl.float64, requires_grad=True)])
