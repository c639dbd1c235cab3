"""interpolate (nearest, bilinear): gradients, PyTorch parity, bad inputs."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import minidl
import minidl.nn.functional as F

from .helpers import assert_close, needs_torch, torch

seeds = st.integers(0, 2**32 - 1)
TOLERANCES = {np.float64: (1e-10, 1e-10), np.float32: (1e-5, 1e-6)}


def rand(shape, seed, dtype=np.float64, requires_grad=True, device="cpu"):
    array = np.random.default_rng(seed).uniform(-1, 1, size=shape).astype(dtype)
    return minidl.tensor(array, requires_grad=requires_grad, device=device)


@st.composite
def resize_calls(draw, max_side=6):
    """(input shape, interpolate kwargs): sizes or scale factors, up and down, every mode."""
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, max_side)), draw(st.integers(1, max_side)))
    mode = draw(st.sampled_from(["nearest", "bilinear"]))
    kwargs = dict(mode=mode)
    if mode == "bilinear":
        kwargs["align_corners"] = draw(st.sampled_from([None, False, True]))
    if draw(st.booleans()):
        kwargs["size"] = (draw(st.integers(1, 2 * max_side)), draw(st.integers(1, 2 * max_side)))
    else:
        factors = st.sampled_from([0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0])
        kwargs["scale_factor"] = (draw(factors), draw(factors))
        if any(int(side * f) < 1 for side, f in zip(shape[2:], kwargs["scale_factor"])):
            kwargs["scale_factor"] = (2.0, 3.0)
    return shape, kwargs


@given(resize_calls(), seeds)
def test_interpolate_gradcheck(call, seed):
    shape, kwargs = call
    assert minidl.gradcheck(lambda x: F.interpolate(x, **kwargs), [rand(shape, seed)])


@needs_torch
@given(resize_calls(max_side=9), seeds, st.sampled_from([np.float64, np.float32]))
def test_interpolate_matches_torch(call, seed, dtype):
    shape, kwargs = call
    x = rand(shape, seed, dtype)
    tx = torch.tensor(x.detach().numpy(), requires_grad=True)
    y, ty = F.interpolate(x, **kwargs), torch.nn.functional.interpolate(tx, **kwargs)
    rtol, atol = TOLERANCES[dtype]
    assert_close(y, ty, rtol=rtol, atol=atol)
    g = np.random.default_rng(seed).uniform(-1, 1, size=ty.shape).astype(dtype)
    y.backward(minidl.tensor(g))
    ty.backward(torch.tensor(g))
    assert_close(x.grad, tx.grad, rtol=rtol, atol=atol)


@needs_torch
@pytest.mark.parametrize("size", [(3, 7), (10, 5), (17, 29), (60, 2)])
def test_nearest_picks_the_same_pixels_as_torch_for_awkward_ratios(size):
    """PyTorch computes nearest's source index in float32; so must we, to pick the same pixel."""
    x = np.arange(7 * 12, dtype=np.float32).reshape(1, 1, 7, 12)
    expected = torch.nn.functional.interpolate(torch.tensor(x), size=size).numpy()
    np.testing.assert_array_equal(F.interpolate(minidl.tensor(x), size=size).numpy(), expected)
    for factor in (1.3, 7 / 3, 0.6):
        expected = torch.nn.functional.interpolate(torch.tensor(x), scale_factor=factor).numpy()
        np.testing.assert_array_equal(F.interpolate(minidl.tensor(x), scale_factor=factor).numpy(), expected)


def test_bilinear_corner_alignment():
    x = minidl.tensor([[[[0.0, 3.0]]]])
    assert F.interpolate(x, size=(1, 4), mode="bilinear", align_corners=True).tolist() == [[[[0.0, 1.0, 2.0, 3.0]]]]
    # half-pixel centres: output pixel centres at 0.25 steps of the input, clamped at the left edge
    assert F.interpolate(x, size=(1, 4), mode="bilinear").tolist() == [[[[0.0, 0.75, 2.25, 3.0]]]]


def test_unchanged_size_copies(device):
    x = rand((1, 2, 3, 4), 0, np.float32, device=device)
    y = F.interpolate(x, size=(3, 4), mode="bilinear")
    assert y.dtype == minidl.float32 and y.device == x.device
    assert y._array is not x._array
    np.testing.assert_array_equal(y.detach().cpu().numpy(), x.detach().cpu().numpy())
    F.interpolate(x, scale_factor=2).sum().backward()
    assert_close(x.grad.cpu(), np.full((1, 2, 3, 4), 4.0, dtype=np.float32))  # each pixel copied 4 times


@pytest.mark.parametrize(
    "shape, kwargs, match",
    [
        ((1, 1, 4, 4), dict(size=2, align_corners=True), r"interpolate: align_corners option can only be set with the interpolating modes"),
        ((1, 1, 4, 4), dict(size=2, scale_factor=2.0), r"interpolate: exactly one of size and scale_factor"),
        ((1, 1, 4, 4), dict(), r"interpolate: exactly one of size and scale_factor"),
        ((1, 1, 4, 4), dict(size=2, mode="bicubic"), r"interpolate: mode must be one of"),
        ((1, 4, 4), dict(size=2), r"interpolate: expected a 4-D input .*\(1, 4, 4\)"),
        ((1, 1, 4, 4), dict(size=(2, 0)), r"interpolate: input \(4, 4\) and output \(2, 0\) sizes should be greater than 0"),
        ((1, 1, 4, 4), dict(scale_factor=0.1), r"interpolate: input \(4, 4\) and output \(0, 0\)"),
        ((1, 1, 4, 4), dict(scale_factor=-1.0), r"interpolate: scale_factor must be a positive number"),
        ((1, 1, 4, 4), dict(size=(2, 2, 2)), r"interpolate: size must be an int or a pair"),
    ],
)
def test_interpolate_rejects_bad_input(shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        F.interpolate(minidl.zeros(shape), **kwargs)
