"""max_pool2d, max_unpool2d, avg_pool2d, adaptive_avg_pool2d: gradients, laws, PyTorch parity, bad inputs."""
import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

import minidl
import minidl.nn.functional as F

from .helpers import assert_close, needs_torch, torch

seeds = st.integers(0, 2**32 - 1)
TOLERANCES = {np.float64: (1e-10, 1e-10), np.float32: (1e-5, 1e-6)}


def distinct(shape, seed, dtype=np.float64, requires_grad=True, device="cpu"):
    """Values 0.1 apart in random order: no ties, so the max of every window is unique."""
    size = int(np.prod(shape))
    array = (np.random.default_rng(seed).permutation(size) - size / 2) * 0.1
    return minidl.tensor(array.reshape(shape).astype(dtype), requires_grad=requires_grad, device=device)


@st.composite
def pool_configs(draw, max_kernel=3, max_side=7, dilation=True):
    """kwargs of a valid pooling call and an input shape (N, C, H, W) with at least one window."""
    kernel = (draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    dilations = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if dilation else (1, 1)
    ceil_mode = draw(st.booleans())
    sides = tuple(
        draw(st.integers(max(1, (k - 1) * d + 1 - 2 * p), max_side)) for k, d, p in zip(kernel, dilations, padding)
    )
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) + sides
    kwargs = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode)
    if dilation:
        kwargs["dilation"] = dilations
    return shape, kwargs


# --------------------------------------------------------------------------- gradients (float64 gradcheck)
@given(pool_configs(), seeds)
def test_max_pool2d_gradcheck(config, seed):
    shape, kwargs = config
    x = distinct(shape, seed)
    # a dilated window may hold only padding: its -inf output has no finite difference
    assume(np.isfinite(F.max_pool2d(x.detach(), **kwargs).numpy()).all())
    assert minidl.gradcheck(lambda x: F.max_pool2d(x, **kwargs), [x])


@given(pool_configs(dilation=False), seeds, st.booleans())
def test_avg_pool2d_gradcheck(config, seed, count_include_pad):
    shape, kwargs = config
    x = distinct(shape, seed)
    assert minidl.gradcheck(lambda x: F.avg_pool2d(x, count_include_pad=count_include_pad, **kwargs), [x])


@given(pool_configs(dilation=False), seeds)
def test_max_unpool2d_gradcheck(config, seed):
    shape, kwargs = config
    kwargs.pop("ceil_mode")
    # windows side by side (stride >= kernel): distinct indices, so unpooling is one-to-one
    kwargs["stride"] = tuple(max(s, k) for s, k in zip(kwargs["stride"], kwargs["kernel_size"]))
    pooled, indices = F.max_pool2d(distinct(shape, seed, requires_grad=False), return_indices=True, **kwargs)
    values = distinct(pooled.shape, seed + 1)
    assert minidl.gradcheck(lambda v: F.max_unpool2d(v, indices, output_size=shape[2:], **kwargs), [values])


@given(st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 7), st.integers(1, 7)), st.integers(1, 5), st.integers(1, 5), seeds)
def test_adaptive_avg_pool2d_gradcheck(shape, out_h, out_w, seed):
    x = distinct(shape, seed)
    assert minidl.gradcheck(lambda x: F.adaptive_avg_pool2d(x, (out_h, out_w)), [x])


# --------------------------------------------------------------------------- laws
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), seeds)
def test_unpool_of_pool_keeps_exactly_each_window_max(kh, kw, rows, cols, seed):
    """With windows side by side, unpool(pool(x)) is x at each window's max and zero everywhere else."""
    x = distinct((2, 3, rows * kh, cols * kw), seed, requires_grad=False)
    pooled, indices = F.max_pool2d(x, (kh, kw), return_indices=True)
    restored = F.max_unpool2d(pooled, indices, (kh, kw)).numpy()
    windows = restored.reshape(2, 3, rows, kh, cols, kw)
    original = x.numpy().reshape(2, 3, rows, kh, cols, kw)
    window_max = original.max(axis=(3, 5), keepdims=True)
    is_max = original == window_max
    np.testing.assert_array_equal(windows[is_max], original[is_max])
    assert np.all(windows[~is_max] == 0)


def test_max_pool2d_ties_and_nan_follow_pytorch():
    x = minidl.tensor([[[[1.0, 1.0], [0.0, 1.0]]]])
    _, indices = F.max_pool2d(x, 2, return_indices=True)
    assert indices.tolist() == [[[[0]]]]  # the first maximum in row-major order wins
    y, indices = F.max_pool2d(minidl.tensor([[[[1.0, float("nan")], [5.0, 0.0]]]]), 2, return_indices=True)
    assert np.isnan(y.item()) and indices.item() == 1  # NaN propagates, as in PyTorch


@needs_torch
@pytest.mark.parametrize("kwargs", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=3, padding=1, dilation=2, ceil_mode=True)])
def test_max_pool2d_with_nan_and_inf_matches_torch_indices(kwargs):
    x = np.random.default_rng(1).integers(-2, 3, size=(2, 2, 7, 6)).astype(np.float64)
    x[np.random.default_rng(2).random(x.shape) < 0.15] = np.nan
    x[np.random.default_rng(3).random(x.shape) < 0.1] = -np.inf
    y, indices = F.max_pool2d(minidl.tensor(x), return_indices=True, **kwargs)
    ty, t_indices = torch.nn.functional.max_pool2d(torch.tensor(x), return_indices=True, **kwargs)
    np.testing.assert_array_equal(indices.numpy(), t_indices.numpy())
    np.testing.assert_array_equal(y.numpy(), ty.numpy())


@needs_torch
def test_windows_of_padding_only():
    """A dilated window may cover only padding: -inf and PyTorch's index (past the plane), but no gradient.

    (PyTorch's own backward sends that gradient to index 1 of the flattened
    batch, i.e. into the next channel's plane -- a bug we do not copy.)
    """
    x = distinct((1, 2, 1, 1), 0)
    kwargs = dict(kernel_size=(2, 1), stride=1, padding=(1, 0), dilation=(2, 1), return_indices=True)
    (y, indices), (ty, t_indices) = F.max_pool2d(x, **kwargs), torch.nn.functional.max_pool2d(torch.tensor(x.detach().numpy()), **kwargs)
    assert_close(y, ty)
    np.testing.assert_array_equal(indices.numpy(), t_indices.numpy())
    y.sum().backward()
    assert x.grad.tolist() == [[[[0.0]], [[0.0]]]]


def test_results_follow_dtype_and_device(device):
    x = distinct((2, 3, 6, 6), 0, np.float32, device=device)
    for y in (F.max_pool2d(x, 2), F.avg_pool2d(x, 3, 2, 1), F.adaptive_avg_pool2d(x, 4)):
        assert y.dtype == minidl.float32 and y.device == x.device
        y.sum().backward()
        assert x.grad.dtype == minidl.float32
        x.grad = None


# --------------------------------------------------------------------------- parity with PyTorch
def _parity(op, torch_op, x, rtol, atol):
    tx = torch.tensor(x.detach().numpy(), requires_grad=True)
    y, ty = op(x), torch_op(tx)
    if isinstance(y, tuple):  # (values, indices)
        np.testing.assert_array_equal(y[1].numpy(), ty[1].numpy())
        y, ty = y[0], ty[0]
    assert_close(y, ty, rtol=rtol, atol=atol)
    g = np.random.default_rng(1).uniform(-1, 1, size=ty.shape).astype(x.dtype)
    y.backward(minidl.tensor(g))
    ty.backward(torch.tensor(g))
    assert_close(x.grad, tx.grad, rtol=rtol, atol=atol)


dtypes = st.sampled_from([np.float64, np.float32])


@needs_torch
@given(pool_configs(max_side=9), seeds, dtypes)
def test_max_pool2d_matches_torch_values_indices_and_gradient(config, seed, dtype):
    shape, kwargs = config
    x = minidl.tensor(np.random.default_rng(seed).integers(-3, 4, size=shape).astype(dtype), requires_grad=True)  # with ties
    # Windows of padding only: see test_windows_of_padding_only (PyTorch's gradient leaks into the next plane there)
    assume(np.isfinite(F.max_pool2d(x.detach(), **kwargs).numpy()).all())
    _parity(
        lambda x: F.max_pool2d(x, return_indices=True, **kwargs),
        lambda x: torch.nn.functional.max_pool2d(x, return_indices=True, **kwargs),
        x,
        *TOLERANCES[dtype],
    )


@needs_torch
@given(pool_configs(max_side=9, dilation=False), seeds, dtypes, st.booleans())
def test_avg_pool2d_matches_torch(config, seed, dtype, count_include_pad):
    shape, kwargs = config
    _parity(
        lambda x: F.avg_pool2d(x, count_include_pad=count_include_pad, **kwargs),
        lambda x: torch.nn.functional.avg_pool2d(x, count_include_pad=count_include_pad, **kwargs),
        distinct(shape, seed, dtype),
        *TOLERANCES[dtype],
    )


@needs_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_avg_pool2d_tiling_fast_path_matches_torch(dtype):
    _parity(lambda x: F.avg_pool2d(x, 2), lambda x: torch.nn.functional.avg_pool2d(x, 2), distinct((2, 3, 7, 9), 0, dtype), *TOLERANCES[dtype])


@needs_torch
@given(st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 12), st.integers(1, 12)), st.integers(1, 7), st.one_of(st.none(), st.integers(1, 7)), seeds, dtypes)
def test_adaptive_avg_pool2d_matches_torch(shape, out_h, out_w, seed, dtype):
    _parity(
        lambda x: F.adaptive_avg_pool2d(x, (out_h, out_w)),
        lambda x: torch.nn.functional.adaptive_avg_pool2d(x, (out_h, out_w)),
        distinct(shape, seed, dtype),
        *TOLERANCES[dtype],
    )


@needs_torch
@given(pool_configs(max_side=9, dilation=False), seeds, dtypes)
def test_max_unpool2d_accepts_torch_indices(config, seed, dtype):
    shape, kwargs = config
    kwargs.pop("ceil_mode")
    t_pooled, t_indices = torch.nn.functional.max_pool2d(torch.tensor(distinct(shape, seed, dtype).detach().numpy()), return_indices=True, **kwargs)
    indices = minidl.tensor(t_indices.numpy())
    _parity(
        lambda v: F.max_unpool2d(v, indices, output_size=shape, **kwargs),
        lambda v: torch.nn.functional.max_unpool2d(v, t_indices, output_size=shape, **kwargs),
        minidl.tensor(t_pooled.numpy(), requires_grad=True),
        *TOLERANCES[dtype],
    )


# --------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    "op, shape, kwargs, match",
    [
        (F.max_pool2d, (3, 5, 5), dict(kernel_size=2), r"max_pool2d: expected a 4-D input .*\(3, 5, 5\)"),
        (F.max_pool2d, (1, 1, 5, 5), dict(kernel_size=0), r"max_pool2d: kernel_size must be positive"),
        (F.max_pool2d, (1, 1, 5, 5), dict(kernel_size=2, stride=0), r"max_pool2d: stride must be positive"),
        (F.max_pool2d, (1, 1, 5, 5), dict(kernel_size=2, padding=-1), r"max_pool2d: padding must be non-negative"),
        (F.max_pool2d, (1, 1, 5, 5), dict(kernel_size=3, padding=2), r"max_pool2d: padding \(2, 2\) should be at most half"),
        (F.max_pool2d, (1, 1, 2, 5), dict(kernel_size=3), r"max_pool2d: output size \(0, 1\) is too small.*\(1, 1, 2, 5\)"),
        (F.avg_pool2d, (1, 5, 5), dict(kernel_size=2), r"avg_pool2d: expected a 4-D input"),
        (F.avg_pool2d, (1, 1, 5, 5), dict(kernel_size=(2, -1)), r"avg_pool2d: kernel_size must be positive"),
        (F.adaptive_avg_pool2d, (1, 5, 5), dict(output_size=2), r"adaptive_avg_pool2d: expected a 4-D input"),
        (F.adaptive_avg_pool2d, (1, 1, 5, 5), dict(output_size=0), r"adaptive_avg_pool2d: output size \(0, 0\)"),
    ],
)
def test_pooling_rejects_bad_input(op, shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        op(minidl.zeros(shape), **kwargs)


def test_max_unpool2d_rejects_bad_indices_and_sizes():
    x = minidl.zeros(1, 2, 3, 3)
    good = minidl.zeros(1, 2, 3, 3, dtype=minidl.int64)
    with pytest.raises(ValueError, match=r"max_unpool2d: indices must have the shape of the input \(1, 2, 3, 3\), got \(1, 2, 3\)"):
        F.max_unpool2d(x, minidl.zeros(1, 2, 3, dtype=minidl.int64), 2)
    with pytest.raises(TypeError, match="max_unpool2d: indices must be an integer tensor"):
        F.max_unpool2d(x, minidl.zeros(1, 2, 3, 3), 2)
    with pytest.raises(ValueError, match=r"max_unpool2d: found an invalid max index 36 \(output planes are of size 6x6\)"):
        F.max_unpool2d(x, minidl.full((1, 2, 3, 3), 36, dtype=minidl.int64), 2)
    with pytest.raises(ValueError, match=r"max_unpool2d: output_size \(9, 6\) must lie strictly between"):
        F.max_unpool2d(x, good, 2, output_size=(9, 6))
    with pytest.raises(ValueError, match="max_unpool2d: expected a 4-D input"):
        F.max_unpool2d(minidl.zeros(2, 3, 3), good, 2)
    assert F.max_unpool2d(x, good, 2, output_size=(1, 2, 7, 5)).shape == (1, 2, 7, 5)
