"""Reading the pickle inside a PyTorch checkpoint without ever running code from it.

Why a pickle is dangerous
-------------------------
A pickle is a small program for a stack machine. Most opcodes push plain data (ints,
strings, tuples, dicts), but two kinds *call* things: ``GLOBAL``/``STACK_GLOBAL`` import
any ``module.name`` (``os.system``, ``builtins.eval``...), and ``REDUCE``/``NEWOBJ``/``BUILD``
call whatever is on the stack with arguments from the file. ``torch.load`` of an untrusted
file can therefore run any command. Every callable a pickle can reach comes in through
``find_class`` -- that is where Python's ``Unpickler`` resolves ``GLOBAL``, ``STACK_GLOBAL``,
``INST`` and the extension-registry opcodes -- so overriding it to hand out only a few
harmless, known callables closes the door (Python's documented "restricting globals").

What a state_dict needs
-----------------------
``torch.save(model.state_dict())`` pickles, for every tensor::

    torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)

where ``storage`` is a *persistent id* -- ``('storage', torch.FloatStorage, key, 'cpu', numel)``
-- that the loader resolves to raw bytes stored outside the pickle (``data/<key>`` in the zip).
The tensor is the strided view ``storage[offset + sum(i_k * stride_k)]`` of shape ``size``;
several tensors may share one storage. Apart from that only ``collections.OrderedDict``
(the dict itself, and the empty ``hooks``) appears.

So the allowed globals are: ``collections.OrderedDict``, the tensor/parameter rebuild
functions (mapped to minidl's own functions below, which only record their arguments), and
the ``torch.*Storage`` classes (mapped to a marker naming the dtype; never called). Anything
else raises CheckpointError naming the global. Unpickling yields placeholders
(``TensorRef``); ``materialize`` then reads the bytes and builds the tensors, checking
every offset, size and stride against the storage first (``as_strided`` with bad strides
would read memory outside the array).
"""
from __future__ import annotations

import io
import numbers
import pickle
from collections import OrderedDict
from typing import NamedTuple

import numpy as np

from .. import backend
from .._tensor import Tensor
from .dtype_codes import TORCH_STORAGES, stored_itemsize
from .errors import CheckpointError


class StorageType(NamedTuple):
    """What ``torch.FloatStorage`` & co. unpickle to: just the class name (e.g. ``"FloatStorage"``)."""
    name: str


class StorageRef(NamedTuple):
    """A persistent id, checked: storage ``key`` holds ``numel`` elements of ``dtype_name``."""
    key: str
    dtype_name: str
    numel: int


class TensorRef(NamedTuple):
    """A tensor to build once the storages are read: a strided view of ``storage``."""
    storage: StorageRef
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    """``torch._utils._rebuild_tensor(_v2)``: record the view (requires_grad and hooks are dropped)."""
    if not isinstance(storage, StorageRef):
        raise pickle.UnpicklingError(f"a tensor's storage must be a persistent id, got {type(storage).__name__}")
    return TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *_ignored):
    """``torch._utils._rebuild_parameter(_with_state)``: a Parameter loads as its data."""
    if not isinstance(data, TensorRef):
        raise pickle.UnpicklingError(f"a parameter's data must be a tensor, got {type(data).__name__}")
    return data


ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler whose ``find_class`` admits only ``ALLOWED_GLOBALS`` and torch storage types.

    ``storages`` (a dict) collects every StorageRef met, by key, for the caller to read.
    """

    def __init__(self, stream, name, storages):
        super().__init__(stream)
        self.name, self.storages = name, storages

    def find_class(self, module, name):
        if module == "torch" and name.endswith("Storage"):
            return StorageType(name)
        allowed = ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise CheckpointError(
                f"{self.name}: its pickle asks for the Python object {module}.{name}, which minidl refuses to load. "
                "Only tensor rebuild functions, torch storage types and collections.OrderedDict are allowed "
                "(loading a file never runs code from it)"
            )
        return allowed

    def persistent_load(self, pid):
        """``('storage', StorageType, key, location, numel[, view_metadata])`` -> a checked StorageRef."""
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise CheckpointError(f"{self.name}: unexpected persistent id in its pickle: {pid!r:.200}")
        storage_type, key, _location, numel = pid[1:5]
        if len(pid) == 6 and pid[5] is not None:
            raise CheckpointError(f"{self.name}: storage views (a pre-1.0 PyTorch feature) are not supported")
        if not isinstance(storage_type, StorageType):
            raise CheckpointError(f"{self.name}: a storage's type must be a torch.*Storage class, got {storage_type!r:.200}")
        if storage_type.name not in TORCH_STORAGES:
            raise CheckpointError(f"{self.name}: storage {key!r} has dtype torch.{storage_type.name}, "
                                  f"which minidl cannot map (it reads {', '.join(TORCH_STORAGES)})")
        if not isinstance(key, str) or not _is_count(numel):
            raise CheckpointError(f"{self.name}: malformed storage id {pid!r:.200}")
        ref = StorageRef(key, TORCH_STORAGES[storage_type.name], int(numel))
        if self.storages.setdefault(key, ref) != ref:
            raise CheckpointError(f"{self.name}: storage {key!r} is declared twice with different dtypes or sizes")
        return ref


def unpickle(stream, name, storages=None):
    """Run the restricted unpickler on ``stream``: the object, with TensorRefs in place of tensors.

    ``storages`` (a dict, filled in place) receives every storage the pickle refers to.
    """
    unpickler = RestrictedUnpickler(stream, name, {} if storages is None else storages)
    return unpickler.load()


def unpickle_bytes(data, name, storages=None):
    return unpickle(io.BytesIO(data), name, storages)


def _is_count(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0


# --------------------------------------------------------------------------- building the tensors
def strided_copy(storage, ref, name, where):
    """The tensor ``ref`` describes, as a contiguous array taken from ``storage`` (a 1-D array).

    Checks first that every element the view touches lies inside the storage. A view of the
    whole storage in order is the storage itself (two such tensors share memory, as in PyTorch);
    any other view is copied out.
    """
    size, stride, offset = ref.size, ref.stride, ref.offset
    if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)
            and all(map(_is_count, size + stride)) and _is_count(offset)):
        raise CheckpointError(f"{name}: tensor {where} has a malformed shape {size!r:.100}, stride {stride!r:.100} "
                              f"or offset {offset!r:.100}")
    size, stride, offset = tuple(map(int, size)), tuple(map(int, stride)), int(offset)
    if 0 in size:
        return np.empty(size, dtype=storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))  # the farthest element the view reads
    if last >= storage.size:
        raise CheckpointError(
            f"{name}: tensor {where} of shape {size} (offset {offset}, stride {stride}) reaches element {last} "
            f"of storage {ref.storage.key!r}, which holds only {storage.size} elements"
        )
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                           strides=[s * storage.itemsize for s in stride], writeable=False)
    if view.flags.c_contiguous and view.size == storage.size:  # the usual case: the whole storage, in order
        return storage.reshape(size)
    return np.array(view, order="C")  # a copy of the part: the tensor does not pin the whole storage


def materialize(obj, storages, name, device, where=""):
    """Replace every TensorRef in ``obj`` (nested dicts, lists, tuples) by a minidl Tensor on ``device``.

    ``storages`` maps a storage key to its elements (a 1-D array).
    """
    if isinstance(obj, TensorRef):
        array = strided_copy(storages[obj.storage.key], obj, name, repr(where) if where else "")
        return Tensor._from_array(backend.to_device(array, device))
    if isinstance(obj, (StorageRef, StorageType)):  # (tuples too: checked before the containers)
        raise CheckpointError(f"{name}: holds a bare storage at {where or 'the top level'}; minidl reads tensors")
    if isinstance(obj, dict):  # OrderedDict stays OrderedDict (its pickled _metadata attribute is dropped)
        return type(obj)((key, materialize(value, storages, name, device, _join(where, key))) for key, value in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(materialize(value, storages, name, device, _join(where, index)) for index, value in enumerate(obj))
    return obj


def _join(where, key):
    return f"{where}.{key}" if where else str(key)


def expected_bytes(ref):
    return ref.numel * stored_itemsize(ref.dtype_name)
