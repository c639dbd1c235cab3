"""Convolution layers: ``Conv2d`` and ``ConvTranspose2d``.

Both hold a weight and an optional bias and call ``F.conv2d`` / ``F.conv_transpose2d``.
Weight layouts are PyTorch's, so weights load from PyTorch state_dicts unchanged:

- Conv2d:          weight ``(out_channels, in_channels / groups, kh, kw)``
- ConvTranspose2d: weight ``(in_channels, out_channels / groups, kh, kw)``
  (a transposed conv is the gradient of a conv, whose weight maps out -> in).
"""
from __future__ import annotations

from ... import creation
from .. import functional as F
from ..module import Module
from ..parameter import Parameter
from ..functional.common import pair
from ._utils import check_input, default_reset


class _ConvNd(Module):
    """What Conv2d and ConvTranspose2d share: arguments, parameters, default init, repr."""

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, transposed,
                 output_padding, groups, bias, padding_mode, device, dtype):
        super().__init__()
        if groups <= 0 or in_channels % groups or out_channels % groups:
            raise ValueError(
                f"in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible by groups ({groups})"
            )
        if padding_mode != "zeros":
            raise ValueError(f"padding_mode={padding_mode!r} is not supported; minidl pads with zeros only")
        self.in_channels, self.out_channels = in_channels, out_channels
        layer = type(self).__name__
        self.kernel_size, self.stride = pair(kernel_size, "kernel_size", layer), pair(stride, "stride", layer)
        self.dilation = pair(dilation, "dilation", layer)
        self.padding = padding if isinstance(padding, str) else pair(padding, "padding", layer)
        self.transposed, self.output_padding = transposed, pair(output_padding, "output_padding", layer)
        self.groups, self.padding_mode = groups, padding_mode
        shape = (in_channels, out_channels // groups) if transposed else (out_channels, in_channels // groups)
        self.weight = Parameter(creation.empty(*shape, *self.kernel_size, dtype=dtype, device=device))
        if bias:
            self.bias = Parameter(creation.empty(out_channels, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        """PyTorch's default init (see ``default_reset``)."""
        default_reset(self.weight, self.bias)

    def _check_input(self, input):
        check_input(self, input, (4,), "(N, {C}, H, W)", channels=self.in_channels)

    def extra_repr(self):
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.output_padding != (0, 0):
            text += f", output_padding={self.output_padding}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return text


class Conv2d(_ConvNd):
    """2-D convolution (cross-correlation, as in every DL library).

    Input ``(N, C_in, H, W)`` -> output ``(N, C_out, H_out, W_out)`` with
    ``H_out = floor((H + 2*padding - dilation*(kernel - 1) - 1) / stride) + 1`` (same for W).

    ``padding`` may also be ``"valid"`` (no padding) or ``"same"`` (stride 1; output size =
    input size; minidl supports it when ``dilation*(kernel-1)`` is even, i.e. odd kernels).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, False, 0, groups,
                         bias, padding_mode, device, dtype)
        self._numeric_padding()  # reject an impossible padding="same" now rather than at the first forward

    def _numeric_padding(self):
        """``padding`` as a pair of ints (resolving "valid" and "same")."""
        if self.padding == "valid":
            return (0, 0)
        if self.padding == "same":
            if self.stride != (1, 1):
                raise ValueError("padding='same' is not supported for strided convolutions")
            totals = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
            if any(total % 2 for total in totals):
                raise ValueError(
                    f"padding='same' with kernel_size={self.kernel_size}, dilation={self.dilation} needs uneven "
                    "padding, which minidl does not support; pad with F.pad first"
                )
            return tuple(total // 2 for total in totals)
        if isinstance(self.padding, str):
            raise ValueError(f"invalid padding string {self.padding!r}, should be one of 'valid', 'same'")
        return self.padding

    def forward(self, input):
        self._check_input(input)
        return F.conv2d(input, self.weight, self.bias, self.stride, self._numeric_padding(), self.dilation,
                        self.groups)


class ConvTranspose2d(_ConvNd):
    """2-D transposed convolution ("deconvolution"): the gradient of Conv2d with respect to its input.

    Input ``(N, C_in, H, W)`` -> output ``(N, C_out, H_out, W_out)`` with
    ``H_out = (H - 1)*stride - 2*padding + dilation*(kernel - 1) + output_padding + 1``.

    Several output sizes map to the same input size under a strided Conv2d; ``forward(x, output_size)``
    picks one (it sets ``output_padding`` for that call), e.g. to match a skip connection.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, padding_mode="zeros", device=None, dtype=None):
        if isinstance(padding, str):
            raise ValueError(f"ConvTranspose2d does not support string padding ({padding!r})")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, True, output_padding,
                         groups, bias, padding_mode, device, dtype)

    def _output_padding(self, input, output_size):
        """The output_padding that makes the output spatial size equal ``output_size``."""
        if output_size is None:
            return self.output_padding
        output_size = tuple(int(s) for s in output_size)
        if len(output_size) == 4:  # (N, C, H, W) accepted too; only H, W matter
            output_size = output_size[2:]
        if len(output_size) != 2:
            raise ValueError(f"{self!r}: output_size must have 2 or 4 elements (H, W), got {output_size}")
        padding = []
        for d in range(2):
            smallest = ((input.shape[d + 2] - 1) * self.stride[d] - 2 * self.padding[d]
                        + self.dilation[d] * (self.kernel_size[d] - 1) + 1)
            largest = smallest + self.stride[d] - 1
            if not smallest <= output_size[d] <= largest:
                raise ValueError(
                    f"{self!r}: requested an output size of {output_size}, but valid sizes for an input of shape "
                    f"{tuple(input.shape)} range from {smallest} to {largest} in dim {d + 2}"
                )
            padding.append(output_size[d] - smallest)
        return tuple(padding)

    def forward(self, input, output_size=None):
        self._check_input(input)
        output_padding = self._output_padding(input, output_size)
        return F.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding, output_padding,
                                  self.groups, self.dilation)
