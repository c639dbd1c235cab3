"""``SyncBatchNorm``: batch normalisation whose batch is the union of every rank's batch.

With data parallelism each rank sees N / W images. Plain BatchNorm would
normalise with statistics of those few images only -- noisier, and a different
function from the one-process model. SyncBatchNorm computes each channel's mean
and variance over all ranks' values, so W ranks with N / W images each compute
exactly what BatchNorm computes on N images in one process.

Forward, per channel (one collective): every rank sends (n_r, mean_r, m2_r) --
its count, mean and sum of squared deviations -- and every rank combines them
(Chan et al.'s pairwise formula, no cancellation as in E[x^2] - mean^2)::

    n = sum n_r      mean = sum n_r mean_r / n      var = sum (m2_r + n_r (mean_r - mean)^2) / n

Backward (one collective): the input gradient of batch norm (see
``minidl/nn/functional/normalization.py``) needs two sums over the whole batch,
sum(dy) and sum(dy * x_hat); they are summed across ranks::

    dx = gamma / sigma * (dy - SUM(dy) / n - x_hat * SUM(dy * x_hat) / n)

The weight and bias gradients stay local sums: DistributedDataParallel averages
them with every other gradient, which gives the one-process gradient.
"""
from __future__ import annotations

from ... import distributed as dist
from ...autograd.function import Function
from ...backend import array_module
from ..functional.common import as_ncm
from ..functional.normalization import channel_dot, channel_sum, gamma_or_ones, per_channel, update_running_stats
from ._utils import check_input
from .normalization import _BatchNorm

__all__ = ["SyncBatchNorm", "convert_sync_batchnorm"]


class _SyncBatchNormFunction(Function):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta with mean, var over every rank's x: (N, C, *).

    Returns (y, mean, var, n): the global statistics (var biased) and the global count per
    channel, as non-differentiable extras for the running-statistics update.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps, group):
        xp = array_module(x)
        x3 = as_ncm(x)
        count = x3.shape[0] * x3.shape[2]
        local_mean = channel_sum(x3) / max(count, 1)
        centred = x3 - per_channel(local_mean)
        local_m2 = channel_dot(centred, centred)
        # One message per rank: [n_r, mean_r (C), m2_r (C)] in float64; gathered: (W, 1 + 2C).
        mine = xp.concatenate([xp.full(1, count, dtype=xp.float64), local_mean.astype(xp.float64),
                               local_m2.astype(xp.float64)])
        gathered = dist.all_gather_array(mine, group)
        channels = x3.shape[1]
        counts, means, m2s = gathered[:, :1], gathered[:, 1 : 1 + channels], gathered[:, 1 + channels :]
        total = float(counts.sum())
        mean = (counts * means).sum(axis=0) / total
        var = (m2s + counts * (means - mean) ** 2).sum(axis=0) / total
        mean, var = mean.astype(x.dtype), var.astype(x.dtype)

        centred += per_channel(local_mean - mean)  # now x - global mean; becomes y in place
        invstd = 1 / xp.sqrt(var + eps)
        gamma = gamma_or_ones(weight, invstd)
        centred *= per_channel(gamma * invstd)
        if bias is not None:
            centred += per_channel(bias.astype(x.dtype, copy=False))
        ctx.save_for_backward(x, mean, invstd, gamma)
        ctx.total, ctx.group = total, group
        return centred.reshape(x.shape), mean, var, xp.asarray(total)

    @staticmethod
    def backward(ctx, grad):
        x, mean, invstd, gamma = ctx.saved_tensors
        need_x, need_weight, need_bias = ctx.needs_input_grad[:3]
        xp = array_module(x)
        x3, dy = as_ncm(x), as_ncm(grad)
        x_hat = (x3 - per_channel(mean)) * per_channel(invstd)
        sum_dy = channel_sum(dy)                  # local sums: the weight and bias gradients
        sum_dy_xhat = channel_dot(dy, x_hat)
        grad_x = None
        if need_x:
            sums = xp.concatenate([sum_dy, sum_dy_xhat])
            dist.all_reduce(sums, "sum", group=ctx.group)  # the sums over every rank's batch
            total_dy, total_dy_xhat = sums[: len(sum_dy)], sums[len(sum_dy) :]
            x_hat *= per_channel(total_dy_xhat / ctx.total)      # x_hat * SUM(dy x_hat)/n
            x_hat += per_channel(total_dy / ctx.total)           # ... + SUM(dy)/n
            xp.subtract(dy, x_hat, out=x_hat)                     # dy - ...
            x_hat *= per_channel(gamma * invstd)
            grad_x = x_hat.reshape(x.shape)
        return grad_x, sum_dy_xhat if need_weight else None, sum_dy if need_bias else None, None, None


class SyncBatchNorm(_BatchNorm):
    """BatchNorm over (N, C, *) inputs with batch statistics over all ranks (PyTorch's ``nn.SyncBatchNorm``).

    Same arguments, parameters and buffers as BatchNorm2d. Synchronises in training
    (and in evaluation when there are no running statistics); uses the running
    statistics alone in evaluation, and behaves as plain BatchNorm when no process
    group is initialised or the world has one rank. ``process_group``: the ranks
    to synchronise with (default: all).
    """

    _ndims = (2, 3, 4, 5)
    _layout = "(N, {C}, *)"

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 process_group=None, device=None, dtype=None, *, bias=True):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, bias=bias)
        self.process_group = process_group

    def forward(self, input):
        use_batch_stats = self.training or self.running_mean is None
        if not (use_batch_stats and dist.is_initialized() and dist.get_world_size(self.process_group) > 1):
            return super().forward(input)
        check_input(self, input, self._ndims, self._layout, channels=self.num_features)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:  # as _BatchNorm.forward
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked.item())
        y, mean, var, total = _SyncBatchNormFunction.apply(input, self.weight, self.bias, float(self.eps),
                                                           self.process_group)
        if self.training and self.track_running_stats:
            update_running_stats(self.running_mean, self.running_var, mean._array, var._array,
                                  float(total.item()), factor)
        return y

    @classmethod
    def convert_sync_batchnorm(cls, module, process_group=None):
        """``module`` with every BatchNorm layer replaced by a SyncBatchNorm that shares its
        parameters and buffers (returns the new module if ``module`` itself is a BatchNorm)."""
        converted = module
        if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
            converted = cls(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats, process_group)
            for name in ("weight", "bias"):
                converted.register_parameter(name, getattr(module, name))
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                converted.register_buffer(name, getattr(module, name))
            converted._stays_in_eval = module._stays_in_eval  # a frozen layer stays frozen (nn.freeze)
            converted.train(module.training)
        for name, child in module.named_children():
            converted.add_module(name, cls.convert_sync_batchnorm(child, process_group))
        return converted


def convert_sync_batchnorm(module, process_group=None):
    """Function form of ``SyncBatchNorm.convert_sync_batchnorm``."""
    return SyncBatchNorm.convert_sync_batchnorm(module, process_group)
