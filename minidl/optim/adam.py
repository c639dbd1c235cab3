"""Adam and AdamW (PyTorch's update rules, bias correction included).

For each parameter ``p`` with gradient ``g``, at step ``t = 1, 2, ...``::

    m = beta1 * m + (1 - beta1) * g           # first moment: a running mean of g
    v = beta2 * v + (1 - beta2) * g * g       # second moment: a running mean of g**2
    v_max = max(v_max, v)                     # amsgrad only; then v_max replaces v below
    m_hat = m / (1 - beta1**t)                # m, v start at 0, so early averages are too
    v_hat = v / (1 - beta2**t)                #   small: divide by the total weight so far
    p = p - lr * m_hat / (sqrt(v_hat) + eps)

The step is computed, as PyTorch does, as ``p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)``
with ``bc1 = 1 - beta1**t``, ``bc2 = 1 - beta2**t`` (so ``eps`` is added after the correction).

Weight decay: Adam adds ``weight_decay * p`` to ``g`` (an L2 penalty, which the adaptive
scaling then weakens for parameters with large gradients); AdamW instead shrinks the weights
directly, ``p = p * (1 - lr * weight_decay)``, before the update ("decoupled" weight decay,
Loshchilov & Hutter, 2019).
"""
from __future__ import annotations

from .._tensor import Tensor
from ..backend import array_module
from .optimizer import Optimizer


class Adam(Optimizer):
    """``Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False)``.

    State per parameter: ``step`` (int), ``exp_avg`` (m), ``exp_avg_sq`` (v) and, with
    amsgrad, ``max_exp_avg_sq`` -- PyTorch's names, so its optimizer states convert.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 maximize=False, decoupled_weight_decay=False):
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if eps < 0.0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        for index, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {index}: {beta}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize, decoupled_weight_decay=decoupled_weight_decay))

    def _update(self, param, grad, state, group):
        xp = array_module(param)
        lr, eps, weight_decay = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
        beta1, beta2 = (float(beta) for beta in group["betas"])
        if not state:  # first step: both moments start at zero
            state["step"] = 0
            state["exp_avg"] = Tensor._from_array(xp.zeros_like(param))
            state["exp_avg_sq"] = Tensor._from_array(xp.zeros_like(param))
        if group["amsgrad"] and "max_exp_avg_sq" not in state:
            state["max_exp_avg_sq"] = Tensor._from_array(xp.zeros_like(param))
        state["step"] += 1
        step = state["step"]
        exp_avg, exp_avg_sq = state["exp_avg"]._array, state["exp_avg_sq"]._array

        if group["maximize"]:
            grad = -grad
        if weight_decay != 0:
            if group["decoupled_weight_decay"]:
                param *= 1 - lr * weight_decay
            else:
                grad = grad + weight_decay * param
        # m = beta1*m + (1-beta1)*g, written as m += (1-beta1)*(g - m): PyTorch's lerp_, same rounding
        exp_avg += (1 - beta1) * (grad - exp_avg)
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * grad * grad

        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = lr / bias_correction1
        second_moment = exp_avg_sq
        if group["amsgrad"]:
            second_moment = state["max_exp_avg_sq"]._array
            xp.maximum(second_moment, exp_avg_sq, out=second_moment)
        denom = xp.sqrt(second_moment) / bias_correction2**0.5 + eps
        param -= step_size * exp_avg / denom


class AdamW(Adam):
    """Adam with decoupled weight decay (default ``weight_decay=1e-2``): ``p *= 1 - lr * weight_decay``."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize, decoupled_weight_decay=True)
