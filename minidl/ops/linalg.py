"""Matrix product, batched and broadcast like ``numpy.matmul``."""
from __future__ import annotations

from ..autograd.function import Function, unbroadcast
from ..backend import array_module


class Matmul(Function):
    """out = a @ b.

    For 2-D: dA = grad @ B^T and dB = A^T @ grad. Batched inputs broadcast over
    their leading dims, so the gradients are summed back (``unbroadcast``).
    A 1-D operand is treated as a row (a) or column (b) vector, then the
    added axis is removed again, as ``numpy.matmul`` does.
    """

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return array_module(a).matmul(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        xp = array_module(grad)
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        if a.ndim == 1:
            grad = xp.expand_dims(grad, -2)
        if b.ndim == 1:
            grad = xp.expand_dims(grad, -1)
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_a = unbroadcast(xp.matmul(grad, xp.swapaxes(b2, -1, -2)), a2.shape).reshape(a.shape)
        if ctx.needs_input_grad[1]:
            grad_b = unbroadcast(xp.matmul(xp.swapaxes(a2, -1, -2), grad), b2.shape).reshape(b.shape)
        return grad_a, grad_b


def matmul(a, b):
    """Matrix product of two tensors of the same dtype (batched, broadcast)."""
    if a.dtype != b.dtype:
        raise RuntimeError(f"matmul: expected both operands to have the same dtype, got {a.dtype} {tuple(a.shape)} and {b.dtype} {tuple(b.shape)}")
    if a.ndim == 0 or b.ndim == 0:
        raise RuntimeError(f"matmul: both arguments need at least 1 dimension, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    inner_a = a.shape[-1]
    inner_b = b.shape[-2] if b.ndim > 1 else b.shape[0]
    if inner_a != inner_b:
        raise RuntimeError(f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be multiplied ({inner_a} != {inner_b})")
    return Matmul.apply(a, b)
