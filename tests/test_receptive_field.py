"""Receptive fields: the analytic windows against the gradient (empirical) and against a brute-force oracle.

The empirical receptive field of an output pixel is the set of input pixels with a
non-zero gradient of that pixel. With positive weights nothing cancels, and average
pooling (whose gradient reaches its whole window) stands in for max pooling (whose
gradient reaches one pixel per window), so that set must be exactly the analytic
window -- a rectangle -- unless a layer leaves holes (dilation, or a stride larger
than the kernel): then the window is the set's bounding box.
"""
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

import minidl
from minidl import nn
from minidl.models import FCN, SegNet, UNet
from minidl.summary import receptive_window

# --------------------------------------------------------------------------- random stacks
# A layer is (kind, kernel, stride, padding, dilation); "up" is an nn.Upsample(x2) whose kernel says the mode.
conv = st.tuples(st.just("conv"), st.integers(1, 4), st.integers(1, 2), st.integers(0, 2), st.integers(1, 2))
pool = st.tuples(st.just("avgpool"), st.integers(2, 3), st.integers(1, 3), st.integers(0, 1), st.just(1))
up = st.tuples(st.just("up"), st.sampled_from(["nearest", "bilinear"]), st.just(2), st.just(0), st.just(1))
convT = st.integers(2, 4).flatmap(  # kernel >= stride: every output pixel receives from some input
    lambda k: st.tuples(st.just("convT"), st.just(k), st.integers(1, min(k, 2)), st.integers(0, k - 1), st.just(1)))
stacks = st.lists(st.one_of(conv, pool, up, convT), min_size=1, max_size=5)


def build(layers, channels=2):
    """nn.Sequential of the layers, every weight positive (uniform in [0.5, 1]), no bias."""
    modules = []
    for kind, k, s, p, d in layers:
        if kind == "conv":
            modules.append(nn.Conv2d(channels, channels, k, stride=s, padding=min(p, k // 2), dilation=d, bias=False))
        elif kind == "avgpool":
            modules.append(nn.AvgPool2d(k, s, min(p, k // 2)))
        elif kind == "up":
            modules.append(nn.Upsample(scale_factor=2, mode=k))
        else:
            modules.append(nn.ConvTranspose2d(channels, channels, k, stride=s, padding=p, bias=False))
    net = nn.Sequential(*modules)
    rng = np.random.default_rng(0)
    for parameter in net.parameters():
        parameter.data = minidl.tensor(rng.uniform(0.5, 1.0, parameter.shape).astype(np.float32))
    return net


def has_holes(layers):
    """Dilation, or a conv/pool stride larger than its kernel, skips input pixels inside the window."""
    return any(kind in ("conv", "avgpool") and (d > 1 or s > k) for kind, k, s, p, d in layers)


def empirical_field(net, x, pixel):
    """Boolean (H, W) mask of the input pixels with a non-zero gradient of output[0, :, row, col]."""
    x = minidl.tensor(x, requires_grad=True)
    y = net(x)
    seed = np.zeros(y.shape, np.float32)
    seed[0, :, pixel[0], pixel[1]] = 1.0
    y.backward(minidl.tensor(seed))
    return (x.grad.numpy() != 0).any(axis=(0, 1))


def output_or_none(net, x):
    try:
        return net(minidl.tensor(x))
    except ValueError:  # a layer got an input smaller than its window
        return None


def rectangle(shape, window):
    (top, bottom), (left, right) = window
    mask = np.zeros(shape, bool)
    mask[top : bottom + 1, left : right + 1] = True
    return mask


# --------------------------------------------------------------------------- the analytic window is the gradient's
@given(stacks, st.integers(6, 28), st.integers(6, 28))
def test_analytic_window_is_the_set_of_pixels_with_a_gradient(layers, height, width):
    net = build(layers)
    x = np.random.default_rng(1).uniform(0.5, 1.0, (1, 2, height, width)).astype(np.float32)
    y = output_or_none(net, x)
    assume(y is not None and y.numel() <= 20000)
    pixel = (y.shape[2] // 2, y.shape[3] // 2)
    seen = empirical_field(net, x, pixel)
    window = receptive_window(net, x, pixel)
    assert seen.any()
    if has_holes(layers):  # the window holds every pixel seen, and the holes too
        assert not (seen & ~rectangle(seen.shape, window)).any()
    else:
        np.testing.assert_array_equal(seen, rectangle(seen.shape, window))


def test_dilation_leaves_holes_inside_the_window():
    net = build([("conv", 3, 1, 0, 2)], channels=1)  # taps 2 pixels apart
    x = np.ones((1, 1, 9, 9), np.float32)
    seen = empirical_field(net, x, (2, 2))
    assert receptive_window(net, x, (2, 2)) == ((2, 6), (2, 6))
    np.testing.assert_array_equal(np.flatnonzero(seen.any(axis=1)), [2, 4, 6])


# --------------------------------------------------------------------------- skips: the path-wise maximum
def positive_model(model):
    """Positive weights, batch norm as the identity (eval mode, fresh statistics), average pooling."""
    rng = np.random.default_rng(0)
    for name, parameter in model.named_parameters():
        if parameter.ndim == 1:  # biases and batch norm's shift: 0; batch norm's scale: 1
            values = np.ones(parameter.shape) if name.endswith("weight") else np.zeros(parameter.shape)
        else:
            values = rng.uniform(0.5, 1.0, parameter.shape)
        parameter.data = minidl.tensor(values.astype(np.float32))
    return model.eval()


@pytest.mark.parametrize("make", [
    lambda: UNet(1, 1, widths=(2, 2, 2)),                          # concatenated skips, transposed convs
    lambda: UNet(1, 1, widths=(2, 2, 2), upsampling="bilinear"),   # concatenated skips, F.interpolate
    lambda: FCN(1, 1, widths=(2, 2, 2)),                           # added skips, strided and transposed convs
], ids=["unet", "unet-bilinear", "fcn"])
def test_skip_architectures_window_is_the_hull_of_all_paths(make):
    model = positive_model(make())
    if isinstance(model, UNet):
        model.pool = nn.AvgPool2d(2)  # max pooling's gradient reaches one pixel per window
    x = np.random.default_rng(1).uniform(0.5, 1.0, (1, 1, 44, 40)).astype(np.float32)
    for pixel in [(22, 20), (0, 0), (43, 5)]:
        seen = empirical_field(model, x, pixel)
        np.testing.assert_array_equal(seen, rectangle(seen.shape, receptive_window(model, x, pixel)), err_msg=str(pixel))
    # the output's field is the largest of all paths: at least the bottleneck's, not the short skip's
    s = minidl.summary(model, (1, 1, 64, 64))
    assert s.receptive_field[0] == max(row.receptive_field.size[0] for row in s.rows) > s.rows[0].receptive_field.size[0]


# --------------------------------------------------------------------------- the summary's figures: a brute-force oracle
def oracle_window(layers, pixel):
    """Unclipped input window of one output pixel, by enumerating every tap of every layer (no formulas).

    gather (conv, pool): output o reads o*s - p + d*t; scatter (transposed conv,
    nearest upsampling, unpooling): input i writes i*s - p + d*t, so output o gets
    every i with i*s = o + p - d*t.
    """
    pixels = {pixel}
    for kind, k, s, p, d in reversed(layers):
        if kind == "gather":
            pixels = {o * s - p + d * t for o in pixels for t in range(k)}
        else:
            pixels = {(o + p - d * t) // s for o in pixels for t in range(k) if (o + p - d * t) % s == 0}
    return min(pixels), max(pixels)


def oracle_figures(layers):
    """(size, jump, start) on one axis, the size being the largest over a whole period of output pixels."""
    jump, period = Fraction(1), 1
    for kind, k, s, p, d in layers:
        jump, period = (jump * s, period) if kind == "gather" else (jump / s, period * s)
    windows = [oracle_window(layers, o) for o in range(2 * period)]
    return max(hi - lo + 1 for lo, hi in windows), jump, windows[0][0]


def as_oracle_layers(layers):
    kinds = {"conv": "gather", "avgpool": "gather", "convT": "scatter"}
    out = []
    for kind, k, s, p, d in layers:
        if kind == "up":
            out.append(("scatter", 2, 2, 0, 1))  # nearest x2: each input pixel written to 2 outputs
        else:
            out.append((kinds[kind], k, s, min(p, k // 2) if kind != "convT" else p, d))
    return out


nearest = st.tuples(st.just("up"), st.just("nearest"), st.just(2), st.just(0), st.just(1))


@given(st.lists(st.one_of(conv, pool, nearest, convT), min_size=1, max_size=5))
def test_summary_figures_match_a_brute_force_oracle(layers):
    net = build(layers)
    x = np.ones((1, 2, 24, 24), np.float32)
    assume(output_or_none(net, x) is not None)
    field = minidl.summary(net, x.shape).rows[-1].receptive_field
    size, jump, start = oracle_figures(as_oracle_layers(layers))
    assert field.size == (size, size) and field.jump == (jump, jump) and field.start == (start, start)


def test_segnet_unpooling_figures_match_the_oracle():
    """SegNet's unpooling is a scatter (k = s = 2): its window comes from the module, the graph keeps only indices."""
    model = SegNet(3, 3, widths=(4, 4), convs_per_stage=1)
    conv3, pool2, unpool2 = ("gather", 3, 1, 1, 1), ("gather", 2, 2, 0, 1), ("scatter", 2, 2, 0, 1)
    layers = [conv3, pool2, conv3, pool2, unpool2, conv3, unpool2, conv3, ("gather", 1, 1, 0, 1)]
    s = minidl.summary(model, (1, 3, 32, 32))
    size, jump, start = oracle_figures(layers)
    assert s.receptive_field == (size, size) == (18, 18)
    assert s.rows[-1].receptive_field.start == (start, start) and s.rows[-1].receptive_field.jump == (jump, jump)


def test_classic_arithmetic_for_a_plain_stack():
    """Conv/pool only: size = 1 + sum d(k-1) * jump, jump = product of strides, start = -sum p * jump."""
    net = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.MaxPool2d(2), nn.Conv2d(1, 1, 5, padding=2),
                        nn.Conv2d(1, 1, 3, stride=2, padding=2, dilation=2), nn.AvgPool2d(3, 1, 1))
    fields = [row.receptive_field for row in minidl.summary(net, (1, 1, 64, 64)).rows]
    assert [f.size[0] for f in fields] == [3, 4, 4 + 4 * 2, 12 + 2 * 2 * 2, 20 + 2 * 4]
    assert [f.jump[0] for f in fields] == [1, 2, 2, 4, 4]
    assert [f.start[0] for f in fields] == [-1, -1, -1 - 2 * 2, -5 - 2 * 2, -9 - 1 * 4]
