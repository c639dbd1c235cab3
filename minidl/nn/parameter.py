"""``nn.Parameter``: a tensor that a Module treats as one of its learnable weights.

Assigning a Parameter to a Module attribute (``self.weight = Parameter(...)``)
registers it, so ``module.parameters()`` finds it and an optimiser can update it.
A plain Tensor assigned the same way is just an attribute.
"""
from __future__ import annotations

import numpy as np

from .._tensor import Tensor


class Parameter(Tensor):
    """A leaf tensor that requires grad (by default) and registers itself on a Module.

    ``Parameter(data)`` shares memory with ``data`` (a Tensor or an array), as in PyTorch.
    Ops on a Parameter return plain Tensors; only the Parameter itself is a weight.
    """

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            array = np.empty((0,), dtype=np.float32)
        elif isinstance(data, Tensor):
            array = data._array
        else:
            array = np.asarray(data)
        super().__init__(array, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


def zero_grads(params, set_to_none=True):
    """Forget the gradients of ``params``: ``.grad = None`` (default) or fill them with zeros.

    Shared by ``Module.zero_grad`` and ``Optimizer.zero_grad``. None frees the
    memory and lets the next backward store its fresh array without a copy.
    """
    for param in params:
        if param.grad is None:
            continue
        if set_to_none:
            param.grad = None
        else:
            param.grad._array.fill(0)
