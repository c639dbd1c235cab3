"""Dropout: ``dropout`` (single elements) and ``dropout2d`` (whole channels).

During training each element (or channel) is zeroed with probability p and
the survivors are scaled by 1 / (1 - p) -- "inverted" dropout -- so the
expected value of every output equals its input and nothing needs rescaling
at evaluation time, where dropout is the identity.

Both are one op, y = x * mask, with mask holding 0 (dropped) or 1 / (1 - p)
(kept); its gradient is dy * mask. The mask is drawn from
``minidl.backend.random_uniform`` on the tensor's device, so
``minidl.manual_seed`` makes it reproducible.
"""
from __future__ import annotations

import numbers

from ...autograd.function import Function
from ...backend import random_uniform
from ... import dtypes

__all__ = ["dropout", "dropout2d"]


class ApplyMask(Function):
    """y = x * mask, with a mask that broadcasts against x; dx = dy * mask."""

    @staticmethod
    def forward(ctx, x, mask):
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return grad * mask, None


def _scaled_keep_mask(shape, p, x):
    """An array of ``shape`` (x's dtype and device): 1/(1-p) with probability 1-p, else 0."""
    mask = (random_uniform(shape, x.dtype, x.device) >= p).astype(x.dtype)  # P(u >= p) = 1 - p
    if p < 1:  # (p == 1 drops everything: the mask stays 0, where 1/(1-p) would be inf and 0 * inf nan)
        mask *= x.dtype.type(1 / (1 - p))
    return mask


def _masked(x, p, training, mask_shape, name):
    _check_dropout_args(x, p, name)
    if not training or p == 0:
        return x
    return ApplyMask.apply(x, _scaled_keep_mask(mask_shape, p, x))


def dropout(x, p=0.5, training=True):
    """Zero each element of x with probability p and scale the rest by 1/(1-p).

    Identity when ``training`` is False or p == 0 (returns x itself). p must
    lie in [0, 1]; p == 1 drops everything and returns zeros, as PyTorch does.
    """
    return _masked(x, p, training, x.shape, "dropout")


def dropout2d(x, p=0.5, training=True):
    """Zero whole channels of x: (N, C, H, W), each (n, c) plane with probability p.

    The kept channels are scaled by 1/(1-p). Used after convolutions, where
    neighbouring pixels are so correlated that dropping single ones does little.
    """
    if x.ndim != 4:
        raise ValueError(f"dropout2d expects an input of shape (N, C, H, W), got shape {tuple(x.shape)}")
    n, c = x.shape[:2]
    return _masked(x, p, training, (n, c, 1, 1), "dropout2d")


def _check_dropout_args(x, p, name):
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p <= 1:
        raise ValueError(f"{name}: dropout probability has to be between 0 and 1, but got {p!r}")
    if not dtypes.is_floating(x.dtype):
        raise TypeError(f"{name} expects a floating point input, got {x.dtype}")
