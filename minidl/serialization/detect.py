"""Which format a file is in, from its first bytes (never from its name).

    starts with             format (checked in this order)
    ---------------------   -----------------------------------------------------------
    \\x93NUMPY               a single .npy array: refused, with a hint
    PK\\x03\\x04 / PK\\x05\\x06 a zip: PyTorch's (it holds a data.pkl) or else an .npz
    8 bytes, then "{"       safetensors (a little-endian header length, then a JSON header)
    \\x80                    a pickle: PyTorch's legacy format (its first pickle is a magic number)

safetensors comes before pickles because its first byte is the header length's lowest byte,
which is 0x80 -- pickle's first byte -- for a header of 128 bytes, or 384, or 640...
"""
from __future__ import annotations

import zipfile

from .errors import CheckpointError, reading
from .files import peek
from .torch_zip import is_torch_zip

NPZ, TORCH_ZIP, TORCH_LEGACY, SAFETENSORS = "npz", "torch_zip", "torch_legacy", "safetensors"


def detect_format(stream, name):
    """One of NPZ, TORCH_ZIP, TORCH_LEGACY, SAFETENSORS; CheckpointError naming ``name`` otherwise."""
    head = peek(stream, 16)
    if not head:
        raise CheckpointError(f"{name} is empty")
    if head.startswith(b"\x93NUMPY"):
        raise CheckpointError(f"{name} is a single .npy array, not a checkpoint; load it with numpy.load")
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        with reading(name):
            position = stream.tell()
            try:
                names = zipfile.ZipFile(stream).namelist()
            finally:
                stream.seek(position)
        return TORCH_ZIP if is_torch_zip(names) else NPZ
    if head[8:9] == b"{":
        return SAFETENSORS
    if head.startswith(b"\x80"):
        return TORCH_LEGACY
    raise CheckpointError(f"{name} is not a checkpoint minidl can read: it starts like none of an .npz, "
                          "a PyTorch file (zip or legacy) or a safetensors file")
