"""Data types and PyTorch's promotion rules.

minidl's dtypes are NumPy dtype objects (CuPy uses the same ones), exported
as ``minidl.float32``, ``minidl.float64``, ``minidl.int64``, ``minidl.bool``...

Promotion follows PyTorch, which differs from NumPy in two places:
- categories first: bool < integer < floating. Mixing categories gives the
  higher category's dtype (int64 tensor + float32 tensor -> float32; NumPy
  would say float64);
- a Python scalar never changes a tensor's dtype within its category
  (float32 tensor * 2.5 -> float32); an int tensor with a float scalar gives
  the default float dtype, float32.
"""
import builtins

import numpy as np

float16 = np.dtype("float16")
float32 = np.dtype("float32")
float64 = np.dtype("float64")
int8 = np.dtype("int8")
uint8 = np.dtype("uint8")
int16 = np.dtype("int16")
int32 = np.dtype("int32")
int64 = np.dtype("int64")
bool_ = np.dtype("bool")

half, float, double, long, int = float16, float32, float64, int64, int32  # PyTorch aliases

default_float = float32


def as_dtype(dtype):
    """Normalise a dtype-like (``minidl.float32``, ``"float32"``, ``np.float32``) to a NumPy dtype."""
    if dtype is None:
        return None
    try:
        return np.dtype(dtype)
    except TypeError as error:
        raise TypeError(f"not a dtype: {dtype!r}") from error


def category(dtype) -> int:
    """0 for bool, 1 for integers, 2 for floating point."""
    kind = np.dtype(dtype).kind
    if kind == "b":
        return 0
    if kind in "iu":
        return 1
    if kind == "f":
        return 2
    raise TypeError(f"minidl does not support dtype {dtype}")


def is_floating(dtype) -> bool:
    return np.dtype(dtype).kind == "f"


def promote(a, b):
    """Result dtype of a binary op between two tensors of dtypes ``a`` and ``b`` (PyTorch's rule)."""
    ca, cb = category(a), category(b)
    if ca != cb:
        return np.dtype(a) if ca > cb else np.dtype(b)
    return np.promote_types(a, b)


def scalar_dtype(tensor_dtype, scalar):
    """Dtype of a Python ``scalar`` used with a tensor of ``tensor_dtype``: the scalar follows the tensor."""
    tensor_dtype = np.dtype(tensor_dtype)
    # the aliases above shadow float and int in this module, hence builtins.
    if isinstance(scalar, (builtins.bool, np.bool_)):
        scalar_category = 0
    elif isinstance(scalar, (builtins.int, np.integer)):
        scalar_category = 1
    elif isinstance(scalar, (builtins.float, np.floating)):
        scalar_category = 2
    else:
        raise TypeError(f"unsupported operand: {scalar!r} ({type(scalar).__name__})")
    if scalar_category <= category(tensor_dtype):
        return tensor_dtype
    return default_float if scalar_category == 2 else int64


def infer_dtype(data):
    """dtype of ``minidl.tensor(data)`` when none is given (PyTorch's rule).

    An ndarray keeps its dtype; Python floats become float32, ints int64, bools bool.
    """
    if hasattr(data, "dtype") and not isinstance(data, (np.generic,)):
        return np.dtype(data.dtype)
    array = np.asarray(data)
    kind = array.dtype.kind
    if kind == "b":
        return bool_
    if kind in "iu":
        return int64
    if kind == "f":
        return default_float if not isinstance(data, np.generic) else array.dtype
    raise TypeError(f"cannot make a tensor from {type(data).__name__} with dtype {array.dtype}")
