"""conv2d and conv_transpose2d: gradients, laws, PyTorch parity, bad inputs."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import minidl
import minidl.nn.functional as F
from minidl.nn.functional.conv import ConvGeometry, col2im, im2col
from minidl.testing import conv_configs

from .helpers import assert_close, needs_torch, torch

seeds = st.integers(0, 2**32 - 1)


def transposed_output_size(config):
    """conv_transpose2d's output (H, W) for a config: (in-1)*s - 2p + d(k-1) + output_padding + 1."""
    return tuple(
        (size - 1) * s - 2 * p + d * (k - 1) + extra + 1
        for size, s, p, d, k, extra in zip(
            config["x_shape"][2:], config["stride"], config["padding"], config["dilation"], config["w_shape"][2:], config["output_padding"]
        )
    )


def transposed_configs(**options):
    """conv_configs(transposed=True) may draw a padding that eats the whole output; keep the valid ones."""
    return conv_configs(transposed=True, **options).filter(lambda config: min(transposed_output_size(config)) >= 1)


def rand(shape, seed, dtype=np.float64, requires_grad=True, device="cpu"):
    array = np.random.default_rng(seed).uniform(-1, 1, size=shape).astype(dtype)
    return minidl.tensor(array, requires_grad=requires_grad, device=device)


def conv_args(config):
    return {k: config[k] for k in ("stride", "padding", "dilation", "groups")}


def transpose_args(config):
    return {k: config[k] for k in ("stride", "padding", "output_padding", "groups", "dilation")}


def bias_for(config, seed, dtype=np.float64, transposed=False):
    channels = config["w_shape"][1] * config["groups"] if transposed else config["w_shape"][0]
    return rand((channels,), seed + 1, dtype)


# --------------------------------------------------------------------------- gradients (float64 gradcheck)
@given(conv_configs(max_batch=2, max_channels=3), seeds, st.booleans())
def test_conv2d_gradcheck(config, seed, with_bias):
    x, w = rand(config["x_shape"], seed), rand(config["w_shape"], seed + 2)
    b = bias_for(config, seed) if with_bias else None
    assert minidl.gradcheck(lambda x, w, b: F.conv2d(x, w, b, **conv_args(config)), [x, w, b])


@given(transposed_configs(max_batch=2, max_channels=3), seeds, st.booleans())
def test_conv_transpose2d_gradcheck(config, seed, with_bias):
    x, w = rand(config["x_shape"], seed), rand(config["w_shape"], seed + 2)
    b = bias_for(config, seed, transposed=True) if with_bias else None
    assert minidl.gradcheck(lambda x, w, b: F.conv_transpose2d(x, w, b, **transpose_args(config)), [x, w, b])


# --------------------------------------------------------------------------- laws
@given(transposed_configs(), seeds)
def test_conv_transpose2d_output_size_formula(config, seed):
    x, w = rand(config["x_shape"], seed, requires_grad=False), rand(config["w_shape"], seed, requires_grad=False)
    y = F.conv_transpose2d(x, w, **transpose_args(config))
    expected = transposed_output_size(config)
    assert tuple(y.shape) == (config["x_shape"][0], config["w_shape"][1] * config["groups"]) + expected


@given(conv_configs(max_channels=6, max_groups=3), seeds)
def test_conv_transpose2d_is_the_adjoint_of_conv2d(config, seed):
    """<conv2d(x, w), y> == <x, conv_transpose2d(y, w)> for the same stride/padding/dilation/groups."""
    x, w = rand(config["x_shape"], seed, requires_grad=False), rand(config["w_shape"], seed + 1, requires_grad=False)
    conv_x = F.conv2d(x, w, **conv_args(config))
    y = rand(conv_x.shape, seed + 2, requires_grad=False)
    # output_padding picks, among the sizes a strided conv maps onto conv_x's size, the size of x
    natural = [
        (o - 1) * s - 2 * p + d * (k - 1) + 1
        for o, s, p, d, k in zip(conv_x.shape[2:], config["stride"], config["padding"], config["dilation"], config["w_shape"][2:])
    ]
    output_padding = tuple(size - n for size, n in zip(config["x_shape"][2:], natural))
    transposed_y = F.conv_transpose2d(y, w, output_padding=output_padding, **conv_args(config))
    assert transposed_y.shape == x.shape
    lhs = float((conv_x * y).sum())
    rhs = float((x * transposed_y).sum())
    assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs))


@given(conv_configs(max_channels=4), seeds)
def test_col2im_is_the_adjoint_of_im2col(config, seed):
    """<im2col(x), c> == <x, col2im(c)>: col2im adds back exactly what im2col copied."""
    x = rand(config["x_shape"], seed, requires_grad=False)._array
    w_shape = config["w_shape"]
    out = F.conv2d(minidl.tensor(x), minidl.tensor(np.zeros(w_shape)), **conv_args(config))
    geometry = ConvGeometry(
        tuple(w_shape[2:]), config["stride"], config["padding"], config["dilation"], config["groups"], tuple(x.shape[2:]), tuple(out.shape[2:])
    )
    columns = im2col(x, geometry)
    c = np.random.default_rng(seed).standard_normal(columns.shape)
    back = col2im(c, geometry)
    assert back.shape == x.shape
    assert np.isclose((columns * c).sum(), (x * back).sum(), rtol=1e-10, atol=1e-10)


def test_results_do_not_share_scratch_memory():
    """Columns live in a reused scratch buffer; no result may be a view of it."""
    w = rand((3, 2, 3, 3), 1, requires_grad=False)
    x1, x2 = rand((2, 2, 6, 6), 2), rand((2, 2, 6, 6), 3)
    y1 = F.conv2d(x1, w, padding=1)
    kept = y1.detach().numpy().copy()
    y2 = F.conv2d(x2, w, padding=1)
    (y1.sum() + y2.sum()).backward()
    np.testing.assert_array_equal(y1.detach().numpy(), kept)
    t = F.conv_transpose2d(x1, rand((2, 3, 1, 1), 4, requires_grad=False))  # 1x1: the col2im shortcut
    kept_t = t.detach().numpy().copy()
    F.conv_transpose2d(x2, rand((2, 3, 3, 3), 5, requires_grad=False))
    np.testing.assert_array_equal(t.detach().numpy(), kept_t)


def test_skips_gradients_nobody_needs():
    x = rand((1, 2, 5, 5), 0)
    frozen = rand((3, 2, 3, 3), 1, requires_grad=False)
    F.conv2d(x, frozen).sum().backward()
    assert x.grad is not None and frozen.grad is None
    fixed_input = rand((1, 2, 5, 5), 2, requires_grad=False)
    w = rand((3, 2, 3, 3), 3)
    y = F.conv2d(fixed_input, w)
    assert y.grad_fn.saved_tensors[1] is None  # no weight kept: no input gradient to compute
    y.sum().backward()
    assert w.grad is not None and fixed_input.grad is None


def test_float32_stays_float32():
    x, w, b = rand((2, 4, 6, 6), 0, np.float32), rand((4, 2, 3, 3), 1, np.float32), rand((4,), 2, np.float32)
    for y in (F.conv2d(x, w, b, padding=1, groups=2), F.conv_transpose2d(x, w.detach().requires_grad_(), None, stride=2, groups=2)):
        assert y.dtype == minidl.float32
        y.sum().backward()
        assert x.grad.dtype == minidl.float32
        x.grad = None


def test_depthwise_and_pointwise(device):
    x = rand((2, 4, 5, 5), 0, device=device)
    depthwise = F.conv2d(x, rand((8, 1, 3, 3), 1, device=device), padding=1, groups=4)
    pointwise = F.conv2d(x, rand((3, 4, 1, 1), 2, device=device))
    assert depthwise.shape == (2, 8, 5, 5) and pointwise.shape == (2, 3, 5, 5)
    (depthwise.sum() + pointwise.sum()).backward()
    assert x.grad.shape == x.shape


# --------------------------------------------------------------------------- parity with PyTorch
def _parity(op, torch_op, x, w, b, kwargs, rtol, atol):
    tx, tw = (torch.tensor(t.detach().numpy(), requires_grad=True) for t in (x, w))
    tb = None if b is None else torch.tensor(b.detach().numpy(), requires_grad=True)
    y, ty = op(x, w, b, **kwargs), torch_op(tx, tw, tb, **kwargs)
    assert_close(y, ty, rtol=rtol, atol=atol)
    g = np.random.default_rng(0).uniform(-1, 1, size=ty.shape).astype(x.dtype)
    y.backward(minidl.tensor(g))
    ty.backward(torch.tensor(g))
    assert_close(x.grad, tx.grad, rtol=rtol, atol=atol)
    assert_close(w.grad, tw.grad, rtol=rtol, atol=atol)
    if b is not None:
        assert_close(b.grad, tb.grad, rtol=rtol, atol=atol)


TOLERANCES = {np.float64: (1e-10, 1e-10), np.float32: (1e-5, 1e-5)}


@needs_torch
@given(conv_configs(max_channels=6, max_groups=3), seeds, st.sampled_from([np.float64, np.float32]))
def test_conv2d_matches_torch(config, seed, dtype):
    x, w, b = rand(config["x_shape"], seed, dtype), rand(config["w_shape"], seed + 1, dtype), bias_for(config, seed, dtype)
    _parity(F.conv2d, torch.nn.functional.conv2d, x, w, b, conv_args(config), *TOLERANCES[dtype])


@needs_torch
@given(transposed_configs(max_channels=6, max_groups=3), seeds, st.sampled_from([np.float64, np.float32]))
def test_conv_transpose2d_matches_torch(config, seed, dtype):
    x, w = rand(config["x_shape"], seed, dtype), rand(config["w_shape"], seed + 1, dtype)
    b = bias_for(config, seed, dtype, transposed=True)
    _parity(F.conv_transpose2d, torch.nn.functional.conv_transpose2d, x, w, b, transpose_args(config), *TOLERANCES[dtype])


@needs_torch
def test_pointwise_conv_transpose2d_with_output_padding_matches_torch():
    """A 1x1 kernel with output_padding: the extra row/column gets only the bias (no column covers it)."""
    x, w, b = rand((1, 2, 3, 3), 0), rand((2, 3, 1, 1), 1), rand((3,), 2)
    kwargs = dict(stride=1, padding=0, output_padding=1, groups=1, dilation=2)
    _parity(F.conv_transpose2d, torch.nn.functional.conv_transpose2d, x, w, b, kwargs, 1e-10, 1e-10)


@needs_torch
def test_larger_layer_matches_torch_in_float32():
    x, w, b = rand((2, 16, 20, 20), 0, np.float32), rand((24, 16, 3, 3), 1, np.float32), rand((24,), 2, np.float32)
    _parity(F.conv2d, torch.nn.functional.conv2d, x, w, b, dict(padding=1), 1e-5, 1e-4)


# --------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    "x_shape, w_shape, kwargs, match",
    [
        ((2, 3, 5), (4, 3, 3, 3), {}, r"conv2d: expected a 4-D input .*\(2, 3, 5\)"),
        ((1, 3, 5, 5), (4, 3, 3), {}, r"conv2d: expected a 4-D weight"),
        ((1, 3, 5, 5), (4, 2, 3, 3), {}, r"conv2d: input of shape \(1, 3, 5, 5\) has 3 channels.*\(4, 2, 3, 3\).*expects 2"),
        ((1, 4, 5, 5), (4, 1, 3, 3), dict(groups=2), r"conv2d: .*has 4 channels.*groups=2 expects 2"),
        ((1, 4, 5, 5), (3, 2, 3, 3), dict(groups=2), r"conv2d: .*3 output channels, not divisible by groups=2"),
        ((1, 3, 5, 5), (4, 3, 3, 3), dict(stride=0), r"conv2d: stride must be positive"),
        ((1, 3, 5, 5), (4, 3, 3, 3), dict(dilation=(1, 0)), r"conv2d: dilation must be positive"),
        ((1, 3, 5, 5), (4, 3, 3, 3), dict(padding=-1), r"conv2d: padding must be non-negative"),
        ((1, 3, 5, 5), (4, 3, 3, 3), dict(groups=0), r"conv2d: groups must be a positive int"),
        ((1, 3, 2, 5), (4, 3, 3, 3), {}, r"conv2d: output size \(0, 3\) is too small"),
        ((1, 3, 5, 5), (4, 3, 0, 3), {}, r"conv2d: kernel size must be positive"),
    ],
)
def test_conv2d_rejects_bad_input(x_shape, w_shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        F.conv2d(minidl.zeros(x_shape), minidl.zeros(w_shape), **kwargs)


def test_conv2d_rejects_bad_bias_and_dtype():
    with pytest.raises(ValueError, match=r"conv2d: bias must have shape \(4,\).*got \(3,\)"):
        F.conv2d(minidl.zeros(1, 3, 5, 5), minidl.zeros(4, 3, 3, 3), minidl.zeros(3))
    with pytest.raises(RuntimeError, match="conv2d: expected input, weight and bias of the same dtype"):
        F.conv2d(minidl.zeros(1, 3, 5, 5), minidl.zeros(4, 3, 3, 3, dtype=minidl.float64))
    with pytest.raises(TypeError, match="conv2d: stride must be an int or a pair"):
        F.conv2d(minidl.zeros(1, 3, 5, 5), minidl.zeros(4, 3, 3, 3), stride=(1, 2, 3))


@pytest.mark.parametrize(
    "x_shape, w_shape, kwargs, match",
    [
        ((1, 3, 5), (3, 2, 3, 3), {}, r"conv_transpose2d: expected a 4-D input"),
        ((1, 3, 5, 5), (4, 2, 3, 3), {}, r"conv_transpose2d: input of shape \(1, 3, 5, 5\) has 3 channels.*expects 4"),
        ((1, 3, 5, 5), (3, 2, 3, 3), dict(groups=2), r"conv_transpose2d: input channels 3 .* not divisible by groups=2"),
        ((1, 3, 5, 5), (3, 2, 3, 3), dict(stride=2, output_padding=2), r"conv_transpose2d: output_padding \(2, 2\) must be smaller"),
        ((1, 3, 1, 1), (3, 2, 1, 1), dict(padding=1), r"conv_transpose2d: output size \(-1, -1\) is too small"),
        ((1, 3, 5, 5), (3, 2, 3, 3), dict(stride=(1, -1)), r"conv_transpose2d: stride must be positive"),
        ((1, 3, 5, 5), (3, 2, 3, 3), dict(output_padding=-1), r"conv_transpose2d: output_padding must be non-negative"),
    ],
)
def test_conv_transpose2d_rejects_bad_input(x_shape, w_shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        F.conv_transpose2d(minidl.zeros(x_shape), minidl.zeros(w_shape), **kwargs)


@needs_torch
@pytest.mark.parametrize("threads", [1, 2])
def test_an_empty_batch_gives_empty_results_and_zero_weight_gradients(threads):
    before = minidl.get_num_threads()
    minidl.set_num_threads(threads)
    try:
        for kwargs in (dict(padding=1), dict(stride=2), dict()):
            x, w = rand((0, 3, 8, 8), 0, requires_grad=True), rand((4, 3, 3, 3), 1, requires_grad=True)
            y = F.conv2d(x, w, **kwargs)
            y.sum().backward()
            expected = torch.nn.functional.conv2d(torch.zeros(0, 3, 8, 8), torch.zeros(4, 3, 3, 3), **kwargs)
            assert tuple(y.shape) == tuple(expected.shape)
            assert tuple(x.grad.shape) == (0, 3, 8, 8) and not w.grad.numpy().any()
        z = F.conv_transpose2d(rand((0, 4, 5, 5), 2, requires_grad=True), rand((4, 2, 3, 3), 3, requires_grad=True), stride=2)
        z.sum().backward()
        assert tuple(z.shape) == (0, 2, 11, 11)
    finally:
        minidl.set_num_threads(before)
