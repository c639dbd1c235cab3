"""Small helpers shared by the layer modules: tuple arguments and input checks."""
from __future__ import annotations

import math

from ..._tensor import Tensor
from .. import init


def check_input(module, input, ndims, layout, channels=None, channel_dim=1):
    """Raise a ValueError naming ``module`` when ``input`` has the wrong rank or channel count.

    ``ndims``: the accepted numbers of dimensions (None: any, at least 1); ``layout``: how
    to describe the expected shape, e.g. ``"(N, {C}, H, W)"`` where ``{C}`` becomes ``channels``.
    Catching it here gives "Conv2d(3, 8, ...): expected ... got (4, 5, 32, 32)"
    instead of a broadcasting error from deep inside an op.
    """
    if not isinstance(input, Tensor):
        raise TypeError(f"{module!r}: expected a minidl Tensor as input, got {type(input).__name__}")
    expected = layout.format(C=channels)
    if (input.ndim not in ndims) if ndims is not None else input.ndim == 0:
        ranks = "a " + " or ".join(f"{n}-D" for n in ndims) if ndims is not None else "an at least 1-D"
        raise ValueError(f"{module!r}: expected {ranks} input of shape {expected}, got shape {tuple(input.shape)}")
    if channels is not None and input.shape[channel_dim] != channels:
        raise ValueError(
            f"{module!r}: expected input of shape {expected} with {channels} channels in dim {channel_dim}, "
            f"got shape {tuple(input.shape)} ({input.shape[channel_dim]} channels)"
        )


def default_reset(weight, bias):
    """PyTorch's default init of Linear and Conv layers.

    weight ~ kaiming_uniform(a=sqrt(5)), which works out to U(-1/sqrt(fan_in), 1/sqrt(fan_in));
    bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)). fan_in is computed from the weight's dims 1..
    (for ConvTranspose2d that is out_channels / groups * kh * kw: PyTorch's choice, kept so
    that fresh layers have the same distributions as PyTorch's).
    """
    init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = init._calculate_fan_in_and_fan_out(weight)
        if fan_in != 0:
            bound = 1 / math.sqrt(fan_in)
            init.uniform_(bias, -bound, bound)
