"""The reference is the fast kernels' oracle: every fast CPU kernel equals the textbook Function it replaces.

For each op with a fast kernel (``minidl.kernels.fast_kernels()``), hypothesis
draws shapes and arguments -- strides, padding, dilation, groups, odd sizes,
non-contiguous and empty inputs -- and the op runs forward and backward once
with ``use_kernels("reference")`` and once with ``use_kernels("fast")``, in
float64, with tiny piece and block budgets and 2 or 3 threads, so that the
fast kernels cut even these small arrays into many pieces. Outputs,
extra outputs (indices) and every input's gradient must agree to float rounding.
"""
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, strategies as st

import minidl
import minidl.nn.functional as F
from minidl.kernels import fast_kernels, use_kernels
from minidl.kernels.cpu import conv as fast_conv, threads
from minidl.nn.functional import conv as reference_conv
from minidl.nn.functional.conv import ConvGeometry
from minidl.nn.functional.loss import CrossEntropy
from minidl.nn.functional.normalization import BatchNorm
from minidl.nn.functional.pooling import AvgPool2d, MaxPool2d, MaxUnpool2d
from minidl.nn.functional.upsampling import Resample2d
from minidl.ops.elementwise import Relu
from minidl.testing import conv_configs

seeds = st.integers(0, 2**32 - 1)


def rand(shape, seed):
    return np.random.default_rng(seed).uniform(-1, 1, size=shape)


def run(kernels, op, arrays, seed):
    """op(*tensors) under ``kernels``: [output, extra outputs..., each input's gradient], and the Function that ran."""
    with use_kernels(kernels):
        tensors = [minidl.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
        out = op(*tensors)
        outputs = out if isinstance(out, tuple) else (out,)
        first = outputs[0]
        (first * minidl.tensor(rand(first.shape, seed))).sum().backward()
        grads = [t.grad.numpy().copy() if t.grad is not None else None for t in tensors]
        return [o.detach().numpy().copy() for o in outputs] + grads, type(first.grad_fn)


def assert_fast_equals_reference(reference_function, op, arrays, seed, thread_count=2, exact=False, chunk_bytes=64):
    """Run ``op`` with both kernel sets (the fast one cut small) and compare everything it returns.

    ``chunk_bytes``: the fast convolutions' piece budget; 64 gives pieces of one output row
    or less, 1 MB pieces of several whole images.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fast_conv, "CHUNK_BYTES", chunk_bytes)
        patch.setattr(fast_conv, "FLIPPED_MIN_CHANNELS", 1)  # the flipped-kernel route for any channel count
        patch.setattr(threads, "BLOCK_BYTES", 64)  # blocks of a few planes
        before = minidl.get_num_threads()
        minidl.set_num_threads(thread_count)
        try:
            fast, fast_function = run("fast", op, arrays, seed)
        finally:
            minidl.set_num_threads(before)
    expected, reference_ran = run("reference", op, arrays, seed)
    assert reference_ran is reference_function, f"the reference set ran {reference_ran.__name__}"
    assert fast_function is fast_kernels()[reference_function], f"the fast set ran {fast_function.__name__}"
    assert len(fast) == len(expected)
    for index, (actual, wanted) in enumerate(zip(fast, expected)):
        if wanted is None:
            assert actual is None
        elif exact or wanted.dtype.kind != "f":
            np.testing.assert_array_equal(actual, wanted, err_msg=f"result {index}")
        else:
            np.testing.assert_allclose(actual, wanted, rtol=1e-10, atol=1e-10, err_msg=f"result {index}")


def maybe_transposed(array, transposed):
    """The same values, in memory of another layout (a non-contiguous view) when ``transposed``."""
    return np.ascontiguousarray(array.swapaxes(-1, -2)).swapaxes(-1, -2) if transposed else array


CHECKED = set()  # the reference Functions the tests below hold their fast kernels against


def checks(reference_function):
    CHECKED.add(reference_function)
    return lambda test: test


def test_every_fast_kernel_is_held_against_its_reference():
    assert set(fast_kernels()) == CHECKED, "a fast kernel without a test against its reference"
    for reference, fast in fast_kernels().items():
        assert issubclass(fast, reference) and fast.__doc__ and reference.__name__ in fast.__doc__, (
            f"{fast.__name__}'s docstring must name the reference it equals ({reference.__name__})")


# --------------------------------------------------------------------------- convolutions
@checks(reference_conv.Conv2d)
@given(config=conv_configs(max_batch=5, max_channels=6, max_groups=3), seed=seeds, with_bias=st.booleans(),
       layout=st.booleans(), thread_count=st.integers(2, 3), chunk_bytes=st.sampled_from([64, 1 << 20]))
def test_conv2d(config, seed, with_bias, layout, thread_count, chunk_bytes):
    args = {k: config[k] for k in ("stride", "padding", "dilation", "groups")}
    arrays = [maybe_transposed(rand(config["x_shape"], seed), layout), rand(config["w_shape"], seed + 1)]
    if with_bias:
        arrays.append(rand((config["w_shape"][0],), seed + 2))
    assert_fast_equals_reference(reference_conv.Conv2d, lambda x, w, b=None: F.conv2d(x, w, b, **args), arrays, seed,
                                 thread_count, chunk_bytes=chunk_bytes)


@checks(reference_conv.ConvTranspose2d)
@given(config=conv_configs(max_batch=5, max_channels=6, max_groups=3, transposed=True), seed=seeds,
       with_bias=st.booleans(), chunk_bytes=st.sampled_from([64, 1 << 20]))
def test_conv_transpose2d(config, seed, with_bias, chunk_bytes):
    args = {k: config[k] for k in ("stride", "padding", "output_padding", "groups", "dilation")}
    sizes = [(size - 1) * s - 2 * p + d * (k - 1) + extra + 1 for size, s, p, d, k, extra in zip(
        config["x_shape"][2:], config["stride"], config["padding"], config["dilation"], config["w_shape"][2:],
        config["output_padding"])]
    if min(sizes) < 1:
        return  # a padding that eats the whole output: not a valid call
    arrays = [rand(config["x_shape"], seed), rand(config["w_shape"], seed + 1)]
    if with_bias:
        arrays.append(rand((config["w_shape"][1] * config["groups"],), seed + 2))
    assert_fast_equals_reference(reference_conv.ConvTranspose2d, lambda x, w, b=None: F.conv_transpose2d(x, w, b, **args),
                                 arrays, seed, chunk_bytes=chunk_bytes)


@pytest.mark.parametrize("op", ["conv2d", "conv_transpose2d"])
def test_convolutions_of_an_empty_batch(op):
    x = np.zeros((0, 4, 6, 6))
    w = rand((4, 4, 3, 3), 0)
    function = reference_conv.Conv2d if op == "conv2d" else reference_conv.ConvTranspose2d
    assert_fast_equals_reference(function, lambda x, w: getattr(F, op)(x, w, padding=1), [x, w], 0)


def test_stride_one_input_gradient_is_a_flipped_convolution(monkeypatch):
    """The fast kernel's route for a stride-1 input gradient (dy convolved with the flipped kernel) equals col2im's."""
    monkeypatch.setattr(fast_conv, "FLIPPED_MIN_CHANNELS", 1)
    rng = np.random.default_rng(3)
    weight, grad = rng.standard_normal((6, 2, 3, 3)), rng.standard_normal((2, 6, 5, 7))
    geometry = ConvGeometry((3, 3), (1, 1), (1, 1), (1, 1), 2, (5, 7), (5, 7))
    via_col2im = reference_conv.input_gradient(weight, grad, geometry)
    flipped = fast_conv.flipped_kernel(weight, 2)
    assert flipped.shape == (4, 3, 3, 3)
    via_conv = reference_conv.weight_times_columns(np.ascontiguousarray(flipped), grad,
                                                   fast_conv.flipped_geometry(geometry, 2))
    np.testing.assert_allclose(via_conv, via_col2im, rtol=1e-12, atol=1e-12)


def test_the_reference_conv2d_runs_im2col_and_col2im(monkeypatch):
    """A breakpoint in im2col fires: with MINIDL_KERNELS=reference the textbook code is what runs."""
    calls = []
    for name in ("im2col", "col2im"):
        original = getattr(reference_conv, name)
        monkeypatch.setattr(reference_conv, name, lambda *a, _name=name, _f=original: calls.append(_name) or _f(*a))
    x, w = minidl.randn(2, 3, 5, 5, requires_grad=True), minidl.randn(4, 3, 3, 3, requires_grad=True)
    with use_kernels("reference"):
        F.conv2d(x, w, padding=1, stride=2).sum().backward()
    assert calls == ["im2col", "col2im", "im2col"], calls  # forward; input gradient; weight gradient


# --------------------------------------------------------------------------- pooling
pool_shapes = st.tuples(st.integers(0, 4), st.integers(1, 5), st.integers(2, 9), st.integers(2, 9))


@checks(MaxPool2d)
@checks(MaxUnpool2d)
@given(shape=pool_shapes, seed=seeds, kernel=st.integers(1, 3), stride=st.integers(1, 3), padding=st.integers(0, 1),
       dilation=st.integers(1, 2), ceil_mode=st.booleans(), ties=st.booleans(), with_nan=st.booleans())
def test_max_pool_and_unpool(shape, seed, kernel, stride, padding, dilation, ceil_mode, ties, with_nan):
    """Ties, NaN, windows of padding only (dilation with padding) and ceil_mode's partial windows."""
    padding = min(padding, kernel // 2)
    if min(shape[2:]) + 2 * padding < dilation * (kernel - 1) + 1:
        return  # the window does not fit: not a valid call
    x = rand(shape, seed)
    if ties:
        x = np.round(x * 2) / 2
    if with_nan and x.size:
        x.reshape(-1)[seed % x.size] = np.nan
    pool = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode)
    assert_fast_equals_reference(MaxPool2d, lambda x: F.max_pool2d(x, return_indices=True, **pool), [x], seed, exact=True)
    if dilation > 1 or ceil_mode or with_nan:
        return  # max_unpool2d's output size rule is the undilated one; NaN gradients are compared above
    with use_kernels("reference"):
        values, indices = F.max_pool2d(minidl.tensor(x), return_indices=True, **pool)
    unpool = lambda v, i: F.max_unpool2d(v, i, kernel, stride, padding, output_size=shape[2:])  # noqa: E731
    assert_fast_equals_reference(MaxUnpool2d, unpool, [values.numpy(), indices.numpy()], seed, exact=True)


@checks(AvgPool2d)
@given(shape=pool_shapes, seed=seeds, kernel=st.integers(1, 3), stride=st.sampled_from([None, 1, 2, 3]),
       padding=st.integers(0, 1), ceil_mode=st.booleans(), count_include_pad=st.booleans())
def test_avg_pool(shape, seed, kernel, stride, padding, ceil_mode, count_include_pad):
    """stride None (= kernel) and no padding draws the tiling case the fast kernel treats apart."""
    padding = min(padding, kernel // 2)
    if min(shape[2:]) + 2 * padding < kernel:
        return
    op = lambda x: F.avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad)  # noqa: E731
    assert_fast_equals_reference(AvgPool2d, op, [rand(shape, seed)], seed)


# --------------------------------------------------------------------------- resampling
@checks(Resample2d)
@given(shape=pool_shapes, seed=seeds, layout=st.booleans(),
       resize=st.sampled_from(["nearest x2", "nearest to 5x7", "bilinear x2", "bilinear to 5x7", "bilinear corners",
                               "adaptive average to 2x3", "adaptive average to 1", "bilinear to the same size"]))
def test_resampling(shape, seed, layout, resize):
    op = {
        "nearest x2": lambda x: F.interpolate(x, scale_factor=2, mode="nearest"),
        "nearest to 5x7": lambda x: F.interpolate(x, size=(5, 7), mode="nearest"),
        "bilinear x2": lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"),
        "bilinear to 5x7": lambda x: F.interpolate(x, size=(5, 7), mode="bilinear"),
        "bilinear corners": lambda x: F.interpolate(x, size=(4, 11), mode="bilinear", align_corners=True),
        "adaptive average to 2x3": lambda x: F.adaptive_avg_pool2d(x, (2, 3)),
        "adaptive average to 1": lambda x: F.adaptive_avg_pool2d(x, 1),
        "bilinear to the same size": lambda x: F.interpolate(x, size=shape[2:], mode="bilinear"),
    }[resize]
    assert_fast_equals_reference(Resample2d, op, [maybe_transposed(rand(shape, seed), layout)], seed)


# --------------------------------------------------------------------------- batch norm
@checks(BatchNorm)
@given(shape=st.one_of(pool_shapes, st.tuples(st.integers(2, 6), st.integers(1, 6)),
                       st.tuples(st.integers(1, 5), st.integers(1, 6), st.integers(1, 12))),
       seed=seeds, training=st.booleans(), affine=st.booleans(), thread_count=st.integers(1, 3))
def test_batch_norm(shape, seed, training, affine, thread_count):
    if training and np.prod(shape) // shape[1] < 2:
        return  # one value per channel: no variance to train with
    channels = shape[1]
    mean, var = rand((channels,), seed + 1), rand((channels,), seed + 2) + 1.5
    arrays = [rand(shape, seed) * 3 + 1] + ([rand((channels,), seed + 3), rand((channels,), seed + 4)] if affine else [])

    def op(x, weight=None, bias=None):
        return F.batch_norm(x, minidl.tensor(mean.copy()), minidl.tensor(var.copy()), weight, bias, training=training)

    assert_fast_equals_reference(BatchNorm, op, arrays, seed, thread_count)


# --------------------------------------------------------------------------- ReLU, cross-entropy
@checks(Relu)
@given(shape=st.lists(st.integers(0, 7), min_size=1, max_size=4), seed=seeds, layout=st.booleans())
def test_relu(shape, seed, layout):
    x = rand(shape, seed)
    assert_fast_equals_reference(Relu, F.relu, [maybe_transposed(x, layout and x.ndim >= 2)], seed, exact=True)


@checks(CrossEntropy)
@given(shape=st.tuples(st.integers(1, 4), st.integers(2, 6), st.integers(1, 5), st.integers(1, 5)), seed=seeds,
       weighted=st.booleans(), smoothing=st.sampled_from([0.0, 0.2]), reduction=st.sampled_from(["mean", "sum", "none"]))
def test_cross_entropy(shape, seed, weighted, smoothing, reduction):
    rng = np.random.default_rng(seed)
    target = rng.integers(-1, shape[1], size=(shape[0],) + shape[2:])  # -1: ignored
    weight = minidl.tensor(rng.uniform(0.5, 2, shape[1])) if weighted else None
    op = lambda z, t: F.cross_entropy(z, t, weight=weight, ignore_index=-1, reduction=reduction,  # noqa: E731
                                      label_smoothing=smoothing)
    assert_fast_equals_reference(CrossEntropy, op, [rand(shape, seed) * 4, target], seed)


# --------------------------------------------------------------------------- the switch
def test_set_kernels_rejects_an_unknown_set():
    with pytest.raises(ValueError, match=r"set_kernels: expected one of \('reference', 'fast'\), got 'quick'"):
        minidl.set_kernels("quick")


@pytest.mark.parametrize("value, expected", [("reference", "reference"), ("fast", "fast")])
def test_the_environment_variable_chooses_the_kernel_set(value, expected):
    code = "import minidl; print(minidl.get_kernels())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**__import__("os").environ, "MINIDL_KERNELS": value})
    assert result.stdout.strip() == expected


def test_a_wrong_environment_variable_is_an_error_that_names_it():
    result = subprocess.run([sys.executable, "-c", "import minidl"], capture_output=True, text=True,
                            env={**__import__("os").environ, "MINIDL_KERNELS": "turbo"})
    assert result.returncode != 0 and "MINIDL_KERNELS must be one of ('reference', 'fast'), got 'turbo'" in result.stderr


def test_a_fast_kernels_graph_node_keeps_the_reference_name():
    x = minidl.randn(1, 2, 4, 4, requires_grad=True)
    with use_kernels("fast"):
        node = F.conv2d(x, minidl.randn(3, 2, 3, 3)).grad_fn
    assert type(node).__name__ == "FastConv2d" and node.name == "Conv2dBackward"
