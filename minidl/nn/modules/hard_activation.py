"""The piecewise-linear activations of the MobileNets: ``ReLU6``, ``Hardsigmoid``, ``Hardswish``.

    relu6(x)       = min(max(x, 0), 6)          MobileNetV2: a ReLU whose output stays small,
                                                which suits low-precision inference
    hardsigmoid(x) = relu6(x + 3) / 6           MobileNetV3: sigmoid's shape, from 0 at -3 to 1 at 3
    hardswish(x)   = x * hardsigmoid(x)         MobileNetV3: swish (x * sigmoid(x)) without an exp

Any input shape. ``inplace`` is accepted for PyTorch compatibility and ignored (see activation.py).
"""
from __future__ import annotations

from .. import functional as F
from ..module import Module


class _HardActivation(Module):
    """One of the three: subclasses name their function in ``function``."""

    function = None

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input):
        return self.function(input)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class ReLU6(_HardActivation):
    """``min(max(x, 0), 6)``."""

    function = staticmethod(F.relu6)


class Hardsigmoid(_HardActivation):
    """``relu6(x + 3) / 6``."""

    function = staticmethod(F.hardsigmoid)


class Hardswish(_HardActivation):
    """``x * relu6(x + 3) / 6``."""

    function = staticmethod(F.hardswish)
