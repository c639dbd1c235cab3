"""nn.init: gains, fans, and the distributions' bounds and spreads (PyTorch's formulas).

Statistical checks draw ~300k seeded samples; the tolerances sit ten or more
standard errors away from the expected value, so they can't flake.
"""
import math
import warnings

import numpy as np
import pytest

import minidl
import minidl.nn as nn
from minidl.nn import init
from tests.helpers import needs_torch, torch

BIG = (256, 128, 3, 3)  # fan_in 1152, fan_out 2304, 294912 samples


def _values(tensor):
    return tensor.detach().numpy().astype(np.float64).ravel()


def _assert_uniform(values, bound):
    assert np.abs(values).max() <= bound * (1 + 1e-6)
    assert np.abs(values).max() > 0.99 * bound  # the whole interval is used
    assert abs(values.std() / (bound / math.sqrt(3)) - 1) < 0.01
    assert abs(values.mean()) < 0.01 * bound


def _assert_normal(values, std):
    assert abs(values.std() / std - 1) < 0.01
    assert abs(values.mean()) < 0.01 * std
    assert abs(np.mean(np.abs(values) < std) - 0.6827) < 0.005  # the shape is Gaussian, not just the spread


def test_calculate_gain():
    assert init.calculate_gain("linear") == 1 and init.calculate_gain("conv2d") == 1
    assert init.calculate_gain("sigmoid") == 1
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("leaky_relu") == pytest.approx(math.sqrt(2 / (1 + 0.01**2)))
    assert init.calculate_gain("leaky_relu", math.sqrt(5)) == pytest.approx(math.sqrt(2 / 6))
    assert init.calculate_gain("selu") == pytest.approx(0.75)
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        init.calculate_gain("swish")


@needs_torch
@pytest.mark.parametrize("name,param", [("linear", None), ("tanh", None), ("relu", None), ("leaky_relu", None),
                                        ("leaky_relu", 0.2), ("selu", None), ("conv_transpose2d", None)])
def test_calculate_gain_matches_pytorch(name, param):
    assert init.calculate_gain(name, param) == pytest.approx(torch.nn.init.calculate_gain(name, param), rel=1e-12)


def test_fans():
    assert init._calculate_fan_in_and_fan_out(minidl.empty(*BIG)) == (128 * 9, 256 * 9)
    assert init._calculate_fan_in_and_fan_out(minidl.empty(10, 20)) == (20, 10)
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init._calculate_fan_in_and_fan_out(minidl.empty(5))


@pytest.mark.parametrize("mode,nonlinearity,a", [("fan_in", "leaky_relu", 0), ("fan_out", "relu", 0),
                                                 ("fan_in", "leaky_relu", math.sqrt(5))])
def test_kaiming_uniform_bounds(mode, nonlinearity, a):
    weight = init.kaiming_uniform_(minidl.empty(*BIG), a=a, mode=mode, nonlinearity=nonlinearity)
    fan = 128 * 9 if mode == "fan_in" else 256 * 9
    _assert_uniform(_values(weight), math.sqrt(3) * init.calculate_gain(nonlinearity, a) / math.sqrt(fan))


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_kaiming_normal_std(mode):
    weight = init.kaiming_normal_(minidl.empty(*BIG), mode=mode, nonlinearity="relu")
    fan = 128 * 9 if mode == "fan_in" else 256 * 9
    _assert_normal(_values(weight), math.sqrt(2) / math.sqrt(fan))


def test_xavier():
    gain = init.calculate_gain("tanh")
    std = gain * math.sqrt(2 / (128 * 9 + 256 * 9))
    _assert_uniform(_values(init.xavier_uniform_(minidl.empty(*BIG), gain=gain)), math.sqrt(3) * std)
    _assert_normal(_values(init.xavier_normal_(minidl.empty(*BIG), gain=gain)), std)


def test_basic_fills_keep_dtype_and_work_on_parameters():
    param = nn.Parameter(minidl.empty(300_000, dtype=minidl.float64))
    assert init.uniform_(param, -2.0, 3.0) is param  # in place, allowed although it requires grad
    values = _values(param)
    assert param.dtype == minidl.float64 and values.min() >= -2 and values.max() < 3
    assert abs(values.mean() - 0.5) < 0.02
    _assert_normal(_values(init.normal_(param, 0.0, 0.3)), 0.3)
    np.testing.assert_array_equal(_values(init.constant_(param, 1.5)), 1.5)
    np.testing.assert_array_equal(_values(init.zeros_(param)), 0)
    np.testing.assert_array_equal(_values(init.ones_(param)), 1)
    assert param.requires_grad


def test_seeded_init_is_reproducible():
    minidl.manual_seed(123)
    first = _values(nn.Conv2d(3, 4, 3).weight)
    minidl.manual_seed(123)
    np.testing.assert_array_equal(first, _values(nn.Conv2d(3, 4, 3).weight))


def test_empty_tensor_is_a_noop_with_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        init.kaiming_uniform_(minidl.empty(0, 3))
    assert any("zero-element" in str(w.message) for w in caught)


# ----------------------------------------------------------------------------- layers' default init
@pytest.mark.parametrize("make,fan_in", [
    (lambda: nn.Conv2d(64, 128, 3), 64 * 9),
    (lambda: nn.Conv2d(64, 128, 3, groups=4), 16 * 9),
    (lambda: nn.ConvTranspose2d(128, 64, 4), 64 * 16),  # PyTorch's fan_in uses weight dim 1 (out_channels)
    (lambda: nn.Linear(600, 500), 600),
])
def test_layer_default_init(make, fan_in):
    layer = make()
    bound = 1 / math.sqrt(fan_in)  # kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    _assert_uniform(_values(layer.weight), bound)
    bias = _values(layer.bias)
    assert np.abs(bias).max() <= bound and np.abs(bias).max() > 0.9 * bound


def test_batchnorm_default_init():
    bn = nn.BatchNorm2d(7)
    np.testing.assert_array_equal(_values(bn.weight), 1)
    np.testing.assert_array_equal(_values(bn.bias), 0)
    np.testing.assert_array_equal(_values(bn.running_mean), 0)
    np.testing.assert_array_equal(_values(bn.running_var), 1)
    assert bn.num_batches_tracked.item() == 0


@needs_torch
@pytest.mark.parametrize("name,args", [("Conv2d", (32, 64, 3)), ("ConvTranspose2d", (64, 32, 4, 2)),
                                       ("Linear", (300, 200))])
def test_layer_init_distribution_matches_pytorch(name, args):
    torch.manual_seed(0)
    ours = getattr(nn, name)(*args)
    theirs = getattr(torch.nn, name)(*args)
    ours_w, theirs_w = _values(ours.weight), theirs.weight.detach().numpy().astype(np.float64).ravel()
    assert ours_w.shape == theirs_w.shape
    # same support and spread (different generators, so compare distributions, not values)
    assert abs(np.abs(ours_w).max() / np.abs(theirs_w).max() - 1) < 0.01
    assert abs(ours_w.std() / theirs_w.std() - 1) < 0.03
    bound = np.abs(theirs.bias.detach().numpy()).max()
    assert np.abs(_values(ours.bias)).max() <= bound * 1.2
