"""minidl's own checkpoint format: a NumPy ``.npz`` plus one JSON record of the nesting.

What can be saved: tensors, NumPy arrays and scalars (bool, integer or floating-point),
``int``/``float``/``bool``/``str``/``None``, and dicts (str/int/float/bool/None keys), lists and
tuples nesting them -- a model's ``state_dict()``, an optimizer's, or a whole training checkpoint.

The file is a plain NumPy ``.npz`` (a zip of ``.npy`` files):

- each array is one member, named by its path in the object (``model/features.0.weight``;
  a top-level state_dict's arrays keep their own keys), so ``numpy.load`` can inspect it;
- the nesting (dicts, lists, numbers, which arrays are tensors) is one JSON record,
  stored as a uint8 array named ``__minidl_structure__``.

Reading opens the zip through ``zip_archive`` (no overlapping members, compressed ones bounded)
and parses each ``.npy`` header itself: an array must fill exactly its member's bytes, and be
bool, integer or floating-point -- a file holding pickled objects is refused rather than
unpickled, and str, bytes, void, complex and datetime arrays, which a checkpoint never holds,
are refused too. A ``.npz`` without the structure record (e.g. written by ``np.savez`` or
``np.savez_compressed``) loads as an OrderedDict ``name -> Tensor``.
"""
from __future__ import annotations

import io
import json
import math
import zipfile
from collections import OrderedDict

import numpy as np

from .. import backend
from .._tensor import Tensor
from .dtype_codes import native
from .errors import CheckpointError
from .limits import MAX_DEPTH
from .zip_archive import open_zip, read_member

STRUCTURE_KEY = "__minidl_structure__"
FORMAT_NAME = "minidl-checkpoint"
FORMAT_VERSION = 1
ARRAY_KINDS = "biuf"  # NumPy's kind codes of what a checkpoint holds: bool, signed and unsigned ints, floats
_KINDS_READ = "minidl saves and reads bool, integer and floating-point arrays"
_NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
_NPY_HEADER_BYTES = 12 + 10_000  # magic, version, length, and NumPy's own limit on a header's size
_JSON_SCALARS = (type(None), bool, int, float, str)


# --------------------------------------------------------------------------- writing
def encode(obj):
    """``obj`` -> OrderedDict of member name -> array, the structure record last.

    Raises TypeError naming the place of anything that can't be saved (before any file is touched).
    """
    arrays = OrderedDict()
    root = _encode(obj, (), arrays)
    record = json.dumps({"format": FORMAT_NAME, "version": FORMAT_VERSION, "root": root})
    arrays[STRUCTURE_KEY] = np.frombuffer(record.encode("utf-8"), dtype=np.uint8)
    return arrays


def write(arrays, stream):
    """An uncompressed .npz, as ``np.savez`` writes it (done by hand so that any name is allowed)."""
    with zipfile.ZipFile(stream, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays.items():
            with archive.open(name + ".npy", mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)


def _describe_path(path):
    return "".join(f"[{part!r}]" for part in path) or "the top level"


def _add_array(array, path, arrays):
    """Store ``array`` under a readable, unique member name; return the name."""
    dtype = np.dtype(array.dtype)
    if dtype.kind not in ARRAY_KINDS:
        raise TypeError(f"minidl.save: {dtype.name} arrays can't be saved (at {_describe_path(path)}); {_KINDS_READ}")
    name = "/".join(str(part) for part in path) or "tensor"
    if name in arrays or name == STRUCTURE_KEY:
        name = f"{name}#{len(arrays)}"
    arrays[name] = backend.to_device(array, "cpu")
    return name


def _encode(obj, path, arrays):
    """The JSON record for ``obj``; its arrays go into ``arrays``."""
    if isinstance(obj, Tensor):
        return {"type": "tensor", "array": _add_array(obj._array, path, arrays)}
    if isinstance(obj, np.ndarray) or hasattr(obj, "__cuda_array_interface__"):
        return {"type": "ndarray", "array": _add_array(obj, path, arrays)}
    if isinstance(obj, np.generic):  # a NumPy scalar keeps its dtype: stored as a 0-d array
        return {"type": "numpy_scalar", "array": _add_array(np.asarray(obj), path, arrays)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"type": "value", "value": obj}
    if isinstance(obj, dict):
        items = []
        for key, value in obj.items():
            if not (key is None or isinstance(key, (bool, int, float, str))):
                raise TypeError(f"minidl.save: dict keys must be str, int, float, bool or None; "
                                f"got {type(key).__name__} at {_describe_path(path)}")
            items.append([key, _encode(value, path + (key,), arrays)])
        return {"type": "dict", "items": items}
    if isinstance(obj, (list, tuple)):
        return {"type": type(obj).__name__ if type(obj) in (list, tuple) else "list",
                "items": [_encode(value, path + (index,), arrays) for index, value in enumerate(obj)]}
    raise TypeError(
        f"minidl.save: can't save a {type(obj).__name__} (at {_describe_path(path)}); only tensors, arrays, "
        "numbers, strings, None and dicts/lists/tuples of them are saved (never code or pickled objects)"
    )


# --------------------------------------------------------------------------- reading
def read(stream, name, device):
    """Read an .npz from ``stream``: minidl's nested checkpoint, or a plain name -> Tensor dict."""
    arrays = _read_arrays(stream, name)
    if STRUCTURE_KEY not in arrays:  # a plain .npz, e.g. from np.savez: name -> tensor
        return OrderedDict((key, Tensor._from_array(backend.to_device(array, device))) for key, array in arrays.items())
    root = _structure_root(arrays.pop(STRUCTURE_KEY), name)
    try:
        return _Decoder(arrays, device, name).decode(root, 0)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{name}: its structure record does not match its arrays ({error!r:.300})") from error


def _read_arrays(stream, name):
    """Every member of the .npz, by name (without ``.npy``), as a NumPy array."""
    with open_zip(stream, name, methods=(zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)) as archive:
        arrays = OrderedDict()
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                raise CheckpointError(f"{name} is a zip archive but not an .npz: {info.filename!r} is not a .npy array")
            key = info.filename[:-len(".npy")]
            arrays[key] = _parse_npy(read_member(archive, info), key, name)
        return arrays


def _parse_npy(raw, key, name):
    """The array in the .npy bytes ``raw`` (a uint8 array, whose memory the result shares where it can).

    Parsed here rather than by ``numpy.load``, which allocates what the header's shape asks for
    before it reads anything: the header must describe exactly the bytes the member holds, in
    a dtype a checkpoint holds (pickled objects are refused, never unpickled).
    """
    header = io.BytesIO(bytes(memoryview(raw)[:_NPY_HEADER_BYTES]))
    version = np.lib.format.read_magic(header)
    if version not in _NPY_HEADER_READERS:
        raise CheckpointError(f"{name}: array {key!r} is a .npy of version {version}, which minidl does not read")
    shape, fortran_order, dtype = _NPY_HEADER_READERS[version](header)
    if dtype.hasobject:
        raise CheckpointError(f"{name} contains pickled Python objects, which minidl refuses to load "
                              "(loading them could run arbitrary code)")
    if dtype.kind not in ARRAY_KINDS:
        raise CheckpointError(f"{name}: array {key!r} has dtype {dtype}, which a checkpoint never holds "
                              f"({_KINDS_READ})")
    start, count = header.tell(), math.prod(shape)
    if min(shape, default=0) < 0 or start + count * dtype.itemsize != len(raw):
        raise CheckpointError(f"{name}: array {key!r} of shape {shape} and dtype {dtype} does not fit its "
                              f"{len(raw) - start} bytes of data")
    array = native(np.frombuffer(raw, dtype=dtype, count=count, offset=start))
    return array.reshape(shape[::-1]).T if fortran_order else array.reshape(shape)


def _structure_root(array, name):
    """The ``root`` of the structure record stored in ``array``, once its format and version are checked."""
    try:
        if array.dtype != np.uint8:
            raise TypeError(f"it is {array.dtype}, not uint8")
        record = json.loads(array.tobytes().decode("utf-8"))
    except (TypeError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise CheckpointError(f"{name}: its structure record is corrupt ({type(error).__name__}: {error})") from error
    if not isinstance(record, dict) or record.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{name}: unknown structure record, not written by minidl.save")
    version = record.get("version", 0)
    if type(version) is not int:
        raise CheckpointError(f"{name}: its structure record's version {version!r:.40} is not a whole number")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{name} was written by a newer minidl (format version {version})")
    if "root" not in record:
        raise CheckpointError(f"{name}: its structure record has no root")
    return record["root"]


class _Decoder:
    """Structure record nodes -> objects. Each array moves to the device once, however often it is named."""

    def __init__(self, arrays, device, name):
        self.arrays, self.device, self.name = arrays, device, name
        self.on_device = {}  # member name -> array on the device

    def decode(self, node, depth):
        if depth > MAX_DEPTH:
            raise CheckpointError(f"{self.name}: its structure record nests deeper than {MAX_DEPTH} levels")
        kind = node["type"]
        if kind == "tensor":
            return Tensor._from_array(self._on_device(node["array"]))
        if kind == "ndarray":
            return self.arrays[node["array"]]
        if kind == "numpy_scalar":
            return self.arrays[node["array"]][()]
        if kind == "value":
            if type(node["value"]) not in _JSON_SCALARS:
                raise TypeError(f"a value must be a number, a string, a bool or None, not {node['value']!r:.100}")
            return node["value"]
        if kind == "dict":
            return OrderedDict((key, self.decode(value, depth + 1)) for key, value in node["items"])
        if kind in ("list", "tuple"):
            items = [self.decode(value, depth + 1) for value in node["items"]]
            return items if kind == "list" else tuple(items)
        raise ValueError(f"unknown entry type {kind!r:.100}")

    def _on_device(self, member):
        if member not in self.on_device:
            self.on_device[member] = backend.to_device(self.arrays[member], self.device)
        return self.on_device[member]
