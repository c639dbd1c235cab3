"""What the functional ops and the layer modules share: argument checks and two shape helpers.

Every check raises an error that names the op, the argument and the value
it got, so that a wrong call fails at the call, not deep inside an op.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["pair", "positive_pair", "non_negative_pair", "check_4d", "check_same_dtype", "ncm_shape", "as_ncm"]


# --------------------------------------------------------------------------- argument checks
def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def pair(value, name, op):
    """An int or a pair of ints -> (for height, for width): ``3 -> (3, 3)``, as PyTorch's ``_pair``."""
    if _is_int(value):
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) for v in value):
        return int(value[0]), int(value[1])
    raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")


def positive_pair(value, name, op):
    """``pair``, each value at least 1 (kernel sizes, strides, dilations)."""
    result = pair(value, name, op)
    if min(result) <= 0:
        raise ValueError(f"{op}: {name} must be positive, got {result}")
    return result


def non_negative_pair(value, name, op):
    """``pair``, each value at least 0 (paddings)."""
    result = pair(value, name, op)
    if min(result) < 0:
        raise ValueError(f"{op}: {name} must be non-negative, got {result}")
    return result


def check_4d(x, op, layout="(N, C, H, W)", name="input"):
    """A ValueError unless ``x`` has 4 dimensions, described by ``layout``."""
    if x.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D {name} {layout}, got shape {tuple(x.shape)}")


def check_same_dtype(op, **tensors):
    """A RuntimeError unless the given tensors (None ones left out) share one dtype."""
    present = {name: t for name, t in tensors.items() if t is not None}
    if len({t.dtype for t in present.values()}) > 1:
        listing = ", ".join(f"{name} {t.dtype}" for name, t in present.items())
        raise RuntimeError(f"{op}: expected input, weight and bias of the same dtype, got {listing}")


# --------------------------------------------------------------------------- shapes
def ncm_shape(shape):
    """(N, C, d1, ..., dk) -> (N, C, M), M = d1*...*dk (1 for (N, C)); an unbatched (C,) is (1, C, 1).

    Per-channel ops (batch norm) and per-class ops (the losses) see any input
    as N images of C channels of M values each.
    """
    if len(shape) == 1:
        return 1, shape[0], 1
    return shape[0], shape[1], math.prod(shape[2:])


def as_ncm(array):
    """(N, C, *) -> (N, C, M): a view for a contiguous array (see ``ncm_shape``)."""
    return array.reshape(ncm_shape(array.shape))
