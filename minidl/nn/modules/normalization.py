"""Batch normalisation: ``BatchNorm1d`` and ``BatchNorm2d``.

In training, each channel is normalised with the mean and (biased) variance of
the current batch, then scaled by ``weight`` and shifted by ``bias``; the
running averages of mean and (unbiased) variance are updated as

    running = (1 - momentum) * running + momentum * batch_statistic

In evaluation the running averages are used instead, so a single image gives
the same answer as it would inside any batch.
"""
from __future__ import annotations

from ... import creation, dtypes
from .. import functional as F, init
from ..functional.normalization import check_eps
from ..module import Module
from ..parameter import Parameter
from ._utils import check_input


class _BatchNorm(Module):
    """Shared body; subclasses say which input ranks they accept (``_ndims``, ``_layout``).

    Buffers: ``running_mean`` (zeros), ``running_var`` (ones) and ``num_batches_tracked``
    (int64, +1 per training forward). ``momentum=None`` makes the running statistics a
    plain cumulative average: the factor is ``1 / num_batches_tracked``.
    """

    _ndims = ()
    _layout = ""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 device=None, dtype=None, *, bias=True):
        super().__init__()
        check_eps(eps, type(self).__name__)
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        # affine: learn a per-channel scale (weight) and, unless bias=False, a shift (bias).
        if affine:
            self.weight = Parameter(creation.ones(num_features, dtype=dtype, device=device))
        else:
            self.register_parameter("weight", None)
        if affine and bias:
            self.bias = Parameter(creation.zeros(num_features, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", creation.zeros(num_features, dtype=dtype, device=device))
            self.register_buffer("running_var", creation.ones(num_features, dtype=dtype, device=device))
            self.register_buffer("num_batches_tracked", creation.zeros((), dtype=dtypes.int64, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self):
        self.reset_running_stats()
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, input):
        check_input(self, input, self._ndims, self._layout, channels=self.num_features)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked.item())
        # Batch statistics in training, and also in eval when there are no running stats to use.
        use_batch_stats = self.training or self.running_mean is None
        # F.batch_norm uses the running stats it is given in eval and updates them in training;
        # a layer with track_running_stats=False must not pass them in training.
        pass_running = not self.training or self.track_running_stats
        return F.batch_norm(
            input,
            running_mean=self.running_mean if pass_running else None,
            running_var=self.running_var if pass_running else None,
            weight=self.weight, bias=self.bias, training=use_batch_stats, momentum=factor, eps=self.eps,
        )

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Normalise each feature of ``(N, C)`` or ``(N, C, L)`` over the batch (and length)."""

    _ndims = (2, 3)
    _layout = "(N, {C}) or (N, {C}, L)"


class BatchNorm2d(_BatchNorm):
    """Normalise each channel of ``(N, C, H, W)`` over the batch and all pixels."""

    _ndims = (4,)
    _layout = "(N, {C}, H, W)"
