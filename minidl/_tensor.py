"""``Tensor``: an n-dimensional array (NumPy or CuPy) that remembers how it was made.

A tensor holds:
- ``_array``: the values, a ``numpy.ndarray`` on the CPU or a ``cupy.ndarray`` on a GPU;
- ``requires_grad``: whether gradients should flow into it;
- ``grad_fn``: the graph node (a ``Function``) that produced it, or None for a leaf;
- ``grad``: after ``backward()``, the gradient of the loss with respect to it (leaves only).

Arithmetic on tensors calls differentiable ops (``minidl/ops``); ``backward``
hands the graph to the engine (``minidl/autograd/engine.py``).
"""
from __future__ import annotations

import numpy as np

from . import backend, dtypes
from .autograd.engine import run_backward
from .autograd import function as _function
from .autograd.function import Function
from .autograd.grad_mode import is_grad_enabled
from .ops import elementwise as E, linalg, reduction as R, shape as S


class Tensor:
    """A multi-dimensional array with automatic differentiation. Make one with ``minidl.tensor``."""

    __slots__ = ("_array", "requires_grad", "grad", "grad_fn", "_retains_grad", "__weakref__")

    def __init__(self, array, requires_grad=False):
        self._array = array
        self.grad = None
        self.grad_fn = None
        self._retains_grad = False
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _from_array(cls, array):
        """Wrap a raw array without checks (used by ops on their results)."""
        t = object.__new__(Tensor)
        t._array, t.grad, t.grad_fn, t._retains_grad, t.requires_grad = array, None, None, False, False
        return t

    # ------------------------------------------------------------------ properties
    @property
    def shape(self):
        return self._array.shape

    @property
    def dtype(self):
        return self._array.dtype

    @property
    def device(self):
        return backend.device_of(self._array)

    @property
    def ndim(self):
        return self._array.ndim

    @property
    def is_leaf(self):
        """True for tensors the user made (no ``grad_fn``); only leaves get ``.grad``."""
        return self.grad_fn is None

    @property
    def is_cuda(self):
        return self.device.type == "cuda"

    @property
    def data(self):
        """The same values as a tensor detached from the graph (shares memory), as in PyTorch."""
        return self.detach()

    @data.setter
    def data(self, value):
        if not isinstance(value, Tensor):
            raise TypeError(f"data must be set to a Tensor, got {type(value).__name__}")
        self._array = value._array

    @property
    def T(self):
        return self.permute(*reversed(range(self.ndim)))

    def dim(self):
        return self._array.ndim

    def numel(self):
        return int(self._array.size)

    def size(self, dim=None):
        return self.shape if dim is None else self.shape[dim]

    def element_size(self):
        return self._array.itemsize

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    # ------------------------------------------------------------------ autograd
    def requires_grad_(self, requires_grad=True):
        """Start (or stop) tracking gradients for this leaf tensor; returns self."""
        if not self.is_leaf:
            raise RuntimeError(
                "you can only change requires_grad flags of leaf variables; use .detach() to get a leaf"
            )
        if requires_grad and not dtypes.is_floating(self.dtype):
            raise RuntimeError(f"only tensors of floating point dtype can require gradients, got {self.dtype}")
        self.requires_grad = bool(requires_grad)
        return self

    def retain_grad(self):
        """Keep ``.grad`` for this non-leaf tensor too (PyTorch's ``retain_grad``)."""
        if not self.requires_grad:
            raise RuntimeError("can't retain_grad on a tensor that has requires_grad=False")
        if self.grad_fn is not None and not self._retains_grad:
            self._retains_grad = True
            node, tensor = self.grad_fn, self
            original = type(node).backward

            class _Retain(type(node)):  # record the incoming gradient, then run the real backward
                @staticmethod
                def backward(ctx, grad):
                    tensor.grad = Tensor._from_array(grad if tensor.grad is None else tensor.grad._array + grad)
                    return original(ctx, grad)

            _Retain.__name__ = type(node).__name__
            node.__class__ = _Retain

    def backward(self, gradient=None, retain_graph=False):
        """Compute the gradient of this tensor with respect to every leaf that requires grad.

        ``gradient`` is dLoss/dself; it may be omitted only for a single-element tensor.
        The graph's saved arrays are freed afterwards unless ``retain_graph=True``.
        """
        if not self.requires_grad:
            raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")
        if gradient is None:
            if self.numel() != 1:
                raise RuntimeError(f"grad can be implicitly created only for scalar outputs (got shape {tuple(self.shape)})")
            grad = backend.array_module(self._array).ones(self.shape, dtype=self.dtype)
        else:
            grad = gradient._array if isinstance(gradient, Tensor) else backend.array_module(self._array).asarray(gradient)
            if grad.shape != self.shape:
                raise RuntimeError(f"gradient has shape {tuple(grad.shape)}, but the tensor has shape {tuple(self.shape)}")
            grad = grad.astype(self.dtype, copy=False)
        run_backward(self, grad, retain_graph=retain_graph)

    def detach(self):
        """A tensor with the same values (shared memory) and no history."""
        return Tensor._from_array(self._array)

    def detach_(self):
        self.grad_fn = None
        self.requires_grad = False
        return self

    # ------------------------------------------------------------------ conversion
    def numpy(self):
        """The values as a NumPy array (shares memory on the CPU)."""
        if self.requires_grad:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead.")
        if self.device.type != "cpu":
            raise TypeError(f"can't convert {self.device} tensor to numpy. Use Tensor.cpu() to copy the tensor to host memory first.")
        return self._array

    def item(self):
        """The value of a one-element tensor as a Python number."""
        if self.numel() != 1:
            raise ValueError(f"only one element tensors can be converted to Python scalars (got shape {tuple(self.shape)})")
        return self._array.reshape(()).item()

    def tolist(self):
        return backend.to_device(self._array, "cpu").tolist()

    def to(self, *args, dtype=None, device=None):
        """``to("cuda")``, ``to(minidl.float64)``, ``to(other_tensor)``, or both by keyword. Differentiable."""
        dtype, device = parse_to_args(args, dtype, device)
        out = self
        if device is not None and backend.Device(device) != self.device:
            out = ToDevice.apply(out, backend.Device(device))
        if dtype is not None and dtypes.as_dtype(dtype) != out.dtype:
            out = E.Cast.apply(out, dtypes.as_dtype(dtype))
        return out

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        return self.to("cuda" if device is None else f"cuda:{device}")

    def float(self):
        return self.to(dtypes.float32)

    def double(self):
        return self.to(dtypes.float64)

    def long(self):
        return self.to(dtypes.int64)

    def int(self):
        return self.to(dtypes.int32)

    def bool(self):
        return self.to(dtypes.bool_)

    def type_as(self, other):
        return self.to(other.dtype)

    def __array__(self, dtype=None, copy=None):
        array = self.detach().cpu()._array
        return array if dtype is None else array.astype(dtype)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        if self.numel() != 1:
            raise RuntimeError(f"Boolean value of Tensor with more than one value is ambiguous (shape {tuple(self.shape)})")
        return bool(self.item())

    def __index__(self):
        if dtypes.category(self.dtype) != 1 or self.numel() != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __repr__(self):
        body = np.array2string(
            np.asarray(self.__array__()), separator=", ", prefix="tensor(", precision=4, threshold=200, edgeitems=3
        )
        extras = []
        if self.device.type != "cpu":
            extras.append(f"device='{self.device}'")
        if self.dtype not in (dtypes.float32, dtypes.int64, dtypes.bool_) or self.numel() == 0:
            extras.append(f"dtype=minidl.{self.dtype}")
        if self.grad_fn is not None:
            extras.append(f"grad_fn={self.grad_fn}")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extras) + ")"

    __hash__ = object.__hash__  # == is elementwise, so hash by identity (tensors can be dict keys)

    # ------------------------------------------------------------------ in-place (no graph)
    def _check_inplace(self, name):
        if self.requires_grad and is_grad_enabled():
            raise RuntimeError(
                f"{name}: a tensor that requires grad is being used in an in-place operation; "
                "wrap the update in `with minidl.no_grad():`"
            )

    def _operand_array(self, other):
        return other._array if isinstance(other, Tensor) else other

    def zero_(self):
        self._check_inplace("zero_")
        self._array.fill(0)
        return self

    def fill_(self, value):
        self._check_inplace("fill_")
        self._array.fill(value)
        return self

    def copy_(self, source):
        """Copy ``source``'s values into this tensor (shape must broadcast, dtype is converted)."""
        self._check_inplace("copy_")
        array = source._array if isinstance(source, Tensor) else source
        if backend.array_module(array) is np:  # a NumPy array, a list, a number (a CuPy array stays as it is)
            array = np.asarray(array)
        self._array[...] = backend.to_device(array, self.device)
        return self

    def add_(self, other, alpha=1):
        self._check_inplace("add_")
        self._array += self._operand_array(other) * alpha if alpha != 1 else self._operand_array(other)
        return self

    def sub_(self, other, alpha=1):
        return self.add_(other, alpha=-alpha)

    def mul_(self, other):
        self._check_inplace("mul_")
        self._array *= self._operand_array(other)
        return self

    def div_(self, other):
        self._check_inplace("div_")
        self._array /= self._operand_array(other)
        return self

    def clamp_(self, min=None, max=None):
        self._check_inplace("clamp_")
        backend.array_module(self._array).clip(self._array, min, max, out=self._array)
        return self

    def normal_(self, mean=0.0, std=1.0):
        self._check_inplace("normal_")
        self._array[...] = backend.random_normal(self.shape, self.dtype, self.device) * std + mean
        return self

    def uniform_(self, a=0.0, b=1.0):
        self._check_inplace("uniform_")
        self._array[...] = backend.random_uniform(self.shape, self.dtype, self.device) * (b - a) + a
        return self

    # ------------------------------------------------------------------ new tensors like this one
    def new_zeros(self, shape, dtype=None):
        return Tensor._from_array(backend.array_module(self._array).zeros(shape, dtype=dtype or self.dtype))

    def new_ones(self, shape, dtype=None):
        return Tensor._from_array(backend.array_module(self._array).ones(shape, dtype=dtype or self.dtype))

    def new_tensor(self, data, dtype=None):
        from .creation import tensor

        return tensor(data, dtype=dtype or self.dtype, device=self.device)

    # ------------------------------------------------------------------ arithmetic
    __add__ = lambda self, other: E.add(self, other)
    __radd__ = lambda self, other: E.add(other, self)
    __sub__ = lambda self, other: E.sub(self, other)
    __rsub__ = lambda self, other: E.sub(other, self)
    __mul__ = lambda self, other: E.mul(self, other)
    __rmul__ = lambda self, other: E.mul(other, self)
    __truediv__ = lambda self, other: E.div(self, other)
    __rtruediv__ = lambda self, other: E.div(other, self)
    __pow__ = lambda self, other: E.pow(self, other)
    __rpow__ = lambda self, other: E.pow(other, self)
    __neg__ = lambda self: E.neg(self)
    __matmul__ = lambda self, other: linalg.matmul(self, other)
    __rmatmul__ = lambda self, other: linalg.matmul(other, self)
    __abs__ = lambda self: E.abs(self)
    __getitem__ = lambda self, index: S.getitem(self, index)

    add, sub, mul, div, pow = E.add, E.sub, E.mul, E.div, E.pow
    exp, log, sqrt, abs, neg = E.exp, E.log, E.sqrt, E.abs, E.neg
    relu, sigmoid, tanh, clamp = E.relu, E.sigmoid, E.tanh, E.clamp
    maximum, minimum = E.maximum, E.minimum
    matmul = linalg.matmul
    sum, mean, var, std = R.sum, R.mean, R.var, R.std
    max, min, argmax, argmin = R.max, R.min, R.argmax, R.argmin
    reshape, flatten, permute, transpose = S.reshape, S.flatten, S.permute, S.transpose
    unsqueeze, squeeze, expand = S.unsqueeze, S.squeeze, S.expand
    view = S.reshape

    def clip(self, min=None, max=None):
        return E.clamp(self, min, max)

    def clone(self):
        return E.Clone.apply(self)

    def contiguous(self):
        return self

    def t(self):
        if self.ndim > 2:
            raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {self.ndim}D")
        return self.T

    def expand_as(self, other):
        return S.expand(self, other.shape)

    def view_as(self, other):
        return S.reshape(self, other.shape)

    def softmax(self, dim):
        from .nn import functional as F

        return F.softmax(self, dim)

    def log_softmax(self, dim):
        from .nn import functional as F

        return F.log_softmax(self, dim)

    def masked_fill(self, mask, value):
        """``value`` where ``mask`` is true, else this tensor's values."""
        return E.where(mask, value, self)

    # ------------------------------------------------------------------ comparisons and integer math (no gradient)
    def _compare(self, other, op):
        other = other._array if isinstance(other, Tensor) else other
        return Tensor._from_array(op(self._array, other))

    __eq__ = lambda self, other: self._compare(other, lambda a, b: a == b)
    __ne__ = lambda self, other: self._compare(other, lambda a, b: a != b)
    __lt__ = lambda self, other: self._compare(other, lambda a, b: a < b)
    __le__ = lambda self, other: self._compare(other, lambda a, b: a <= b)
    __gt__ = lambda self, other: self._compare(other, lambda a, b: a > b)
    __ge__ = lambda self, other: self._compare(other, lambda a, b: a >= b)
    eq, ne, lt, le, gt, ge = __eq__, __ne__, __lt__, __le__, __gt__, __ge__

    __mod__ = lambda self, other: self._compare(other, lambda a, b: a % b)
    __floordiv__ = lambda self, other: self._compare(other, lambda a, b: a // b)
    remainder = __mod__

    def __invert__(self):
        if self.dtype != dtypes.bool_:
            raise TypeError(f"~ is defined for bool tensors only, got {self.dtype}")
        return Tensor._from_array(~self._array)

    def __and__(self, other):
        return self._compare(other, lambda a, b: a & b)

    def __or__(self, other):
        return self._compare(other, lambda a, b: a | b)

    def all(self):
        return Tensor._from_array(backend.array_module(self._array).asarray(self._array.all()))

    def any(self):
        return Tensor._from_array(backend.array_module(self._array).asarray(self._array.any()))


_function.Tensor = Tensor  # Function.apply tells Tensors from plain arguments with it


def parse_to_args(args, dtype=None, device=None):
    """``.to(...)``'s positional arguments -> (dtype, device): a Tensor gives both, a string or
    Device is a device, anything else a dtype. Shared by ``Tensor.to`` and ``Module.to``."""
    for arg in args:
        if isinstance(arg, Tensor):
            dtype, device = arg.dtype, arg.device
        elif isinstance(arg, (str, backend.Device)):
            device = arg
        else:
            dtype = arg
    return dtype, device


class ToDevice(Function):
    """out = x copied to ``device``; the gradient goes back to x's device."""

    @staticmethod
    def forward(ctx, x, device):
        ctx.source = backend.device_of(x)
        return backend.to_device(x, device)

    @staticmethod
    def backward(ctx, grad):
        return backend.to_device(grad, ctx.source), None
