"""Batch normalisation: ``batch_norm``, one fused op with a closed-form backward.

For every channel c of an input x of shape (N, C, *), with all the values of
that channel -- over the batch and every spatial position, n of them -- as
one population::

    mean = sum(x) / n                  var = sum((x - mean)^2) / n   (biased)
    x_hat = (x - mean) / sigma         sigma = sqrt(var + eps)
    y = gamma * x_hat + beta

In training the statistics come from the batch, so every output depends on
every input of its channel, and the gradient has two extra terms::

    dx = gamma / sigma * (dy - sum(dy) / n - x_hat * sum(dy * x_hat) / n)
    dgamma = sum(dy * x_hat)           dbeta = sum(dy)

(the ``(1/n) gamma/sigma (n dy - sum dy - x_hat sum(dy x_hat))`` of the
papers). In evaluation the running statistics are constants and y is an
affine function of x: dx = gamma / sigma * dy.

Written as one Function rather than a chain of small ops (sub, mul, mean...)
because a chain keeps a full-size temporary per op alive for backward; here
backward needs only x (which exists anyway) and a few numbers per channel.

This file is the reference; minidl/kernels/cpu/normalization.py holds the fast
CPU kernel (the same formulas, a cache-sized block at a time, on several threads).
"""
from __future__ import annotations

import math
import numbers

from ...autograd.function import Function
from ...backend import array_module
from ... import dtypes
from .common import as_ncm

__all__ = ["batch_norm"]


# --------------------------------------------------------------------------- per-channel sums
# The op works on an (N, C, M) view of the input, M = the product of the
# spatial sizes (1 for (N, C)): row (n, c) holds image n's values of channel c.
def channel_sum(a):
    """Sum over N and M of an (N, C, M) array -> (C,).

    Summing the contiguous last axis first lets NumPy use pairwise summation,
    accurate in float32 without a float64 copy.
    """
    return a.sum(axis=2).sum(axis=0)


def channel_dot(a, b):
    """sum(a * b) over N and M of two (N, C, M) arrays -> (C,), with no (N, C, M) temporary.

    One BLAS dot product per (n, c) row, written as a batched matmul of
    (N, C, 1, M) by (N, C, M, 1).
    """
    xp = array_module(a)
    return xp.matmul(a[:, :, None, :], b[:, :, :, None])[:, :, 0, 0].sum(axis=0)


def per_channel(values):
    """(C,) -> (C, 1), which broadcasts against (N, C, M) along the channel axis."""
    return values.reshape(-1, 1)


def gamma_or_ones(weight, like):
    """The scale gamma as an array: the weight, or ones when there is none."""
    if weight is None:
        return array_module(like).ones_like(like)
    return weight.astype(like.dtype, copy=False)


# --------------------------------------------------------------------------- the op
class BatchNorm(Function):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta, per channel of x: (N, C, *).

    ``mean`` and ``var`` are None for batch statistics (computed here, with
    the gradient flowing through them), or the running statistics (C,),
    treated as constants. ``weight`` (gamma) and ``bias`` (beta) are (C,) or None.

    Returns (y, mean, var): the statistics used, var biased, as non-differentiable
    extras (the caller updates the running statistics from them).
    Backward keeps only x (which exists anyway) and three (C,) vectors, and
    computes x_hat again.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, mean, var, eps):
        xp, channels = array_module(x), _channels_of(x)  # channels(v): (C,) -> (1, C, 1, ...), against x
        count = _values_per_channel(x)
        batch_stats = mean is None
        if batch_stats:
            mean = channel_sum(as_ncm(x)) / count
            centred = x - channels(mean)
            var = channel_dot(as_ncm(centred), as_ncm(centred)) / count  # biased: sum((x - mean)^2) / n
        else:
            mean, var = mean.astype(x.dtype, copy=False), var.astype(x.dtype, copy=False)
        invstd = 1 / xp.sqrt(var + eps)
        gamma = gamma_or_ones(weight, invstd)
        x_hat = (x - channels(mean)) * channels(invstd)
        y = channels(gamma) * x_hat
        if bias is not None:
            y += channels(bias.astype(x.dtype, copy=False))
        ctx.save_for_backward(x, mean, invstd, gamma)
        ctx.batch_stats = batch_stats
        return y, mean, var

    @staticmethod
    def backward(ctx, grad):
        x, mean, invstd, gamma = ctx.saved_tensors
        need_x, need_weight, need_bias = ctx.needs_input_grad[:3]
        channels, count = _channels_of(x), _values_per_channel(x)
        x_hat = (x - channels(mean)) * channels(invstd)
        sum_dy, sum_dy_xhat = channel_sum(as_ncm(grad)), channel_dot(as_ncm(grad), as_ncm(x_hat))
        grad_x = None
        if need_x and ctx.batch_stats:  # the statistics depend on x: two more terms
            grad_x = channels(gamma * invstd) * (grad - channels(sum_dy / count) - x_hat * channels(sum_dy_xhat / count))
        elif need_x:  # running statistics: y is affine in x
            grad_x = channels(gamma * invstd) * grad
        return grad_x, sum_dy_xhat if need_weight else None, sum_dy if need_bias else None, None, None, None


def _channels_of(x):
    """A function that reshapes a per-channel (C,) vector to broadcast against x (N, C, *)."""
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    return lambda values: values.reshape(shape)


def _values_per_channel(x):
    return x.shape[0] * math.prod(x.shape[2:])


# --------------------------------------------------------------------------- public function
def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Batch normalisation of x: (N, C), (N, C, L), (N, C, H, W) or any (N, C, *).

    - training=True: normalise with the batch's mean and biased variance per
      channel; the gradient flows through those statistics. If running stats
      are given they are updated IN PLACE (no graph), as PyTorch does::

          running_mean = (1 - momentum) * running_mean + momentum * mean
          running_var  = (1 - momentum) * running_var  + momentum * var * n / (n - 1)

      (the running variance uses the unbiased estimate; n = values per channel).
    - training=False: normalise with running_mean / running_var (C,).
    - running_mean and running_var may be None: then batch statistics are
      used in both modes and nothing is updated.

    weight (gamma) and bias (beta) are (C,) tensors or None (scale 1, shift 0).
    Raises ValueError for a wrong input rank, a (C,) tensor of the wrong size, or
    a single value per channel in training (its variance is undefined).
    """
    _check_batch_norm_args(x, running_mean, running_var, weight, bias, training, momentum)
    check_eps(eps, "batch_norm")
    use_batch_stats = training or running_mean is None
    stats = (None, None) if use_batch_stats else (running_mean._array, running_var._array)
    y, batch_mean, batch_var = BatchNorm.apply(x, weight, bias, *stats, float(eps))
    if use_batch_stats:
        _check_no_constant_channel(batch_var._array, eps)
    if training and running_mean is not None:
        count = x.numel() // x.shape[1]
        update_running_stats(running_mean, running_var, batch_mean._array, batch_var._array, count, momentum)
    return y


def update_running_stats(running_mean, running_var, batch_mean, batch_var, count, momentum):
    """Exponential moving average, written into the running tensors' own arrays (no graph)."""
    unbiased_var = batch_var * (count / (count - 1))
    for running, batch in ((running_mean, batch_mean), (running_var, unbiased_var)):
        target = running._array
        target *= 1 - momentum
        target += (momentum * batch).astype(target.dtype, copy=False)


def check_eps(eps, op):
    """eps must be a finite number >= 0 (0 is allowed, as in PyTorch; see ``_check_no_constant_channel``)."""
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0 <= eps < math.inf:
        raise ValueError(f"{op}: eps must be a finite number >= 0, got {eps!r}")


def _check_no_constant_channel(batch_var, eps):
    """With eps = 0, a channel that is constant in the batch (var 0) would give 0/0 = nan everywhere in it."""
    if eps == 0:
        constant = array_module(batch_var).flatnonzero(batch_var == 0)
        if constant.size:
            raise ValueError(f"batch_norm: channel(s) {constant.tolist()[:10]} are constant in this batch and eps=0, "
                             f"so 1/sqrt(var + eps) is infinite and the output nan; use eps > 0 (the default is 1e-5)")


def _check_batch_norm_args(x, running_mean, running_var, weight, bias, training, momentum):
    if x.ndim < 2:
        raise ValueError(f"batch_norm expects an input of shape (N, C) or (N, C, *), got shape {tuple(x.shape)}")
    if not dtypes.is_floating(x.dtype):
        raise TypeError(f"batch_norm expects a floating point input, got {x.dtype}")
    if (running_mean is None) != (running_var is None):
        raise ValueError("batch_norm: give both running_mean and running_var, or neither")
    if not isinstance(momentum, numbers.Real):
        raise TypeError(f"batch_norm: momentum must be a number, got {momentum!r}")
    channels = x.shape[1]
    for name, tensor in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias)):
        if tensor is None:
            continue
        if tuple(tensor.shape) != (channels,):
            raise ValueError(
                f"batch_norm: {name} should have shape ({channels},) for an input with {channels} channels "
                f"(shape {tuple(x.shape)}), got shape {tuple(tensor.shape)}"
            )
        if tensor.device != x.device:
            raise RuntimeError(f"batch_norm: {name} is on {tensor.device} but the input is on {x.device}")
    if training and x.numel() // max(channels, 1) <= 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {tuple(x.shape)}")
