"""``Linear`` (a fully connected layer) and ``Identity``."""
from __future__ import annotations

from ... import creation
from ...ops.linalg import matmul
from ..module import Module
from ..parameter import Parameter
from ._utils import check_input, default_reset


class Linear(Module):
    """``y = x @ weight.T + bias``.

    Input ``(*, in_features)`` -> output ``(*, out_features)``; weight ``(out_features, in_features)``
    (PyTorch's layout: one row per output), bias ``(out_features,)``.
    """

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(creation.empty(out_features, in_features, dtype=dtype, device=device))
        if bias:
            self.bias = Parameter(creation.empty(out_features, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        """PyTorch's default init (see ``default_reset``)."""
        default_reset(self.weight, self.bias)

    def forward(self, input):
        check_input(self, input, None, "(*, {C})", channels=self.in_features, channel_dim=-1)
        output = matmul(input, self.weight.T)
        return output + self.bias if self.bias is not None else output

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Identity(Module):
    """Returns its input unchanged (a placeholder, e.g. to drop a layer from a model). Ignores its arguments."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input
