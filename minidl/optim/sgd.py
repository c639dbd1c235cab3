"""Stochastic gradient descent, with momentum, Nesterov momentum and weight decay (PyTorch's rule)."""
from __future__ import annotations

from .._tensor import Tensor
from .optimizer import Optimizer


class SGD(Optimizer):
    """``SGD(params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, maximize=False)``.

    One step, for each parameter ``p`` with gradient ``g`` (PyTorch's formulation)::

        g = g + weight_decay * p                  # L2 penalty
        b = g                   on the first step # momentum buffer
        b = momentum * b + (1 - dampening) * g    afterwards
        g = g + momentum * b    if nesterov, else g = b
        p = p - lr * g

    Note the learning rate multiplies the buffer (not the gradient inside it), so
    changing ``lr`` mid-training takes effect at once.
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *, maximize=False):
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize))

    def _update(self, param, grad, state, group):
        lr, momentum, weight_decay = float(group["lr"]), float(group["momentum"]), float(group["weight_decay"])
        if group["maximize"]:
            grad = -grad
        if weight_decay != 0:
            grad = grad + weight_decay * param  # a new array: never modify param.grad itself
        if momentum != 0:
            if state.get("momentum_buffer") is None:
                buffer = grad.copy()
                state["momentum_buffer"] = Tensor._from_array(buffer)
            else:
                buffer = state["momentum_buffer"]._array
                buffer *= momentum
                buffer += (1 - float(group["dampening"])) * grad
            grad = grad + momentum * buffer if group["nesterov"] else buffer
        param -= lr * grad
