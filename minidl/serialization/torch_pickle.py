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

Bounded by construction
-----------------------
- Before it runs, the pickle's opcodes are scanned (``pickle_scan``): only what a checkpoint
  needs, memo indices in turn, every length inside the data. The unpickler's memory is then
  bounded by the pickle's size.
- ``BUILD`` (set an object's state) reaches only objects made here: the admitted globals are
  wrappers (``_Admitted``) and the placeholders are minidl's own types, all of which refuse it,
  so a file can't set attributes of minidl's functions; an OrderedDict accepts only a dict
  (PyTorch's ``_metadata``) and drops it; dicts and lists have no state to set.
- ``materialize`` builds each unpickled object once (a DAG of shared lists costs its size, not
  its number of paths), nests at most ``MAX_DEPTH`` levels, admits only plain data, tensors and
  containers (keys and set members: numbers, strings, bytes and tuples of them), and copies no
  view larger than its storage nor, all together, more bytes than the file holds.
"""
from __future__ import annotations

import io
import math
import numbers
import pickle
from collections import OrderedDict
from typing import NamedTuple

import numpy as np

from .. import backend
from .._tensor import Tensor
from .dtype_codes import TORCH_STORAGES, stored_itemsize
from .errors import CheckpointError, Refusal
from .limits import MAX_DEPTH
from .pickle_scan import read_scanned, scan


def _refuse_build(self, state):
    """``__setstate__`` of what a pickle must never modify: BUILD on it is refused."""
    raise Refusal(f"its pickle sets the state of {_kind(self)} (BUILD), which minidl refuses")


class StorageType(NamedTuple):
    """What ``torch.FloatStorage`` & co. unpickle to: just the class name (e.g. ``"FloatStorage"``)."""
    name: str
    __setstate__ = _refuse_build


class StorageRef(NamedTuple):
    """A persistent id, checked: storage ``key`` holds ``numel`` elements of ``dtype_name``."""
    key: str
    dtype_name: str
    numel: int
    __setstate__ = _refuse_build


class TensorRef(NamedTuple):
    """A tensor to build once the storages are read: a strided view of ``storage``."""
    storage: StorageRef
    offset: int
    size: tuple
    stride: tuple
    __setstate__ = _refuse_build


class _LoadedDict(OrderedDict):
    """What a pickled ``collections.OrderedDict`` unpickles to (``materialize`` makes it an OrderedDict).

    Its BUILD accepts only a dict -- PyTorch pickles a state_dict's ``_metadata`` that way --
    and drops it; slot state, which would set arbitrary attributes, is refused.
    """

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise Refusal(f"its pickle sets an OrderedDict's state to a {type(state).__name__}; only a dict "
                          "(PyTorch's _metadata) is accepted")


class _Admitted:
    """What ``find_class`` hands out for an allowed global: calling it calls ``function``, nothing else.

    A wrapper, not the function itself: BUILD on the function would set its attributes
    (``__name__``, ``__defaults__``...) for the rest of the process; the wrapper refuses it.
    """
    __slots__ = ("function", "qualified_name")
    __setstate__ = _refuse_build

    def __init__(self, function, qualified_name):
        self.function, self.qualified_name = function, qualified_name

    def __call__(self, *args):
        return self.function(*args)


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    """``torch._utils._rebuild_tensor(_v2)``: record the view (requires_grad and hooks are dropped)."""
    if not isinstance(storage, StorageRef):
        raise Refusal(f"a tensor's storage must be a persistent id, got {_kind(storage)}")
    return TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *_ignored):
    """``torch._utils._rebuild_parameter(_with_state)``: a Parameter loads as its data."""
    if not isinstance(data, TensorRef):
        raise Refusal(f"a parameter's data must be a tensor, got {_kind(data)}")
    return data


ALLOWED_GLOBALS = {
    (module, name): _Admitted(function, f"{module}.{name}") for (module, name), function in {
        ("collections", "OrderedDict"): _LoadedDict,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    }.items()
}


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler whose ``find_class`` admits only ``ALLOWED_GLOBALS`` and torch storage types.

    ``storages`` (a dict) collects every StorageRef met, by key, for the caller to read.
    Refusals are raised as ``Refusal`` (the caller's ``reading`` names the file).
    """

    def __init__(self, stream, storages):
        super().__init__(stream)
        self.storages = storages

    def find_class(self, module, name):
        if module == "torch" and name.endswith("Storage"):
            return StorageType(name)
        allowed = ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise Refusal(
                f"its pickle asks for the Python object {module}.{name}, which minidl refuses to load. "
                "Only tensor rebuild functions, torch storage types and collections.OrderedDict are allowed "
                "(loading a file never runs code from it)"
            )
        return allowed

    def persistent_load(self, pid):
        """``('storage', StorageType, key, location, numel[, view_metadata])`` -> a checked StorageRef."""
        if not (type(pid) is tuple and len(pid) in (5, 6) and pid[0] == "storage"):
            raise Refusal(f"unexpected persistent id in its pickle: {pid!r:.200}")
        storage_type, key, _location, numel = pid[1:5]
        if len(pid) == 6 and pid[5] is not None:
            raise Refusal("storage views (a pre-1.0 PyTorch feature) are not supported")
        if type(storage_type) is not StorageType:
            raise Refusal(f"a storage's type must be a torch.*Storage class, got {storage_type!r:.200}")
        if storage_type.name not in TORCH_STORAGES:
            raise Refusal(f"storage {key!r:.100} has dtype torch.{storage_type.name}, "
                          f"which minidl cannot map (it reads {', '.join(TORCH_STORAGES)})")
        if not isinstance(key, str) or not _is_count(numel):
            raise Refusal(f"malformed storage id {pid!r:.200}")
        ref = StorageRef(key, TORCH_STORAGES[storage_type.name], int(numel))
        if self.storages.setdefault(key, ref) != ref:
            raise Refusal(f"storage {key!r} is declared twice with different dtypes or sizes")
        return ref


def unpickle_bytes(data, storages=None):
    """Scan, then run the restricted unpickler on the pickle ``data``: the object, with TensorRefs for tensors.

    ``storages`` (a dict, filled in place) receives every storage the pickle refers to.
    Raises Refusal, CheckpointError, or the low-level errors of a malformed pickle (the caller's
    ``reading`` turns them into CheckpointErrors naming the file).
    """
    scan(data)
    return _unpickle_scanned(data, storages)


def unpickle_stream(stream, storages=None):
    """``unpickle_bytes`` of the pickle starting at ``stream``'s position; the stream is left after it."""
    return _unpickle_scanned(read_scanned(stream), storages)


def _unpickle_scanned(data, storages):
    return RestrictedUnpickler(io.BytesIO(data), {} if storages is None else storages).load()


def _is_count(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0


def _kind(obj):
    """How messages name what a pickle produced."""
    if isinstance(obj, _Admitted):
        return f"the function {obj.qualified_name}"
    if isinstance(obj, StorageType):
        return f"the class torch.{obj.name}"
    if isinstance(obj, StorageRef):
        return "a bare storage"
    if isinstance(obj, TensorRef):
        return "a tensor"
    return f"a {type(obj).__name__}"


# --------------------------------------------------------------------------- building the tensors
def materialize(obj, storages, name, device, file_size):
    """``obj`` with every TensorRef replaced by a minidl Tensor on ``device``; CheckpointError naming
    ``name`` for anything a checkpoint never holds.

    ``storages`` maps a storage key to its elements (a 1-D array); ``file_size`` (bytes) bounds
    what copies of views may take all together.
    """
    return _Builder(storages, name, device, file_size).build(obj, "", 0)


_LEAVES = (type(None), bool, int, float, str, bytes)


class _Builder:
    """One walk over an unpickled object, building each object once.

    Through the memo, a pickle can reference one object many times: a list holding the previous
    list twice, 30 levels deep, is 2**30 paths in 680 bytes. Results are memoised by the object's
    identity, so shared objects stay shared, cycles end, and the work is the number of objects
    and references -- bounded by the pickle's size.
    """

    def __init__(self, storages, name, device, file_size):
        self.storages, self.name, self.device = storages, name, device
        self.budget = file_size  # bytes that copies of views may still take
        self.built = {}  # id(unpickled object) -> result (the unpickled object outlives this walk)
        self.plain = set()  # ids of tuples/frozensets checked to hold plain data only
        self.arrays = {}  # (storage key, offset, size, stride) -> array on the device: equal views share it

    def build(self, obj, where, depth):
        if type(obj) in _LEAVES:
            return obj
        if id(obj) in self.built:
            return self.built[id(obj)]
        if depth > MAX_DEPTH:
            raise CheckpointError(f"{self.name}: nests deeper than {MAX_DEPTH} levels at {_at(where)}")
        kind = type(obj)
        if kind is TensorRef:
            result = Tensor._from_array(self._array(obj, where))
        elif kind in (dict, _LoadedDict):
            result = self._dict(obj, where, depth)
        elif kind is list:
            result = self.built[id(obj)] = []  # registered before its items: a list may contain itself
            result.extend(self.build(value, _join(where, index), depth + 1) for index, value in enumerate(obj))
        elif kind is tuple:
            items = tuple(self.build(value, _join(where, index), depth + 1) for index, value in enumerate(obj))
            result = self.built.get(id(obj), items)  # a cycle through a list may have built it meanwhile
        elif kind in (set, frozenset):
            result = kind(self._plain(member, where, depth + 1) for member in obj)
        else:
            what = "a bare storage" if kind is StorageRef else f"{_kind(obj)}, which a checkpoint never holds"
            raise CheckpointError(f"{self.name}: holds {what} at {_at(where)}; minidl reads tensors, numbers, "
                                  "strings and containers of them")
        self.built[id(obj)] = result
        return result

    def _dict(self, obj, where, depth):
        result = self.built[id(obj)] = OrderedDict() if type(obj) is _LoadedDict else {}
        for key, value in dict.items(obj):  # (dict's own method: an instance attribute can't stand in)
            result[self._plain(key, where, depth + 1)] = self.build(value, _join(where, key), depth + 1)
        return result

    def _plain(self, value, where, depth):
        """``value``, a dict key or set member, when it is plain data: numbers, strings, bytes, None, tuples of them."""
        if type(value) in _LEAVES or id(value) in self.plain:
            return value
        if type(value) not in (tuple, frozenset) or depth > MAX_DEPTH:
            raise CheckpointError(f"{self.name}: uses {_kind(value)} as a dict key or set member at {_at(where)}; "
                                  "keys and set members must be numbers, strings or tuples of them")
        for item in value:
            self._plain(item, where, depth + 1)
        self.plain.add(id(value))
        return value

    def _array(self, ref, where):
        """The elements of tensor ``ref``, on the device: its storage itself, or a copy of the part it views."""
        storage = self.storages[ref.storage.key]
        offset, size, stride = _checked_view(ref, storage, self.name, where)
        key = (ref.storage.key, offset, size, stride)
        if key not in self.arrays:
            view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size, writeable=False,
                                                   strides=[s * storage.itemsize for s in stride])
            if view.flags.c_contiguous and view.size == storage.size:  # the usual case: the whole storage, in order
                array = storage.reshape(size)  # shared: two such tensors share memory, as in PyTorch
            else:  # a copy of the part, not pinning the whole storage, paid for from the file's bytes
                self._pay(view.nbytes, where)
                array = np.array(view, order="C")
            self.arrays[key] = backend.to_device(array, self.device)
        return self.arrays[key]

    def _pay(self, nbytes, where):
        self.budget -= nbytes
        if self.budget < 0:
            raise CheckpointError(f"{self.name}: its tensors' views copy more bytes than the whole file holds "
                                  f"(at tensor {where!r}); refused")


def _checked_view(ref, storage, name, where):
    """``(offset, size, stride)`` of ``ref`` as ints, once every element it reads lies inside ``storage``
    and it is no larger than the storage: a stride-0 or overlapping view would copy more bytes than
    the file holds."""
    size, stride, offset = ref.size, ref.stride, ref.offset
    if not (type(size) is tuple and type(stride) is tuple and len(size) == len(stride)
            and all(map(_is_count, size + stride)) and _is_count(offset)):
        raise CheckpointError(f"{name}: tensor {where!r} has a malformed shape {size!r:.100}, stride {stride!r:.100} "
                              f"or offset {offset!r:.100}")
    size, stride, offset = tuple(map(int, size)), tuple(map(int, stride)), int(offset)
    numel = math.prod(size)
    if numel == 0:
        return offset, size, stride
    if numel > storage.size:
        raise CheckpointError(f"{name}: tensor {where!r} of shape {size} (stride {stride}) has {numel} elements, "
                              f"more than the {storage.size} of storage {ref.storage.key!r} it views; a view larger "
                              "than its storage (stride 0, overlapping strides) is refused")
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))  # the farthest element the view reads
    if last >= storage.size:
        raise CheckpointError(
            f"{name}: tensor {where!r} of shape {size} (offset {offset}, stride {stride}) reaches element {last} "
            f"of storage {ref.storage.key!r}, which holds only {storage.size} elements"
        )
    return offset, size, stride


def _join(where, key):
    return f"{where}.{key}" if where else str(key)


def _at(where):
    return where or "the top level"


def expected_bytes(ref):
    return ref.numel * stored_itemsize(ref.dtype_name)
