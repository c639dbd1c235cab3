"""Dropout layers: in training, zero random elements (``Dropout``) or whole channels
(``Dropout2d``) with probability ``p`` and scale the rest by ``1 / (1 - p)``, so the
expected value is unchanged; in evaluation they pass the input through.
"""
from __future__ import annotations

from .. import functional as F
from ..module import Module
from ._utils import check_input


class _DropoutNd(Module):
    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.inplace = inplace  # accepted for PyTorch compatibility; minidl never overwrites its input

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class Dropout(_DropoutNd):
    """Zero each element independently with probability ``p`` (training only). Any input shape."""

    def forward(self, input):
        return F.dropout(input, self.p, self.training)


class Dropout2d(_DropoutNd):
    """Zero whole channels ``(n, c, :, :)`` with probability ``p`` (training only). Input ``(N, C, H, W)``.

    Neighbouring pixels are strongly correlated, so dropping single pixels barely
    regularises a conv net; dropping whole feature maps does.
    """

    def forward(self, input):
        check_input(self, input, (4,), "(N, C, H, W)")
        return F.dropout2d(input, self.p, self.training)
