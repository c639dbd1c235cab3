"""Fast batch normalisation: the reference ``BatchNorm``'s formulas, a cache-sized block at a time.

BatchNorm does a few flops per number, so its speed is the memory's. The
reference (minidl/nn/functional/normalization.py) makes each pass (subtract,
multiply, add, the sums) over the whole array from main memory. Here the
passes that follow one another run over one block of images or channels
(``threads.channel_blocks``, a few MB) while it is still in the CPU's cache,
and the blocks are shared among the threads. A per-channel sum is the sum of
its blocks' parts (``channel_total``).
"""
from __future__ import annotations

from .. import fast_kernel_for
from ...backend import array_module
from ...nn.functional.common import as_ncm
from ...nn.functional.normalization import BatchNorm, channel_dot, channel_sum, gamma_or_ones, per_channel
from .threads import channel_blocks, parallel_map


def channel_total(parts, blocks, like):
    """Each block's per-channel sums (C_block,) -> the totals (C,) over all blocks.

    Blocks that share channels are added in order (image by image), so one
    block per image gives the same numbers as summing the whole batch at once.
    """
    total = array_module(like).zeros(like.shape[1], dtype=like.dtype)
    for (_, channels), part in zip(blocks, parts):
        total[channels] += part
    return total



@fast_kernel_for(BatchNorm)
class FastBatchNorm(BatchNorm):
    """Equals ``BatchNorm``. Faster: every full-size pass runs a block at a time (``channel_blocks``),
    so the passes that follow one another on the same numbers find their block in the cache,
    and the blocks are shared among the threads. One full-size buffer per pass direction."""

    @staticmethod
    def forward(ctx, x, weight, bias, mean, var, eps):
        xp, x3 = array_module(x), as_ncm(x)
        count = x3.shape[0] * x3.shape[2]  # values per channel
        blocks = channel_blocks(x3)
        batch_stats = mean is None
        # The output buffer first holds x - mean: the variance is computed from
        # the centred values (two-pass, no cancellation as in E[x^2] - mean^2),
        # then the same buffer is scaled and shifted in place into y. The
        # forward pass allocates this one full-size array and nothing else.
        out = xp.empty(x.shape, dtype=x.dtype)  # made in x's shape: handed on, it is an array of its own, not a view
        y = as_ncm(out)

        def centre(block, mean):  # y = x - mean in this block
            xp.subtract(x3[block], per_channel(mean[block[1]]), out=y[block])

        def sum_of_squares(block, mean):  # centre, then the block's sums of (x - mean)^2 per channel (C_block,)
            centre(block, mean)
            return channel_dot(y[block], y[block])

        def scale_and_shift(block, scale, shift):  # y = (x - mean) * gamma * invstd + beta, in place
            y[block] *= per_channel(scale[block[1]])
            if shift is not None:
                y[block] += per_channel(shift[block[1]])

        if batch_stats:
            mean = channel_total(parallel_map(lambda block: channel_sum(x3[block]), blocks), blocks, x3) / count
            var = channel_total(parallel_map(lambda block: sum_of_squares(block, mean), blocks), blocks, x3) / count
        else:
            mean, var = mean.astype(x.dtype, copy=False), var.astype(x.dtype, copy=False)
        invstd = 1 / xp.sqrt(var + eps)
        gamma = gamma_or_ones(weight, invstd)
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
        xp, x3, dy = array_module(grad), as_ncm(x), as_ncm(grad)
        count = x3.shape[0] * x3.shape[2]
        blocks = channel_blocks(x3)
        # x - mean, full size; it becomes grad_x in training. Made in x's shape, so that grad_x is an
        # array of its own, not a view (a leaf input keeps it as its .grad without a copy).
        grad_x_buffer = xp.empty(x.shape, dtype=x.dtype) if need_weight or (need_x and ctx.batch_stats) else None
        centred = None if grad_x_buffer is None else as_ncm(grad_x_buffer)

        def sums(block):  # this block's sum(dy) and, if wanted, sum(dy * (x - mean)), per channel
            if centred is None:
                return channel_sum(dy[block]), None
            xp.subtract(x3[block], per_channel(mean[block[1]]), out=centred[block])
            return channel_sum(dy[block]), channel_dot(dy[block], centred[block])

        parts = parallel_map(sums, blocks)
        sum_dy = channel_total([part[0] for part in parts], blocks, x3)
        grad_x = grad_weight = None
        if centred is not None:
            sum_dy_xhat = channel_total([part[1] for part in parts], blocks, x3) * invstd  # sum(dy * x_hat)
            grad_weight = sum_dy_xhat if need_weight else None

        if need_x and ctx.batch_stats:
            # dx = gamma*invstd * (dy - sum_dy/n - x_hat * sum_dy_xhat/n), with
            # x_hat = centred*invstd, built in place in the `centred` buffer
            # (numpy has no fused multiply-add, so four in-place passes, over one block at a time):
            x_hat_factor, mean_dy, scale = invstd * sum_dy_xhat / count, sum_dy / count, gamma * invstd

            def input_gradient(block):
                channels, dx = block[1], centred[block]
                dx *= per_channel(x_hat_factor[channels])  # x_hat * sum_dy_xhat/n
                dx += per_channel(mean_dy[channels])       # ... + sum_dy/n
                xp.subtract(dy[block], dx, out=dx)          # dy - ...
                dx *= per_channel(scale[channels])

            parallel_map(input_gradient, blocks)
            grad_x = grad_x_buffer
        elif need_x:  # running statistics: y is affine in x
            grad_x, scale = xp.empty(x.shape, dtype=x.dtype), gamma * invstd
            dx = as_ncm(grad_x)
            parallel_map(lambda block: xp.multiply(dy[block], per_channel(scale[block[1]]), out=dx[block]), blocks)

        grad_bias = sum_dy if need_bias else None
        return grad_x, grad_weight, grad_bias, None, None, None
