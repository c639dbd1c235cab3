"""PyTorch's checkpoint format before 1.6 (``_use_new_zipfile_serialization=False``).

One stream holding, one after the other::

    pickle: the magic number 0x1950a86a20f9469cfc6c
    pickle: the protocol version, 1001
    pickle: {"protocol_version": 1001, "little_endian": True, "type_sizes": {...}}
    pickle: the object (a state_dict), tensors as persistent ids
    pickle: the list of storage keys, in the order the storages follow
    per storage: its element count (int64, little-endian), then numel * itemsize raw bytes

Every pickle is scanned, then read by ``torch_pickle``'s restricted unpickler, so a plain
Python pickle (or a crafted one) is refused rather than run, and costs no more memory than
its size; each storage's size is checked against the bytes the file has left before it is read.
"""
from __future__ import annotations

from .dtype_codes import decode
from .errors import CheckpointError, Refusal, reading
from .files import read_exactly, stream_size
from .torch_pickle import expected_bytes, materialize, unpickle_stream

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001


def read(stream, name, device):
    """The object saved in the legacy PyTorch file ``stream``, with minidl Tensors on ``device``."""
    file_size = stream_size(stream)
    with reading(name):
        _check_magic(stream, name)
        if unpickle_stream(stream) != PROTOCOL_VERSION:
            raise CheckpointError(f"{name}: unsupported PyTorch legacy protocol version")
        sys_info = unpickle_stream(stream)
        little_endian = not isinstance(sys_info, dict) or sys_info.get("little_endian", True)
        refs = {}
        obj = unpickle_stream(stream, refs)
        keys = unpickle_stream(stream)
        if not (type(keys) is list and all(type(key) is str for key in keys) and sorted(keys) == sorted(refs)):
            raise CheckpointError(f"{name}: its storage list does not match the storages its tensors use")
        storages = {key: _read_storage(stream, refs[key], "little" if little_endian else "big", name) for key in keys}
        return materialize(obj, storages, name, device, file_size)


def _check_magic(stream, name):
    """The first pickle must be PyTorch's magic number; a refusal (e.g. a global) says what was refused."""
    try:
        magic = unpickle_stream(stream)
    except (CheckpointError, Refusal):
        raise
    except Exception as error:  # not even a well-formed pickle
        raise _not_torch(name) from error
    if magic != MAGIC_NUMBER:
        raise _not_torch(name)


def _not_torch(name):
    return CheckpointError(f"{name} is a Python pickle but not a PyTorch checkpoint; minidl never "
                           "unpickles arbitrary objects (loading them could run code)")


def _read_storage(stream, ref, byteorder, name):
    numel = int.from_bytes(read_exactly(stream, 8, f"storage {ref.key!r}"), "little")
    if numel != ref.numel:
        raise CheckpointError(f"{name}: storage {ref.key!r} holds {numel} elements, its tensors say {ref.numel}")
    return decode(read_exactly(stream, expected_bytes(ref), f"storage {ref.key!r}"), ref.dtype_name, byteorder)
