"""``save`` and ``load``: checkpoints as ``.npz`` files that never run code when loaded.

What can be saved: tensors, NumPy arrays and scalars, ``int``/``float``/``bool``/``str``/``None``,
and dicts (str/int/float/bool/None keys), lists and tuples nesting them -- a model's
``state_dict()``, an optimizer's, or a whole training checkpoint::

    minidl.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 3}, "ckpt.npz")
    checkpoint = minidl.load("ckpt.npz")              # tensors come back on the CPU
    model.load_state_dict(checkpoint["model"])

The file format is a plain NumPy ``.npz`` (a zip of ``.npy`` files):

- each array is one member, named by its path in the object (``model/features.0.weight``;
  a top-level state_dict's arrays keep their own keys), so ``numpy.load`` can inspect it;
- the nesting (dicts, lists, numbers, which arrays are tensors) is one JSON record,
  stored as a uint8 array named ``__minidl_structure__``.

Loading uses ``numpy.load(..., allow_pickle=False)``: a file holding pickled objects
is refused rather than unpickled, so opening a checkpoint from the internet cannot
execute code. A ``.npz`` without the structure record (e.g. written by ``np.savez``)
loads as an OrderedDict ``name -> Tensor``.

Saving is atomic: the archive is written to a temporary file in the same directory and
renamed over the target (``os.replace``) only once complete, so a crash or a full disk
during saving leaves the previous checkpoint intact.

Using PyTorch weights (run once, in a Python that has PyTorch)::

    import numpy as np, torch
    state_dict = torch.load("resnet18.pth", map_location="cpu")      # or torch_model.state_dict()
    np.savez("resnet18.npz", **{k: v.numpy() for k, v in state_dict.items()})

then ``model.load_state_dict(minidl.load("resnet18.npz"))`` in minidl: key names and weight
layouts are PyTorch's, so a model of the same architecture gets the same weights.
(``minidl.save({k: v.numpy() ...}, path)`` works as well.)
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
import zlib
from collections import OrderedDict

import numpy as np

from . import backend
from ._tensor import Tensor

__all__ = ["save", "load", "CheckpointError"]

STRUCTURE_KEY = "__minidl_structure__"
FORMAT_NAME = "minidl-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file that ``load`` cannot read as a checkpoint: truncated, corrupt, foreign, or holding pickled data."""


# --------------------------------------------------------------------------- saving
def save(obj, f):
    """Write ``obj`` (state_dicts, nested dicts/lists of tensors, numbers, strings, None) to ``f``.

    ``f`` is a path (written atomically: temporary file, then ``os.replace``) or a
    binary file object. The file is an ``.npz`` whatever its name.
    """
    arrays = OrderedDict()
    root = _encode(obj, (), arrays)
    record = json.dumps({"format": FORMAT_NAME, "version": FORMAT_VERSION, "root": root})
    arrays[STRUCTURE_KEY] = np.frombuffer(record.encode("utf-8"), dtype=np.uint8)

    if hasattr(f, "write"):
        _write_npz(f, arrays)
        return
    path = os.fspath(f)
    directory, name = os.path.split(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            _write_npz(out, arrays)
            out.flush()
            os.fsync(out.fileno())  # the bytes are on disk before the rename makes them "the" checkpoint
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes owner-only files; give the usual permissions
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_npz(fileobj, arrays):
    """An uncompressed .npz, as ``np.savez`` writes it (done by hand so that any name is allowed)."""
    with zipfile.ZipFile(fileobj, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
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


# --------------------------------------------------------------------------- loading
def load(f, map_location=None):
    """Read a checkpoint written by ``save`` (or any ``.npz``); tensors land on ``map_location`` (default CPU).

    Raises ``CheckpointError`` (a ValueError) naming the file when it is truncated, corrupt,
    not an ``.npz``, or contains pickled objects; ``FileNotFoundError`` when it does not exist.
    """
    device = backend.Device("cpu" if map_location is None else map_location)
    name = repr(os.fspath(f)) if not hasattr(f, "read") else repr(getattr(f, "name", "<file object>"))
    _check_magic(f, name)
    try:
        with np.load(f, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise CheckpointError(f"{name} is not an .npz archive")
            arrays = OrderedDict()
            for member in archive.files:
                arrays[member] = archive[member]
    except CheckpointError:
        raise
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise CheckpointError(f"{name} contains pickled Python objects, which minidl refuses to load "
                                  "(loading them could run arbitrary code)") from error
        raise CheckpointError(f"{name} is not a valid minidl checkpoint: {error}") from error
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, KeyError) as error:
        raise CheckpointError(f"{name} is truncated or corrupt and can't be loaded: {error}") from error

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


def _check_magic(f, name):
    """Recognise common foreign files from their first bytes, to say what they are."""
    if hasattr(f, "read"):
        position = f.tell()
        head = f.read(8)
        f.seek(position)
    else:
        with open(f, "rb") as stream:
            head = stream.read(8)
    if not head:
        raise CheckpointError(f"{name} is empty")
    if head.startswith(b"\x80"):
        raise CheckpointError(f"{name} is a Python pickle (an old-style torch.save file?); minidl never unpickles. "
                              "Convert it to .npz (see minidl.serialization's docstring)")
    if head.startswith(b"\x93NUMPY"):
        raise CheckpointError(f"{name} is a single .npy array, not an .npz checkpoint")
    if not head.startswith(b"PK"):
        raise CheckpointError(f"{name} is not an .npz checkpoint (it does not start like a zip archive)")
    if _is_torch_zip(f):
        raise CheckpointError(f"{name} is a PyTorch checkpoint (torch.save); minidl.load reads .npz files. "
                              "Convert it with {k: v.numpy() for k, v in state_dict.items()} and np.savez "
                              "(see minidl.serialization's docstring)")


def _is_torch_zip(f):
    """torch.save's zip files hold ``<name>/data.pkl``."""
    try:
        if hasattr(f, "read"):
            position = f.tell()
            try:
                names = zipfile.ZipFile(f).namelist()
            finally:
                f.seek(position)
        else:
            with zipfile.ZipFile(f) as archive:
                names = archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError):
        return False  # np.load will report it
    return any(member.endswith("data.pkl") for member in names)


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
