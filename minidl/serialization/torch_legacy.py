"""PyTorch's checkpoint format before 1.6 (``_use_new_zipfile_serialization=False``).

One stream holding, one after the other::

    pickle: the magic number 0x1950a86a20f9469cfc6c
    pickle: the protocol version, 1001
    pickle: {"protocol_version": 1001, "little_endian": True, "type_sizes": {...}}
    pickle: the object (a state_dict), tensors as persistent ids
    pickle: the list of storage keys, in the order the storages follow
    per storage: its element count (int64, little-endian), then numel * itemsize raw bytes

Every pickle goes through ``torch_pickle``'s restricted unpickler, so a plain Python pickle
(or a crafted one) is refused rather than run.
"""
from __future__ import annotations

from .dtype_codes import decode
from .files import stream_size
from .errors import CheckpointError, reading
from .torch_pickle import expected_bytes, materialize, unpickle

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001


def read(stream, name, device):
    """The object saved in the legacy PyTorch file ``stream``, with minidl Tensors on ``device``."""
    not_torch = CheckpointError(f"{name} is a Python pickle but not a PyTorch checkpoint; minidl never "
                                "unpickles arbitrary objects (loading them could run code)")
    try:
        magic = unpickle(stream, name)
    except CheckpointError:  # it asked for a global: say which
        raise
    except Exception as error:  # not even a well-formed pickle
        raise not_torch from error
    if magic != MAGIC_NUMBER:
        raise not_torch
    with reading(name):
        if unpickle(stream, name) != PROTOCOL_VERSION:
            raise CheckpointError(f"{name}: unsupported PyTorch legacy protocol version")
        sys_info = unpickle(stream, name)
        little_endian = not isinstance(sys_info, dict) or sys_info.get("little_endian", True)
        refs = {}
        obj = unpickle(stream, name, refs)
        keys = unpickle(stream, name)
        if not isinstance(keys, list) or sorted(keys) != sorted(refs):
            raise CheckpointError(f"{name}: its storage list does not match the storages its tensors use")
        storages = {key: _read_storage(stream, refs[key], "little" if little_endian else "big", name) for key in keys}
        return materialize(obj, storages, name, device)


def _read_storage(stream, ref, byteorder, name):
    numel = int.from_bytes(_read_exactly(stream, 8, name, ref.key), "little")
    if numel != ref.numel:
        raise CheckpointError(f"{name}: storage {ref.key!r} holds {numel} elements, its tensors say {ref.numel}")
    return decode(_read_exactly(stream, expected_bytes(ref), name, ref.key), ref.dtype_name, byteorder)


def _read_exactly(stream, size, name, key):
    left = stream_size(stream)  # asked first, so that a corrupt count can't make us allocate gigabytes
    if left < size:
        raise CheckpointError(f"{name} is truncated: storage {key!r} needs {size} bytes, the file has {left} left")
    return stream.read(size)
