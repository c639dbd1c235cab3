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
backward needs only x (which exists anyway) and two numbers per channel.
"""
from __future__ import annotations

import math
import numbers

from ...autograd.function import Function
from ...backend import array_module
from ... import dtypes
from ...kernels.cpu.threads import channel_blocks, parallel_map

__all__ = ["batch_norm"]


# --------------------------------------------------------------------------- per-channel sums
# The op works on a (N, C, M) view of the input, M = the product of the
# spatial sizes (1 for (N, C)). For a contiguous input that reshape is free.
def _as_ncm(array):
    """(N, C, *) -> (N, C, M), a view for a contiguous array."""
    return array.reshape(array.shape[0], array.shape[1], math.prod(array.shape[2:]))  # (-1 fails when N is 0)


def _channel_sum(a):
    """Sum over N and M of an (N, C, M) array -> (C,).

    Summing the contiguous last axis first lets NumPy use pairwise summation,
    accurate in float32 without a float64 copy.
    """
    return a.sum(axis=2).sum(axis=0)


def _channel_dot(a, b):
    """sum(a * b) over N and M of two (N, C, M) arrays -> (C,), with no (N, C, M) temporary.

    One BLAS dot product per (n, c) row, written as a batched matmul of
    (N, C, 1, M) by (N, C, M, 1). It never materialises a * b, and BLAS's
    blocked accumulation is more accurate than a running float32 sum.
    """
    xp = array_module(a)
    return xp.matmul(a[:, :, None, :], b[:, :, :, None])[:, :, 0, 0].sum(axis=0)


def _channel_total(parts, blocks, like):
    """Each block's per-channel sums (C_block,) -> the totals (C,) over all blocks.

    Blocks that share channels are added in order (image by image), so one
    block per image gives the same numbers as summing the whole batch at once.
    """
    total = array_module(like).zeros(like.shape[1], dtype=like.dtype)
    for (_, channels), part in zip(blocks, parts):
        total[channels] += part
    return total


def _per_channel(values):
    """(C,) -> (C, 1), which broadcasts against (N, C, M) along the channel axis."""
    return values.reshape(-1, 1)


# --------------------------------------------------------------------------- the op
# Every full-size pass runs block by block (``threads.channel_blocks``: a few MB of images or
# channels each, shared among the threads): the passes that follow one another on the same
# numbers -- subtract, multiply, add -- then find their block still in the CPU's cache. A
# per-channel sum is the sum of its blocks' parts (``_channel_total``).
class BatchNorm(Function):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta, per channel of x: (N, C, *).

    ``mean`` and ``var`` are None for batch statistics (computed here, with
    the gradient flowing through them), or the running statistics (C,),
    treated as constants. ``weight`` (gamma) and ``bias`` (beta) are (C,) or None.

    Returns (y, mean, var): the statistics used, var biased, as non-differentiable
    extras (the caller updates the running statistics from them).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, mean, var, eps):
        xp, x3 = array_module(x), _as_ncm(x)
        count = x3.shape[0] * x3.shape[2]  # values per channel
        blocks = channel_blocks(x3)
        batch_stats = mean is None
        # The output buffer first holds x - mean: the variance is computed from
        # the centred values (two-pass, no cancellation as in E[x^2] - mean^2),
        # then the same buffer is scaled and shifted in place into y. The
        # forward pass allocates this one full-size array and nothing else.
        out = xp.empty(x.shape, dtype=x.dtype)  # made in x's shape: handed on, it is an array of its own, not a view
        y = _as_ncm(out)

        def centre(block, mean):  # y = x - mean in this block
            xp.subtract(x3[block], _per_channel(mean[block[1]]), out=y[block])

        def sum_of_squares(block, mean):  # centre, then the block's sums of (x - mean)^2 per channel (C_block,)
            centre(block, mean)
            return _channel_dot(y[block], y[block])

        def scale_and_shift(block, scale, shift):  # y = (x - mean) * gamma * invstd + beta, in place
            y[block] *= _per_channel(scale[block[1]])
            if shift is not None:
                y[block] += _per_channel(shift[block[1]])

        if batch_stats:
            mean = _channel_total(parallel_map(lambda block: _channel_sum(x3[block]), blocks), blocks, x3) / count
            var = _channel_total(parallel_map(lambda block: sum_of_squares(block, mean), blocks), blocks, x3) / count
        else:
            mean, var = mean.astype(x.dtype, copy=False), var.astype(x.dtype, copy=False)
        invstd = 1 / xp.sqrt(var + eps)
        gamma = _gamma(weight, invstd)
        scale, shift = gamma * invstd, None if bias is None else bias.astype(x.dtype, copy=False)

        def normalise(block):  # with batch statistics y is centred already; else centring shares the visit
            if not batch_stats:
                centre(block, mean)
            scale_and_shift(block, scale, shift)

        parallel_map(normalise, blocks)

        ctx.save_for_backward(x, mean, invstd, gamma)
        ctx.batch_stats = batch_stats
        return out, mean, var

    @staticmethod
    def backward(ctx, grad):
        x, mean, invstd, gamma = ctx.saved_tensors
        need_x, need_weight, need_bias = ctx.needs_input_grad[:3]
        xp, x3, dy = array_module(grad), _as_ncm(x), _as_ncm(grad)
        count = x3.shape[0] * x3.shape[2]
        blocks = channel_blocks(x3)
        # x - mean, full size; it becomes grad_x in training. Made in x's shape, so that grad_x is an
        # array of its own, not a view (a leaf input keeps it as its .grad without a copy).
        grad_x_buffer = xp.empty(x.shape, dtype=x.dtype) if need_weight or (need_x and ctx.batch_stats) else None
        centred = None if grad_x_buffer is None else _as_ncm(grad_x_buffer)

        def sums(block):  # this block's sum(dy) and, if wanted, sum(dy * (x - mean)), per channel
            if centred is None:
                return _channel_sum(dy[block]), None
            xp.subtract(x3[block], _per_channel(mean[block[1]]), out=centred[block])
            return _channel_sum(dy[block]), _channel_dot(dy[block], centred[block])

        parts = parallel_map(sums, blocks)
        sum_dy = _channel_total([part[0] for part in parts], blocks, x3)
        grad_x = grad_weight = None
        if centred is not None:
            sum_dy_xhat = _channel_total([part[1] for part in parts], blocks, x3) * invstd  # sum(dy * x_hat)
            grad_weight = sum_dy_xhat if need_weight else None

        if need_x and ctx.batch_stats:
            # dx = gamma*invstd * (dy - sum_dy/n - x_hat * sum_dy_xhat/n), with
            # x_hat = centred*invstd, built in place in the `centred` buffer
            # (numpy has no fused multiply-add, so four in-place passes, over one block at a time):
            x_hat_factor, mean_dy, scale = invstd * sum_dy_xhat / count, sum_dy / count, gamma * invstd

            def input_gradient(block):
                channels, dx = block[1], centred[block]
                dx *= _per_channel(x_hat_factor[channels])  # x_hat * sum_dy_xhat/n
                dx += _per_channel(mean_dy[channels])       # ... + sum_dy/n
                xp.subtract(dy[block], dx, out=dx)          # dy - ...
                dx *= _per_channel(scale[channels])

            parallel_map(input_gradient, blocks)
            grad_x = grad_x_buffer
        elif need_x:  # running statistics: y is affine in x
            grad_x, scale = xp.empty(x.shape, dtype=x.dtype), gamma * invstd
            dx = _as_ncm(grad_x)
            parallel_map(lambda block: xp.multiply(dy[block], _per_channel(scale[block[1]]), out=dx[block]), blocks)

        grad_bias = sum_dy if need_bias else None
        return grad_x, grad_weight, grad_bias, None, None, None


def _gamma(weight, like):
    """The scale gamma as an array: the weight, or ones when there is none."""
    if weight is None:
        return array_module(like).ones_like(like)
    return weight.astype(like.dtype, copy=False)


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
    use_batch_stats = training or running_mean is None
    stats = (None, None) if use_batch_stats else (running_mean._array, running_var._array)
    y, batch_mean, batch_var = BatchNorm.apply(x, weight, bias, *stats, float(eps))
    if training and running_mean is not None:
        count = x.numel() // x.shape[1]
        _update_running_stats(running_mean, running_var, batch_mean._array, batch_var._array, count, momentum)
    return y


def _update_running_stats(running_mean, running_var, batch_mean, batch_var, count, momentum):
    """Exponential moving average, written into the running tensors' own arrays (no graph)."""
    unbiased_var = batch_var * (count / (count - 1))
    for running, batch in ((running_mean, batch_mean), (running_var, unbiased_var)):
        target = running._array
        target *= 1 - momentum
        target += (momentum * batch).astype(target.dtype, copy=False)


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
