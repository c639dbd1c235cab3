"""The safetensors format: a JSON header, then raw little-endian tensor bytes. No code, ever.

Layout (https://github.com/huggingface/safetensors, "Format")::

    8 bytes     N, the header's length, an unsigned little-endian 64-bit int
    N bytes     UTF-8 JSON, starting with "{" (writers pad it with spaces):
                {"conv.weight": {"dtype": "F32", "shape": [8, 3, 3, 3], "data_offsets": [0, 864]},
                 ...,
                 "__metadata__": {"format": "pt"}}            (optional, str -> str)
    the rest    the byte buffer; [begin, end) offsets are relative to its start

Rules checked on reading (each failure names the file and the tensor): the header fits in
the file and names no key twice; each tensor's byte span matches ``prod(shape) * itemsize``;
spans lie inside the buffer, do not overlap, and cover it without holes -- so the tensors
together hold exactly the file's bytes.

Writing lays the tensors out largest-itemsize first, so that every tensor starts at a
multiple of its itemsize when the header is padded to 8 bytes, and keeps the caller's key
order in the header.
"""
from __future__ import annotations

import json
import math
from collections import OrderedDict

import numpy as np

from .. import backend
from .._tensor import Tensor
from .dtype_codes import CODE_OF_DTYPE, SAFETENSORS_CODES, decode, stored_itemsize
from .errors import CheckpointError, Refusal, reading
from .files import read_exactly, stream_size

MAX_HEADER_BYTES = 100_000_000  # the reference implementation's limit too
METADATA_KEY = "__metadata__"


# --------------------------------------------------------------------------- reading
def read(stream, name, device):
    """The tensors of the safetensors file ``stream``: an OrderedDict name -> Tensor on ``device``."""
    with reading(name):
        size = stream_size(stream)
        if size < 8:
            raise CheckpointError(f"{name} is truncated: {size} bytes, fewer than a safetensors header length")
        header_length = int.from_bytes(stream.read(8), "little")
        if header_length > min(size - 8, MAX_HEADER_BYTES):
            raise CheckpointError(f"{name}: its safetensors header length {header_length} runs past the end of "
                                  f"the file ({size} bytes) or over the {MAX_HEADER_BYTES}-byte limit: truncated?")
        header = json.loads(stream.read(header_length).decode("utf-8"), object_pairs_hook=_unique_keys)  # "{": a dict
        entries = _check_entries(header, size - 8 - header_length, name)
        data_start = 8 + header_length
        tensors = OrderedDict()
        for key, (dtype_name, shape, begin, end) in entries.items():
            stream.seek(data_start + begin)
            array = decode(read_exactly(stream, end - begin, f"tensor {key!r}"), dtype_name).reshape(shape)
            tensors[key] = Tensor._from_array(backend.to_device(array, device))
        return tensors


def _unique_keys(pairs):
    """A JSON object as an OrderedDict; a key given twice is refused (which one would count?)."""
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise Refusal(f"its header names {key!r:.100} twice")
        seen.add(key)
    return OrderedDict(pairs)


def _check_entries(header, buffer_size, name):
    """header -> OrderedDict key -> (dtype name, shape, begin, end), every rule checked."""
    metadata = header.get(METADATA_KEY, {})
    if not (isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
        raise CheckpointError(f"{name}: its {METADATA_KEY} must map strings to strings")
    entries = OrderedDict()
    for key, info in header.items():
        if key == METADATA_KEY:
            continue
        if not (isinstance(info, dict) and {"dtype", "shape", "data_offsets"} <= set(info)):
            raise CheckpointError(f"{name}: tensor {key!r} needs dtype, shape and data_offsets, got {info!r:.200}")
        code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if code not in SAFETENSORS_CODES:
            raise CheckpointError(f"{name}: tensor {key!r} has dtype {code!r:.40}, which minidl cannot map "
                                  f"(it reads {', '.join(SAFETENSORS_CODES)})")
        if not (isinstance(shape, list) and all(_is_count(n) for n in shape)):
            raise CheckpointError(f"{name}: tensor {key!r} has a malformed shape {shape!r:.100}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets))
                and offsets[0] <= offsets[1]):
            raise CheckpointError(f"{name}: tensor {key!r} has malformed data_offsets {offsets!r:.100}")
        dtype_name, (begin, end) = SAFETENSORS_CODES[code], offsets
        if end > buffer_size:
            raise CheckpointError(f"{name}: tensor {key!r} spans bytes [{begin}, {end}) of a {buffer_size}-byte "
                                  "data buffer: the file is truncated")
        needed = math.prod(shape) * stored_itemsize(dtype_name)
        if end - begin != needed:
            raise CheckpointError(f"{name}: tensor {key!r} of shape {tuple(shape)} and dtype {code} needs {needed} "
                                  f"bytes, but its data_offsets span {end - begin}")
        entries[key] = (dtype_name, tuple(shape), begin, end)
    _check_layout(entries, buffer_size, name)
    return entries


def _check_layout(entries, buffer_size, name):
    """The spans, sorted, must tile [0, buffer_size) exactly: no overlap, no hole, nothing after."""
    position, previous = 0, None
    for key, (_, _, begin, end) in sorted(entries.items(), key=lambda item: item[1][2:]):
        if begin != position:
            what = f"overlaps tensor {previous!r}" if begin < position else f"leaves a hole before it at byte {position}"
            raise CheckpointError(f"{name}: tensor {key!r} starting at byte {begin} {what}")
        position, previous = end, key
    if position != buffer_size:
        raise CheckpointError(f"{name}: {buffer_size - position} bytes after the last tensor belong to none")


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# --------------------------------------------------------------------------- writing
def encode(state):
    """Check ``state`` (str -> tensor or array) and return OrderedDict key -> contiguous little-endian CPU array.

    Raises TypeError naming the key of anything safetensors can't hold (before any file is touched).
    """
    if not isinstance(state, dict):
        raise TypeError(f"minidl.save(format='safetensors') takes a flat dict name -> tensor, got {type(state).__name__}")
    arrays = OrderedDict()
    for key, value in state.items():
        if not isinstance(key, str) or key == METADATA_KEY:
            raise TypeError(f"minidl.save(format='safetensors'): keys must be strings other than {METADATA_KEY!r}, "
                            f"got {key!r}")
        if isinstance(value, Tensor):
            value = value._array
        if not (isinstance(value, np.ndarray) or hasattr(value, "__cuda_array_interface__")):
            raise TypeError(f"minidl.save(format='safetensors'): {key!r} is a {type(value).__name__}; safetensors "
                            "holds only tensors (save nested checkpoints in the default npz format)")
        if np.dtype(value.dtype) not in CODE_OF_DTYPE:
            raise TypeError(f"minidl.save(format='safetensors'): {key!r} has dtype {value.dtype}, which has no "
                            "safetensors code minidl writes")
        array = np.asarray(backend.to_device(value, "cpu"), order="C")  # (ascontiguousarray makes 0-d 1-d)
        arrays[key] = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return arrays


def write(arrays, stream):
    """Write the safetensors file for ``arrays`` (from ``encode``) to ``stream``."""
    order = sorted(arrays, key=lambda key: -arrays[key].dtype.itemsize)  # stable: ties keep the caller's order
    offsets, position = {}, 0
    for key in order:
        offsets[key] = [position, position + arrays[key].nbytes]
        position += arrays[key].nbytes
    header = OrderedDict(
        (key, {"dtype": CODE_OF_DTYPE[np.dtype(array.dtype.newbyteorder("="))], "shape": list(array.shape),
               "data_offsets": offsets[key]})
        for key, array in arrays.items()
    )
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)  # pad: the data then starts 8-byte aligned
    stream.write(len(text).to_bytes(8, "little"))
    stream.write(text)
    for key in order:
        stream.write(arrays[key].tobytes())
