"""Making tensors: ``tensor``, ``zeros``, ``ones``, ``full``, ``randn``, ``rand``, ``randint``, ``arange``...

Every function takes ``dtype`` and ``device`` (and ``requires_grad`` where it
makes sense). Values are created directly on the target device.
"""
from __future__ import annotations

import numpy as np

from . import backend, dtypes
from ._tensor import Tensor


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new leaf tensor holding a copy of ``data`` (a number, nested lists, a NumPy/CuPy array or a Tensor).

    dtype follows PyTorch: an array keeps its dtype (float64 stays float64);
    Python floats become float32, ints int64, bools bool.
    """
    if isinstance(data, Tensor):
        data = data._array
    dtype = dtypes.as_dtype(dtype) or dtypes.infer_dtype(data)
    dtypes.category(dtype)  # rejects unsupported dtypes (complex, strings) with a clear error
    if device is None:
        device = backend.device_of(data) if hasattr(data, "__cuda_array_interface__") else "cpu"
    xp = backend.module_for(device)
    with backend.on_device(device):
        if backend.array_module(data) is not np and xp is np:
            data = data.get()
        array = xp.array(data, dtype=dtype, copy=True)
    return Tensor(array, requires_grad=requires_grad)


def as_tensor(data, dtype=None, device=None):
    """Like ``tensor`` but shares memory with a NumPy array when dtype and device already match."""
    if isinstance(data, Tensor) and dtype in (None, data.dtype) and device in (None, data.device):
        return data
    if isinstance(data, np.ndarray) and dtype in (None, data.dtype) and device in (None, "cpu"):
        return Tensor(data)
    return tensor(data, dtype=dtype, device=device)


def from_numpy(array):
    """A tensor sharing memory with a NumPy array."""
    return Tensor(array)


def _shape_arg(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    shape = tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"negative dimension in shape {shape}")
    return shape


def _filled(shape, fill, dtype, device, requires_grad):
    device = device or "cpu"
    xp = backend.module_for(device)
    with backend.on_device(device):
        array = xp.full(_shape_arg(shape), fill, dtype=dtypes.as_dtype(dtype) or dtypes.default_float)
    return Tensor(array, requires_grad=requires_grad)


def zeros(*shape, dtype=None, device=None, requires_grad=False):
    return _filled(shape, 0, dtype, device, requires_grad)


def ones(*shape, dtype=None, device=None, requires_grad=False):
    return _filled(shape, 1, dtype, device, requires_grad)


def empty(*shape, dtype=None, device=None, requires_grad=False):
    return _filled(shape, 0, dtype, device, requires_grad)


def full(shape, fill_value, dtype=None, device=None, requires_grad=False):
    """A tensor of ``shape`` filled with ``fill_value`` (dtype from the value when not given)."""
    if dtype is None:
        dtype = dtypes.infer_dtype(fill_value)
    return _filled((shape,) if isinstance(shape, int) else (tuple(shape),), fill_value, dtype, device, requires_grad)


def _like(other, fill, dtype, device, requires_grad):
    return _filled(other.shape, fill, dtype or other.dtype, device or other.device, requires_grad)


def zeros_like(other, dtype=None, device=None, requires_grad=False):
    return _like(other, 0, dtype, device, requires_grad)


def ones_like(other, dtype=None, device=None, requires_grad=False):
    return _like(other, 1, dtype, device, requires_grad)


def full_like(other, fill_value, dtype=None, device=None, requires_grad=False):
    return _like(other, fill_value, dtype, device, requires_grad)


def randn(*shape, dtype=None, device=None, requires_grad=False):
    """Standard normal samples, from the generator that ``manual_seed`` seeds."""
    dtype = dtypes.as_dtype(dtype) or dtypes.default_float
    return Tensor(backend.random_normal(_shape_arg(shape), dtype, device or "cpu"), requires_grad=requires_grad)


def rand(*shape, dtype=None, device=None, requires_grad=False):
    """Uniform samples in [0, 1)."""
    dtype = dtypes.as_dtype(dtype) or dtypes.default_float
    return Tensor(backend.random_uniform(_shape_arg(shape), dtype, device or "cpu"), requires_grad=requires_grad)


def randint(low, high=None, size=None, dtype=None, device=None):
    """Integers uniform in [low, high) (``randint(high, size)`` starts at 0), int64 by default."""
    if size is None:  # randint(high, size)
        raise TypeError("randint() requires a size, e.g. randint(0, 10, (3, 4))")
    if high is None:
        low, high = 0, low
    if high <= low:
        raise ValueError(f"randint: high ({high}) must be greater than low ({low})")
    array = backend.random_integers(low, high, _shape_arg((size,) if isinstance(size, int) else (tuple(size),)), device or "cpu")
    return Tensor(array.astype(dtypes.as_dtype(dtype) or dtypes.int64, copy=False))


def randperm(n, device=None):
    """A random permutation of 0..n-1, int64."""
    return Tensor(backend.random_permutation(n, device or "cpu"))


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    """Values from ``start`` to ``end`` (exclusive) by ``step``; int64 for int arguments, else float32."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError("arange: step must be non-zero")
    if dtype is None:
        dtype = dtypes.int64 if all(isinstance(v, (int, np.integer)) for v in (start, end, step)) else dtypes.default_float
    device = device or "cpu"
    xp = backend.module_for(device)
    with backend.on_device(device):
        array = xp.arange(start, end, step).astype(dtypes.as_dtype(dtype))
    return Tensor(array, requires_grad=requires_grad)


def eye(n, m=None, dtype=None, device=None):
    device = device or "cpu"
    with backend.on_device(device):
        return Tensor(backend.module_for(device).eye(n, m, dtype=dtypes.as_dtype(dtype) or dtypes.default_float))
