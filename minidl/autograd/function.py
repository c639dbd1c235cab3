"""``Function``: the base class of every differentiable op, and the graph node it leaves behind.

An op is written as a subclass with two static methods, side by side::

    class Exp(Function):
        @staticmethod
        def forward(ctx, x):              # x: a raw NumPy/CuPy array
            y = array_module(x).exp(x)
            ctx.save_for_backward(y)      # keep what backward needs
            return y

        @staticmethod
        def backward(ctx, grad):          # grad: dLoss/dy, same shape as y
            (y,) = ctx.saved_tensors
            return grad * y               # dLoss/dx, one per forward argument

and called as ``Exp.apply(tensor)``. ``apply`` unwraps Tensor arguments into
arrays, runs ``forward``, wraps the result in a Tensor and -- when some input
requires a gradient and recording is on -- keeps the ``ctx`` object as the
result's ``grad_fn``: a node of the graph that remembers where each input's
gradient must go (``next_edges``).

Conventions:
- Non-Tensor arguments (ints, tuples, strings, 0-d arrays for Python scalars)
  pass through to ``forward`` unchanged; ``backward`` returns ``None`` for them.
- ``ctx.needs_input_grad[i]`` tells backward whether argument ``i`` wants a
  gradient, so it can skip work (a frozen layer's weight gradient, say).
- ``forward`` may return a tuple ``(output, extra, ...)``: only ``output`` is
  differentiable; the extras (max-pool indices, argmax) come back as Tensors
  without gradient.
"""
from __future__ import annotations

import numpy as np

from .. import kernels
from ..backend import array_module, device_of
from .grad_mode import is_grad_enabled

Tensor = None  # minidl.Tensor; minidl/_tensor.py sets it once the class exists (that module imports this one)


class Function:
    """Base class of differentiable ops; an instance is both ``ctx`` and graph node."""

    # Attributes the engine keeps after the node has run backward; everything
    # else an op stored on ctx (saved arrays, masks, shapes) is released.
    _ENGINE_SLOTS = ("next_edges", "needs_input_grad", "output_shape", "output_dtype", "output_type", "released")

    @staticmethod
    def forward(ctx, *args):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError

    # ------------------------------------------------------------------ ctx API
    def save_for_backward(self, *arrays):
        """Keep arrays for backward; they are freed once backward has used them."""
        self.saved_tensors = arrays

    def release(self):
        """Drop everything saved for backward (called by the engine after use)."""
        for name in list(vars(self)):
            if name not in self._ENGINE_SLOTS:
                delattr(self, name)
        self.released = True

    @property
    def name(self):
        """``Conv2dBackward``: the op's name (a fast kernel's node keeps its reference's name)."""
        op = type(self)
        return getattr(op, "replaces", op).__name__ + "Backward"

    def __repr__(self):
        return f"<{self.name}>"

    # ------------------------------------------------------------------ apply
    @classmethod
    def apply(cls, *args):
        """Run the op on Tensors (and plain Python values) and record it if needed.

        The op runs as ``cls`` itself, or as its fast CPU kernel where the
        fast kernel set is selected (``minidl/kernels``: the one switch).
        """
        arrays = []
        needs_input_grad = []
        first_tensor = None
        for arg in args:
            if isinstance(arg, Tensor):
                if first_tensor is None:
                    first_tensor = arg
                elif arg.device != first_tensor.device:
                    raise RuntimeError(
                        f"{cls.__name__}: expected all tensors on the same device, got "
                        f"{first_tensor.device} ({tuple(first_tensor.shape)}, {first_tensor.dtype}) and "
                        f"{arg.device} ({tuple(arg.shape)}, {arg.dtype})"
                    )
                arrays.append(arg._array)
                needs_input_grad.append(arg.requires_grad)
            else:
                arrays.append(arg)
                needs_input_grad.append(False)

        record = any(needs_input_grad) and is_grad_enabled()
        op = kernels.implementation(cls, first_tensor._array if first_tensor is not None else None)
        ctx = op()
        ctx.needs_input_grad = tuple(needs_input_grad)
        raw = op.forward(ctx, *arrays)
        outputs = raw if isinstance(raw, tuple) else (raw,)
        if isinstance(outputs[0], np.generic):  # NumPy turns 0-d results into scalars; keep arrays
            outputs = (np.asarray(outputs[0]),) + outputs[1:]

        result = Tensor._from_array(outputs[0])
        if record:
            ctx.next_edges = tuple(_edge(arg) if need else None for arg, need in zip(args, needs_input_grad))
            ctx.output_shape = result._array.shape
            ctx.output_dtype = result._array.dtype
            ctx.output_type = type(result._array)  # numpy.ndarray or cupy.ndarray: the output's device kind
            ctx.released = False
            result.grad_fn = ctx
            result.requires_grad = True
        extras = tuple(Tensor._from_array(extra) for extra in outputs[1:])
        return (result, *extras) if extras else result


def _edge(tensor):
    """Where a gradient for ``tensor`` goes: its producing node, or the leaf tensor itself."""
    return tensor.grad_fn if tensor.grad_fn is not None else tensor


def unbroadcast(grad, shape):
    """Sum ``grad`` back down to ``shape``: the gradient of NumPy broadcasting.

    Broadcasting copies an input along new leading axes and along axes of size
    1; each copy's gradient flows back, so the input's gradient is their sum.
    """
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(i + extra for i, size in enumerate(shape) if size == 1 and grad.shape[i + extra] != 1)
    summed = grad.sum(axis=axes, keepdims=True) if axes else grad
    return summed.reshape(shape)


__all__ = ["Function", "unbroadcast", "array_module", "device_of"]
