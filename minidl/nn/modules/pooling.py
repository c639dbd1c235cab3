"""Pooling layers: ``MaxPool2d``, ``MaxUnpool2d``, ``AvgPool2d``, ``AdaptiveAvgPool2d``.

All take ``(N, C, H, W)`` and pool each channel's ``H x W`` plane independently
(so there is no channel count to check, only the rank). Output size of a
``k x k`` window moved by ``stride`` over an input padded by ``padding``:
``H_out = floor((H + 2*padding - dilation*(k - 1) - 1) / stride) + 1``
(``ceil`` instead of ``floor`` with ``ceil_mode=True``).
"""
from __future__ import annotations

from .. import functional as F
from ..module import Module
from ..functional.common import pair
from ._utils import check_input

_LAYOUT = "(N, C, H, W)"


class MaxPool2d(Module):
    """Maximum over each window. ``stride`` defaults to ``kernel_size``.

    With ``return_indices=True`` it returns ``(output, indices)``: the flat position
    (``h * W + w``) of each maximum in its input plane, which ``MaxUnpool2d`` needs
    (SegNet's decoder puts values back where the encoder found them).
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def forward(self, input):
        check_input(self, input, (4,), _LAYOUT)
        return F.max_pool2d(input, self.kernel_size, self.stride, self.padding, dilation=self.dilation,
                            ceil_mode=self.ceil_mode, return_indices=self.return_indices)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class MaxUnpool2d(Module):
    """The partial inverse of MaxPool2d: scatter each value to the position its index names, zeros elsewhere.

    ``forward(input, indices, output_size=None)``; input and indices ``(N, C, H, W)``, output
    ``(N, C, H_out, W_out)`` with ``H_out = (H - 1)*stride - 2*padding + kernel`` unless
    ``output_size`` says otherwise (needed when the pooled size was odd).
    """

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size", "MaxUnpool2d")
        self.stride = pair(stride if stride is not None else kernel_size, "stride", "MaxUnpool2d")
        self.padding = pair(padding, "padding", "MaxUnpool2d")

    def forward(self, input, indices, output_size=None):
        check_input(self, input, (4,), _LAYOUT)
        if tuple(indices.shape) != tuple(input.shape):
            raise ValueError(
                f"{self!r}: indices must have the input's shape {tuple(input.shape)}, got {tuple(indices.shape)}"
            )
        return F.max_unpool2d(input, indices, self.kernel_size, self.stride, self.padding, output_size)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(Module):
    """Mean over each window. ``stride`` defaults to ``kernel_size``.

    ``count_include_pad=True`` divides by the full window size even where it overlaps padding.
    ``divisor_override`` is not supported (F.avg_pool2d has no such argument): only None is accepted.
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__()
        if divisor_override is not None:
            raise ValueError("AvgPool2d: divisor_override is not supported by minidl")
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.ceil_mode = padding, ceil_mode
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def forward(self, input):
        check_input(self, input, (4,), _LAYOUT)
        return F.avg_pool2d(input, self.kernel_size, self.stride, self.padding, ceil_mode=self.ceil_mode,
                            count_include_pad=self.count_include_pad)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Average-pool to a fixed ``output_size`` (an int, a pair, or None in a dim to keep it).

    ``AdaptiveAvgPool2d(1)`` is global average pooling: ``(N, C, H, W) -> (N, C, 1, 1)``.
    """

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, input):
        check_input(self, input, (4,), _LAYOUT)
        return F.adaptive_avg_pool2d(input, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"
