"""Hypothesis strategies for property-testing ops and layers (needs ``pip install hypothesis``).

Property-test an op of your own in a few lines::

    from hypothesis import given
    import minidl
    from minidl.testing import tensors

    @given(tensors(min_dims=1, max_dims=3))
    def test_my_op_gradient(x):
        assert minidl.gradcheck(my_op, [x])

Strategies draw small shapes and well-conditioned float64 values, so that
finite differences are accurate and gradchecks stay fast.

examples/custom_op.py is a complete worked example: a SiLU ``Function``, its
gradcheck and hypothesis tests, and what each kind of broken backward prints.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import minidl

__all__ = ["shapes", "broadcastable_shapes", "float_arrays", "tensors", "tensor_pairs", "conv_configs"]


def shapes(min_dims=0, max_dims=4, min_side=1, max_side=5):
    """Array shapes, e.g. ``(3, 1, 4)``."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def broadcastable_shapes(min_dims=0, max_dims=4, min_side=1, max_side=5):
    """Pairs of shapes that broadcast together, e.g. ``((3, 1, 4), (2, 1))``."""
    return hnp.mutually_broadcastable_shapes(
        num_shapes=2, min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side
    ).map(lambda result: result.input_shapes)


def float_arrays(shape, low=-3.0, high=3.0, away_from_zero=0.0, unique=False, dtype=np.float64):
    """Float arrays of ``shape`` (a tuple or a strategy) with values in [low, high].

    ``away_from_zero`` > 0 keeps |value| >= it (for log, division, or kinks at 0).
    ``unique=True`` draws distinct values (for max/min/sort, whose gradient is
    undefined at ties).
    Values are spread out, not denormal, and never NaN or infinite.
    """
    if unique:
        # distinct values on a grid of 1/64 (exact in binary): ties and near-ties,
        # where the gradient of max/min jumps, cannot occur within a gradcheck's eps
        elements = st.integers(int(np.ceil(low * 64)), int(np.floor(high * 64))).map(lambda i: i / 64)
    else:
        elements = st.floats(low, high, allow_nan=False, allow_infinity=False, allow_subnormal=False, width=64)
    if away_from_zero:
        elements = elements.filter(lambda v: abs(v) >= away_from_zero)
    return hnp.arrays(dtype=dtype, shape=shape, elements=elements, unique=unique)


def tensors(shape=None, min_dims=0, max_dims=4, min_side=1, max_side=5, requires_grad=True, device="cpu", **value_options):
    """minidl Tensors (float64 by default) of a drawn (or given) shape."""
    shape = shapes(min_dims, max_dims, min_side, max_side) if shape is None else shape
    dtype = value_options.pop("dtype", np.float64)
    return float_arrays(shape, dtype=dtype, **value_options).map(
        lambda array: minidl.tensor(array, device=device, requires_grad=requires_grad)
    )


def tensor_pairs(min_dims=0, max_dims=3, max_side=4, **value_options):
    """Two tensors whose shapes broadcast together."""
    return broadcastable_shapes(min_dims, max_dims, 1, max_side).flatmap(
        lambda pair: st.tuples(tensors(pair[0], **value_options), tensors(pair[1], **value_options))
    )


@st.composite
def conv_configs(draw, max_batch=2, max_channels=4, max_kernel=3, max_stride=3, max_dilation=2, max_groups=2, transposed=False):
    """A dict describing a valid conv2d (or conv_transpose2d) call: shapes and hyper-parameters.

    Keys: x_shape, w_shape, stride, padding, dilation, groups (and output_padding when transposed).
    """
    groups = draw(st.integers(1, max_groups))
    in_per_group = draw(st.integers(1, max(1, max_channels // groups)))
    out_per_group = draw(st.integers(1, max(1, max_channels // groups)))
    kh, kw = draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel))
    stride = (draw(st.integers(1, max_stride)), draw(st.integers(1, max_stride)))
    dilation = (draw(st.integers(1, max_dilation)), draw(st.integers(1, max_dilation)))
    padding = (draw(st.integers(0, (kh - 1) * dilation[0] // 2 + 1)), draw(st.integers(0, (kw - 1) * dilation[1] // 2 + 1)))
    batch = draw(st.integers(1, max_batch))
    config = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    if transposed:
        # output_padding must be smaller than stride or dilation (PyTorch's rule)
        config["output_padding"] = tuple(
            draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation)
        )
        h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
        config["x_shape"] = (batch, in_per_group * groups, h, w)
        config["w_shape"] = (in_per_group * groups, out_per_group, kh, kw)
        return config
    # input large enough for at least one output pixel
    min_h = max(1, (kh - 1) * dilation[0] + 1 - 2 * padding[0])
    min_w = max(1, (kw - 1) * dilation[1] + 1 - 2 * padding[1])
    h, w = draw(st.integers(min_h, min_h + 5)), draw(st.integers(min_w, min_w + 5))
    config["x_shape"] = (batch, in_per_group * groups, h, w)
    config["w_shape"] = (out_per_group * groups, in_per_group, kh, kw)
    return config
