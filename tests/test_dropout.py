"""dropout and dropout2d: gradients, statistical laws, reproducibility, bad inputs."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import minidl
from minidl.nn import functional as F
from minidl.testing import tensors
from tests.helpers import needs_torch, to_numpy, torch


def seeded(fn, seed=1):
    """fn with the RNG reseeded before every call, so that every call draws the same mask."""

    def call(*args, **kwargs):
        minidl.manual_seed(seed)
        return fn(*args, **kwargs)

    return call


# --------------------------------------------------------------------------- gradients
@given(x=tensors(min_dims=1, max_dims=3, max_side=4), p=st.sampled_from([0.0, 0.3, 0.5, 0.9]))
def test_dropout_gradient(x, p):
    assert minidl.gradcheck(seeded(lambda t: F.dropout(t, p)), [x])


@given(x=tensors(min_dims=4, max_dims=4, max_side=3), p=st.sampled_from([0.3, 0.5]))
def test_dropout2d_gradient(x, p):
    assert minidl.gradcheck(seeded(lambda t: F.dropout2d(t, p)), [x])


def test_gradient_is_the_mask():
    x = minidl.randn(50, 40, dtype=minidl.float64, requires_grad=True)
    y = F.dropout(x, 0.4)
    y.sum().backward()
    kept = y.detach().numpy() != 0
    np.testing.assert_allclose(x.grad.numpy(), np.where(kept, 1 / 0.6, 0.0))


# --------------------------------------------------------------------------- laws
@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_keeps_the_expected_value(device, p):
    n = 200_000
    y = to_numpy(F.dropout(minidl.ones(n, device=device, dtype=minidl.float64), p))
    # each output is 1/(1-p) with probability 1-p, else 0: mean 1, variance p/(1-p)
    mean_std = np.sqrt(p / (1 - p) / n)
    assert abs(y.mean() - 1) < 5 * mean_std
    # zeros ~ Binomial(n, p)
    zero_fraction = (y == 0).mean()
    assert abs(zero_fraction - p) < 5 * np.sqrt(p * (1 - p) / n)
    # the survivors are exactly scaled by 1/(1-p)
    np.testing.assert_allclose(y[y != 0], 1 / (1 - p))


def test_dropout2d_zeroes_whole_channels(device):
    p, n, c = 0.3, 40, 50
    x = minidl.tensor(np.random.default_rng(0).uniform(1, 2, (n, c, 3, 4)), device=device)
    y = to_numpy(F.dropout2d(x, p))
    dropped = (y == 0).all(axis=(2, 3))
    kept = np.isclose(y, to_numpy(x) / (1 - p)).all(axis=(2, 3))
    assert (dropped ^ kept).all()  # every channel entirely dropped or entirely kept
    assert abs(dropped.mean() - p) < 5 * np.sqrt(p * (1 - p) / (n * c))


@pytest.mark.parametrize("fn", [F.dropout, F.dropout2d])
def test_identity_when_not_training_or_p_zero(fn):
    x = minidl.randn(2, 3, 4, 5, requires_grad=True)
    assert fn(x, 0.5, training=False) is x
    assert fn(x, 0.0) is x


@pytest.mark.parametrize("fn", [F.dropout, F.dropout2d])
def test_p_one_drops_everything(fn):
    x = minidl.randn(2, 3, 4, 5, requires_grad=True)
    y = fn(x, 1.0)
    assert (y.detach().numpy() == 0).all()
    y.sum().backward()
    assert (x.grad.numpy() == 0).all()


def test_masks_follow_the_seed_and_keep_the_dtype():
    x = minidl.ones(1000)
    minidl.manual_seed(5)
    a = F.dropout(x, 0.5).numpy()
    minidl.manual_seed(5)
    b = F.dropout(x, 0.5).numpy()
    c = F.dropout(x, 0.5).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(b, c)
    assert a.dtype == np.float32


@needs_torch
def test_scale_matches_torch_in_float32():
    p = 0.3
    ours = F.dropout(minidl.full((10_000,), 1.7), p).numpy()
    theirs = torch.nn.functional.dropout(torch.full((10_000,), 1.7), p).numpy()
    assert np.unique(ours[ours != 0]).tolist() == np.unique(theirs[theirs != 0]).tolist()


# --------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("fn", [F.dropout, F.dropout2d])
@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan"), "0.5"])
def test_bad_probability(fn, p):
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1"):
        fn(minidl.ones(2, 3, 4, 4), p)


def test_dropout2d_needs_four_dimensions():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\).*\(3, 4, 5\)"):
        F.dropout2d(minidl.ones(3, 4, 5))


def test_integer_input_is_rejected():
    with pytest.raises(TypeError, match="floating point"):
        F.dropout(minidl.tensor([1, 2, 3]))
