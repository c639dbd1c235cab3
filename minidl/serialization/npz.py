"""minidl's own checkpoint format: a NumPy ``.npz`` plus one JSON record of the nesting.

What can be saved: tensors, NumPy arrays and scalars, ``int``/``float``/``bool``/``str``/``None``,
and dicts (str/int/float/bool/None keys), lists and tuples nesting them -- a model's
``state_dict()``, an optimizer's, or a whole training checkpoint.

The file is a plain NumPy ``.npz`` (a zip of ``.npy`` files):

- each array is one member, named by its path in the object (``model/features.0.weight``;
  a top-level state_dict's arrays keep their own keys), so ``numpy.load`` can inspect it;
- the nesting (dicts, lists, numbers, which arrays are tensors) is one JSON record,
  stored as a uint8 array named ``__minidl_structure__``.

Reading uses ``numpy.load(..., allow_pickle=False)``: a file holding pickled objects is
refused rather than unpickled. A ``.npz`` without the structure record (e.g. written by
``np.savez``) loads as an OrderedDict ``name -> Tensor``.
"""
from __future__ import annotations

import json
import zipfile
from collections import OrderedDict

import numpy as np

from .. import backend
from .._tensor import Tensor
from .errors import CheckpointError, reading

STRUCTURE_KEY = "__minidl_structure__"
FORMAT_NAME = "minidl-checkpoint"
FORMAT_VERSION = 1


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
        if obj.dtype == object:
            raise TypeError(f"minidl.save: object arrays can't be saved (at {_describe_path(path)})")
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
    try:
        with reading(name), np.load(stream, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise CheckpointError(f"{name} is not an .npz archive")
            arrays = OrderedDict((member, archive[member]) for member in archive.files)
            for member, array in arrays.items():
                if not isinstance(array, np.ndarray):  # numpy hands back a non-.npy member as raw bytes
                    raise CheckpointError(f"{name} is a zip archive but not an .npz: {member!r} is not a .npy array")
    except CheckpointError as error:
        if "allow_pickle" in str(error):
            raise CheckpointError(f"{name} contains pickled Python objects, which minidl refuses to load "
                                  "(loading them could run arbitrary code)") from error
        raise

    if STRUCTURE_KEY not in arrays:  # a plain .npz, e.g. from np.savez: name -> tensor
        return OrderedDict((key, _to_tensor(array, device)) for key, array in arrays.items())
    try:
        record = json.loads(arrays.pop(STRUCTURE_KEY).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{name}: its structure record is corrupt ({error})") from error
    if not isinstance(record, dict) or record.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{name}: unknown structure record, not written by minidl.save")
    if record.get("version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{name} was written by a newer minidl (format version {record['version']})")
    try:
        return _decode(record["root"], arrays, device)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{name}: its structure record does not match its arrays ({error!r})") from error


def _to_tensor(array, device):
    return Tensor._from_array(backend.to_device(array, device))


def _decode(node, arrays, device):
    kind = node["type"]
    if kind == "tensor":
        return _to_tensor(arrays[node["array"]], device)
    if kind == "ndarray":
        return arrays[node["array"]]
    if kind == "numpy_scalar":
        return arrays[node["array"]][()]
    if kind == "value":
        return node["value"]
    if kind == "dict":
        return OrderedDict((key, _decode(value, arrays, device)) for key, value in node["items"])
    if kind in ("list", "tuple"):
        items = [_decode(value, arrays, device) for value in node["items"]]
        return items if kind == "list" else tuple(items)
    raise ValueError(f"unknown entry type {kind!r}")
