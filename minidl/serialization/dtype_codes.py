"""How PyTorch and safetensors name dtypes, and decoding their raw little-endian bytes.

Both formats store a tensor's elements as raw bytes; the dtype is a name beside them:
PyTorch pickles a storage *class* (``torch.FloatStorage``), safetensors writes a code
(``"F32"``). minidl reads every dtype it has, plus bfloat16, which NumPy lacks:

    bfloat16 is the upper half of a float32 (1 sign, 8 exponent, 7 mantissa bits),
    so shifting its 16 bits left by 16 gives the float32 of exactly the same value.

It therefore loads as float32 (exact, twice the memory). Complex, quantized and 8-bit
float dtypes have no minidl counterpart: ``decode`` callers report them as unmappable.
"""
from __future__ import annotations

import numpy as np

BFLOAT16 = "bfloat16"  # a marker: read as float32 (see the module docstring)

# torch.<Name>Storage -> dtype. Other torch.*Storage classes (complex, quantized) are known but unmappable.
TORCH_STORAGES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16", "BFloat16Storage": BFLOAT16,
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16", "CharStorage": "int8",
    "ByteStorage": "uint8", "BoolStorage": "bool",
}

# safetensors dtype code -> dtype (the format's own list also has unsigned 16/32/64-bit ints,
# 8-bit floats and complex numbers, which minidl has no dtype for).
SAFETENSORS_CODES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": BFLOAT16,
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
}
CODE_OF_DTYPE = {np.dtype(name): code for code, name in SAFETENSORS_CODES.items() if name != BFLOAT16}


def stored_itemsize(dtype_name):
    """Bytes per element in the file."""
    return 2 if dtype_name == BFLOAT16 else np.dtype(dtype_name).itemsize


def decode(raw, dtype_name, byteorder="little"):
    """Raw bytes -> a 1-D NumPy array of ``dtype_name`` in native byte order (bfloat16 -> float32).

    See ``native``: the result shares ``raw``'s memory where it can (a writable buffer in native order).
    """
    order = "<" if byteorder == "little" else ">"
    if dtype_name == BFLOAT16:
        halves = np.frombuffer(raw, dtype=order + "u2")
        return (halves.astype(np.uint32) << 16).view(np.float32)
    return native(np.frombuffer(raw, dtype=np.dtype(dtype_name).newbyteorder(order)))


def native(array):
    """``array`` (read from a file's bytes) as a writable array in native byte order.

    It is returned as it is when it already is one (``np.frombuffer`` of a writable buffer, such
    as what ``files.fill`` reads: no copy); otherwise copied (``frombuffer`` of bytes alone would be read-only). Bools are made of
    bytes equal to 0 or 1 (any nonzero byte is True): other bytes are never reinterpreted
    as NumPy bools.
    """
    if array.dtype == np.bool_:
        return array.view(np.uint8) != 0
    if array.dtype.isnative and array.flags.writeable:
        return array
    return array.astype(array.dtype.newbyteorder("="))
