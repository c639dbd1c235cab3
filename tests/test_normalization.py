"""batch_norm: gradients (input, weight, bias; training and eval), laws, PyTorch parity, bad inputs."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import minidl
from minidl.nn import functional as F
from minidl.testing import float_arrays
from tests.helpers import assert_close, needs_torch, to_numpy, torch

SHAPES = [(6, 3), (4, 3, 5), (2, 3, 4, 5)]  # (N, C), (N, C, L), (N, C, H, W)


def channel_axes(shape):
    return (0,) + tuple(range(2, len(shape)))


def per_channel(values, ndim):
    """(C,) -> (1, C, 1, ...) to broadcast against an (N, C, *) array."""
    return np.asarray(values).reshape((1, -1) + (1,) * (ndim - 2))


@st.composite
def batch_norm_cases(draw):
    """An input (N, C, *) with values spread out per channel, (C,) parameters and a mode."""
    training = draw(st.booleans())
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    spatial = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    if training and n * int(np.prod(spatial)) < 2:
        n = 2  # training needs more than one value per channel
    shape = (n, c) + spatial
    # a ramp keeps every channel's variance well away from 0, where 1/sigma is steep
    x = draw(float_arrays(shape)) + np.linspace(0, 2, int(np.prod(shape))).reshape(shape)
    params = [draw(float_arrays((c,))) for _ in range(2)]
    running_var = draw(float_arrays((c,), low=0.5, high=2.0))
    affine = draw(st.booleans())
    return x, params, running_var, training, affine


# --------------------------------------------------------------------------- gradients
@given(case=batch_norm_cases())
def test_batch_norm_gradient(case):
    x, (weight, bias), running_var, training, affine = case
    c = x.shape[1]
    inputs = [minidl.tensor(x, requires_grad=True)]
    if affine:
        inputs += [minidl.tensor(weight, requires_grad=True), minidl.tensor(bias, requires_grad=True)]
    running_mean, running_var = minidl.tensor(np.zeros(c)), minidl.tensor(running_var)

    def fn(x, weight=None, bias=None):
        return F.batch_norm(x, running_mean, running_var, weight, bias, training=training)

    assert minidl.gradcheck(fn, inputs)


@given(case=batch_norm_cases())
def test_batch_norm_gradient_without_running_stats(case):
    x, (weight, bias), _, _, _ = case
    if x.size // x.shape[1] < 2:
        return
    inputs = [minidl.tensor(a, requires_grad=True) for a in (x, weight, bias)]
    assert minidl.gradcheck(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=False), inputs)


def test_only_the_requested_gradients_are_computed():
    x = minidl.randn(4, 3, 5, dtype=minidl.float64)
    weight = minidl.ones(3, dtype=minidl.float64, requires_grad=True)
    F.batch_norm(x, None, None, weight, None, training=True).sum().backward()
    assert x.grad is None and weight.grad is not None


# --------------------------------------------------------------------------- laws
@pytest.mark.parametrize("shape", SHAPES)
def test_training_output_is_standardised_per_channel(device, shape):
    x = minidl.tensor(np.random.default_rng(0).normal(3.0, 2.5, shape), device=device)
    y = to_numpy(F.batch_norm(x, None, None, training=True, eps=0.0))
    axes = channel_axes(shape)
    np.testing.assert_allclose(y.mean(axis=axes), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=axes), 1, rtol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_running_stats_follow_the_moving_average(device, shape):
    rng = np.random.default_rng(1)
    c = shape[1]
    mean0, var0 = rng.normal(size=c), rng.uniform(0.5, 2, c)
    running_mean, running_var = minidl.tensor(mean0, device=device), minidl.tensor(var0, device=device)
    x = rng.normal(1.0, 3.0, shape)
    F.batch_norm(minidl.tensor(x, device=device), running_mean, running_var, training=True, momentum=0.2)
    axes = channel_axes(shape)
    assert_close(running_mean, 0.8 * mean0 + 0.2 * x.mean(axis=axes), rtol=1e-12)
    assert_close(running_var, 0.8 * var0 + 0.2 * x.var(axis=axes, ddof=1), rtol=1e-12)  # unbiased
    assert running_mean.grad_fn is None and not running_mean.requires_grad


def test_running_stats_are_updated_in_place():
    running_mean, running_var = minidl.zeros(3), minidl.ones(3)
    arrays = running_mean._array, running_var._array
    x = minidl.randn(4, 3, requires_grad=True)
    F.batch_norm(x, running_mean, running_var, training=True)
    assert running_mean._array is arrays[0] and running_var._array is arrays[1]
    assert not np.allclose(running_mean.numpy(), 0)


@pytest.mark.parametrize("shape", SHAPES)
def test_eval_uses_the_running_stats_and_leaves_them_alone(shape):
    rng = np.random.default_rng(2)
    c = shape[1]
    x, mean, var, weight, bias = rng.normal(size=shape), rng.normal(size=c), rng.uniform(0.5, 2, c), rng.normal(size=c), rng.normal(size=c)
    running_mean, running_var = minidl.tensor(mean), minidl.tensor(var)
    y = F.batch_norm(minidl.tensor(x), running_mean, running_var, minidl.tensor(weight), minidl.tensor(bias), eps=1e-3)
    nd = len(shape)
    expected = (x - per_channel(mean, nd)) / np.sqrt(per_channel(var, nd) + 1e-3) * per_channel(weight, nd) + per_channel(bias, nd)
    assert_close(y, expected, rtol=1e-12)
    assert_close(running_mean, mean, rtol=0, atol=0)
    assert_close(running_var, var, rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(0, 3), (0, 3, 5), (0, 3, 4, 5)])
def test_eval_of_an_empty_batch_gives_an_empty_result_and_gradient(shape):
    x = minidl.zeros(*shape, requires_grad=True)
    y = F.batch_norm(x, minidl.zeros(3), minidl.ones(3), minidl.ones(3), minidl.zeros(3))
    assert y.shape == shape
    y.sum().backward()
    assert x.grad.shape == shape


def test_without_running_stats_both_modes_use_the_batch():
    x = minidl.randn(5, 4, 3)
    assert_close(F.batch_norm(x, None, None, training=False), F.batch_norm(x, None, None, training=True), rtol=0, atol=0)


def test_float32_stays_float32():
    x = minidl.randn(4, 3, 6, 6, requires_grad=True)
    weight, bias = minidl.ones(3, requires_grad=True), minidl.zeros(3, requires_grad=True)
    running_mean, running_var = minidl.zeros(3), minidl.ones(3)
    y = F.batch_norm(x, running_mean, running_var, weight, bias, training=True)
    y.backward(minidl.randn(*y.shape))
    assert {t.dtype for t in (y, x.grad, weight.grad, bias.grad, running_mean, running_var)} == {minidl.float32}


# --------------------------------------------------------------------------- PyTorch parity
@needs_torch
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-10), ("float32", 1e-5)])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_torch_over_training_steps_then_eval(shape, dtype, tol):
    rng = np.random.default_rng(3)
    c = shape[1]
    weight, bias = rng.normal(size=c).astype(dtype), rng.normal(size=c).astype(dtype)
    ours = [minidl.tensor(weight, requires_grad=True), minidl.tensor(bias, requires_grad=True)]
    theirs = [torch.tensor(weight, requires_grad=True), torch.tensor(bias, requires_grad=True)]
    ours_running = [minidl.zeros(c, dtype=dtype), minidl.ones(c, dtype=dtype)]
    theirs_running = [torch.zeros(c, dtype=getattr(torch, dtype)), torch.ones(c, dtype=getattr(torch, dtype))]

    for step, training in enumerate([True, True, True, False]):
        x = (rng.normal(size=shape) * (step + 1) + step).astype(dtype)
        upstream = rng.normal(size=shape).astype(dtype)
        x_ours, x_theirs = minidl.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        y_ours = F.batch_norm(x_ours, *ours_running, *ours, training=training, momentum=0.3)
        y_theirs = torch.nn.functional.batch_norm(x_theirs, *theirs_running, *theirs, training=training, momentum=0.3)
        y_ours.backward(minidl.tensor(upstream))
        y_theirs.backward(torch.tensor(upstream))
        assert_close(y_ours, y_theirs, rtol=tol, atol=tol)
        assert_close(x_ours.grad, x_theirs.grad, rtol=tol, atol=tol)
        for a, b in zip(ours_running + ours, theirs_running + theirs):
            assert_close(a if a.grad is None else a.grad, b if b.grad is None else b.grad, rtol=tol, atol=tol * 10)
        for parameter in ours + theirs:
            parameter.grad = None


# --------------------------------------------------------------------------- bad inputs
def test_one_value_per_channel_in_training():
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        F.batch_norm(minidl.randn(1, 3), minidl.zeros(3), minidl.ones(3), training=True)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        F.batch_norm(minidl.randn(1, 3, 1, 1), None, None, training=True)
    F.batch_norm(minidl.randn(1, 3), minidl.zeros(3), minidl.ones(3), training=False)  # fine in eval


@pytest.mark.parametrize("name", ["running_mean", "running_var", "weight", "bias"])
def test_wrong_channel_count(name):
    args = dict(running_mean=minidl.zeros(3), running_var=minidl.ones(3), weight=minidl.ones(3), bias=minidl.zeros(3))
    args[name] = minidl.ones(4)
    with pytest.raises(ValueError, match=rf"{name} should have shape \(3,\).*got shape \(4,\)"):
        F.batch_norm(minidl.randn(2, 3, 5), training=True, **args)


def test_bad_input_rank_dtype_and_half_given_stats():
    with pytest.raises(ValueError, match=r"\(N, C\).*\(5,\)"):
        F.batch_norm(minidl.randn(5), None, None, training=True)
    with pytest.raises(TypeError, match="floating point"):
        F.batch_norm(minidl.tensor([[1, 2], [3, 4]]), None, None, training=True)
    with pytest.raises(ValueError, match="both running_mean and running_var"):
        F.batch_norm(minidl.randn(4, 3), minidl.zeros(3), None, training=True)


@pytest.mark.parametrize("training", [True, False])
def test_a_leaf_input_gets_its_gradient_without_a_copy(training, monkeypatch):
    """The input gradient is made in x's shape, an array of its own: the engine stores it as x.grad as it is
    (a reshaped view would be copied, 59 MB for 8x32x240x240)."""
    from minidl.autograd import engine
    arrived = []
    store = engine._accumulate_into_leaf
    monkeypatch.setattr(engine, "_accumulate_into_leaf", lambda leaf, grad, handed_out: (
        arrived.append(grad.base is None), store(leaf, grad, handed_out)))
    x = minidl.randn(2, 3, 4, 5, requires_grad=True)
    F.batch_norm(x, minidl.zeros(3), minidl.ones(3), training=training).sum().backward()
    assert arrived == [True], "the input gradient reached the leaf as a view: the engine copied it"


@pytest.mark.parametrize("eps", [-1e-5, float("nan"), float("inf"), "1e-5", True])
def test_an_eps_that_is_not_a_finite_number_at_least_zero_is_refused(eps):
    with pytest.raises(ValueError, match=r"batch_norm: eps must be a finite number >= 0, got"):
        F.batch_norm(minidl.randn(2, 3, 4, 4), None, None, training=True, eps=eps)
    with pytest.raises(ValueError, match=r"BatchNorm2d: eps must be a finite number >= 0"):
        minidl.nn.BatchNorm2d(3, eps=eps)


def test_eps_zero_on_a_constant_channel_is_an_error_not_silent_nan():
    x = minidl.randn(2, 3, 4, 4)
    x._array[:, 1] = 5.0  # channel 1 constant: var 0
    with pytest.raises(ValueError, match=r"channel\(s\) \[1\] are constant in this batch and eps=0"):
        F.batch_norm(x, None, None, training=True, eps=0)
    assert np.isfinite(F.batch_norm(x, None, None, training=True, eps=1e-5).numpy()).all()


def test_the_layer_passes_its_settings_to_batch_norm_by_name(monkeypatch):
    seen = {}
    monkeypatch.setattr(F, "batch_norm", lambda input, **kwargs: seen.update(kwargs) or input)
    layer = minidl.nn.BatchNorm2d(3, eps=1e-3, momentum=0.2)
    layer(minidl.randn(2, 3, 4, 4))
    assert seen["eps"] == 1e-3 and seen["momentum"] == 0.2 and seen["training"] is True
    assert set(seen) == {"running_mean", "running_var", "weight", "bias", "training", "momentum", "eps"}
