"""Activations of minidl.nn.functional: gradients, laws, PyTorch parity, bad inputs."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import minidl
from minidl.nn import functional as F
from minidl.testing import float_arrays, shapes, tensors
from tests.helpers import assert_close, needs_torch, to_numpy, torch

# (minidl function, torch function name, kwargs, kinks: where the derivative jumps)
POINTWISE = {
    "leaky_relu": (F.leaky_relu, "leaky_relu", {"negative_slope": 0.2}, (0.0,)),
    "relu6": (F.relu6, "relu6", {}, (0.0, 6.0)),
    "hardsigmoid": (F.hardsigmoid, "hardsigmoid", {}, (-3.0, 3.0)),
    "hardswish": (F.hardswish, "hardswish", {}, (-3.0, 3.0)),
    "elu": (F.elu, "elu", {"alpha": 0.7}, (0.0,)),
}


def away_from_kinks(array, kinks, margin=1e-3):
    """Move values within ``margin`` of a kink off it, where finite differences would straddle it."""
    array = array.copy()
    for kink in kinks:
        near = np.abs(array - kink) < margin
        array[near] = kink + 0.05
    return array


# --------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("name", sorted(POINTWISE))
@given(values=float_arrays(shapes(0, 3, max_side=4), low=-8.0, high=8.0))
def test_pointwise_gradient(name, values):
    fn, _, kwargs, kinks = POINTWISE[name]
    x = minidl.tensor(away_from_kinks(values, kinks), requires_grad=True)
    assert minidl.gradcheck(lambda t: fn(t, **kwargs), [x])


@given(slope=st.floats(-2.0, 2.0), values=float_arrays(shapes(1, 2, max_side=4), away_from_zero=1e-3))
def test_leaky_relu_gradient_for_any_slope(slope, values):
    x = minidl.tensor(values, requires_grad=True)
    assert minidl.gradcheck(lambda t: F.leaky_relu(t, slope), [x])


@st.composite
def tensor_and_dim(draw, max_dims=3):
    x = draw(tensors(min_dims=1, max_dims=max_dims, max_side=4))
    return x, draw(st.integers(-x.ndim, x.ndim - 1))


@pytest.mark.parametrize("fn", [F.softmax, F.log_softmax], ids=["softmax", "log_softmax"])
@given(case=tensor_and_dim())
def test_softmax_family_gradient(fn, case):
    x, dim = case
    assert minidl.gradcheck(lambda t: fn(t, dim), [x])


# --------------------------------------------------------------------------- laws
@given(case=tensor_and_dim())
def test_softmax_slices_are_probability_vectors(case):
    x, dim = case
    y = F.softmax(x.detach(), dim).numpy()
    assert (y >= 0).all()
    np.testing.assert_allclose(y.sum(axis=dim), 1.0, rtol=1e-12)


@given(case=tensor_and_dim())
def test_log_softmax_is_log_of_softmax(case):
    x, dim = case
    assert_close(F.log_softmax(x, dim), np.log(F.softmax(x, dim).detach().numpy()), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [minidl.float32, minidl.float64])
def test_softmax_family_is_stable_for_huge_logits(device, dtype):
    logits = minidl.tensor([[1e4, -1e4, 0.0], [1e4, 1e4, -1e4], [-1e4, -1e4, -1e4]], dtype=dtype, device=device)
    probs = to_numpy(F.softmax(logits, 1))
    log_probs = to_numpy(F.log_softmax(logits, 1))
    assert np.isfinite(probs).all() and np.isfinite(log_probs).all()
    np.testing.assert_allclose(probs, [[1, 0, 0], [0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3]], atol=1e-6)
    np.testing.assert_allclose(log_probs[0], [0, -2e4, -1e4], rtol=1e-6)
    np.testing.assert_allclose(log_probs[1, :2], np.log(0.5), rtol=1e-5)
    assert probs.dtype == dtype and log_probs.dtype == dtype


def test_softmax_of_huge_logits_has_finite_gradient():
    x = minidl.tensor([[1e4, -1e4, 3.0]], dtype=minidl.float64, requires_grad=True)
    F.log_softmax(x, -1)[0, 1].backward()
    assert np.isfinite(x.grad.numpy()).all()
    np.testing.assert_allclose(x.grad.numpy(), [[-1.0, 1.0, 0.0]], atol=1e-12)


def test_softmax_of_a_scalar_is_one():
    assert F.softmax(minidl.tensor(3.0), 0).item() == 1.0
    assert F.log_softmax(minidl.tensor(3.0), -1).item() == 0.0


@pytest.mark.parametrize("name", sorted(POINTWISE))
def test_pointwise_keeps_dtype(device, name):
    fn, _, kwargs, _ = POINTWISE[name]
    x = minidl.tensor([-7.0, -3.0, -0.5, 0.0, 0.5, 3.0, 7.0], device=device, requires_grad=True)
    y = fn(x, **kwargs)
    y.sum().backward()
    assert y.dtype == minidl.float32 and x.grad.dtype == minidl.float32


def test_elu_does_not_overflow_for_large_inputs():
    with np.errstate(over="raise"):
        y = F.elu(minidl.tensor([1e3, -1e3], dtype=minidl.float32))
    np.testing.assert_allclose(y.numpy(), [1e3, -1.0])


# --------------------------------------------------------------------------- PyTorch parity
@needs_torch
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-10), ("float32", 1e-5)])
@pytest.mark.parametrize("name", sorted(POINTWISE))
def test_pointwise_matches_torch(name, dtype, tol):
    fn, torch_name, kwargs, _ = POINTWISE[name]
    values = np.concatenate([np.linspace(-8, 8, 161), [-3.0, 0.0, 3.0, 6.0]]).astype(dtype)
    upstream = np.random.default_rng(1).standard_normal(values.shape).astype(dtype)
    x = minidl.tensor(values, requires_grad=True)
    fn(x, **kwargs).backward(minidl.tensor(upstream))
    xt = torch.tensor(values, requires_grad=True)
    getattr(torch.nn.functional, torch_name)(xt, **kwargs).backward(torch.tensor(upstream))
    assert_close(fn(x.detach(), **kwargs), getattr(torch.nn.functional, torch_name)(xt.detach(), **kwargs), rtol=tol, atol=tol)
    # torch's hardsigmoid backward multiplies by the float32 constant 1.0f/6.0f even in
    # float64, 3e-8 off; minidl's gradient is the exact 1/6.
    grad_tol = max(tol, 1e-7) if name == "hardsigmoid" else tol
    assert_close(x.grad, xt.grad, rtol=grad_tol, atol=tol)


@needs_torch
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-10), ("float32", 1e-5)])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_family_matches_torch(name, dim, dtype, tol):
    rng = np.random.default_rng(2)
    values = (rng.standard_normal((3, 4, 5)) * 5).astype(dtype)
    upstream = rng.standard_normal(values.shape).astype(dtype)
    x = minidl.tensor(values, requires_grad=True)
    y = getattr(F, name)(x, dim)
    y.backward(minidl.tensor(upstream))
    xt = torch.tensor(values, requires_grad=True)
    yt = getattr(torch.nn.functional, name)(xt, dim)
    yt.backward(torch.tensor(upstream))
    assert_close(y, yt, rtol=tol, atol=tol)
    assert_close(x.grad, xt.grad, rtol=tol, atol=tol)


# --------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("fn", [F.relu6, F.hardswish, lambda t: F.softmax(t, 0), lambda t: F.leaky_relu(t)])
def test_integer_inputs_are_rejected(fn):
    with pytest.raises(TypeError, match="floating point"):
        fn(minidl.tensor([1, 2, 3]))


def test_softmax_dim_out_of_range():
    with pytest.raises(IndexError, match="Dimension out of range"):
        F.softmax(minidl.zeros(2, 3), 2)
    with pytest.raises(TypeError, match="dim must be an int"):
        F.log_softmax(minidl.zeros(2, 3), (0, 1))


# --------------------------------------------------------------------------- one way to write an elementwise op
def test_one_base_class_serves_every_pointwise_op():
    """exp and relu (minidl.ops) and the activations with parameters (F) are all written as ``Pointwise``."""
    from minidl.nn.functional.activation import Elu, Hardswish, LeakyRelu
    from minidl.ops.elementwise import Exp, Pointwise, Relu, Sigmoid

    assert all(issubclass(op, Pointwise) for op in (Exp, Relu, Sigmoid, LeakyRelu, Elu, Hardswish))


def test_a_pointwise_op_with_a_parameter_that_keeps_its_output():
    """softplus_beta(x) = log(1 + e^(beta x)) / beta; its derivative 1 - e^(-beta y) needs only y and beta."""
    from minidl.ops.elementwise import Pointwise

    class SoftplusBeta(Pointwise):
        keeps = "y"
        f = staticmethod(lambda xp, x, beta: xp.logaddexp(0, beta * x) / beta)
        df = staticmethod(lambda xp, x, y, beta: 1 - xp.exp(-beta * y))

    x = minidl.tensor(np.linspace(-2, 2, 7), requires_grad=True)
    y = SoftplusBeta.apply(x, 1.5)
    assert y.grad_fn.saved_tensors[0] is None  # x is not kept
    assert minidl.gradcheck(lambda t: SoftplusBeta.apply(t, 1.5), [x])
