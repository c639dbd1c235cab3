"""Write PyTorch-format files without torch: the tests' own reference of what ``torch.save`` writes.

A state_dict pickle is assembled from opcodes (``pickle.dumps`` of plain values gives the
bytes of ints, strings and tuples), so tests can also build files torch would never write:
wrong dtypes, views past the end of a storage, calls to ``os.system``.
"""
import io
import pickle
import zipfile

import numpy as np

TORCH_MAGIC = 0x1950A86A20F9469CFC6C


def data(value):
    """Opcodes that push a plain value (int, str, tuple, bool, None) -- pickle.dumps without PROTO and STOP."""
    return pickle.dumps(value, protocol=2)[2:-1]


def global_(module, name):
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def call(function, *arguments):
    """Opcodes for ``function(*arguments)``; each part is already opcodes."""
    return function + pickle.MARK + b"".join(arguments) + pickle.TUPLE + pickle.REDUCE


def storage_id(key, numel, storage_type="FloatStorage", extra=()):
    """The persistent id ('storage', torch.<storage_type>, key, 'cpu', numel, *extra)."""
    parts = data("storage") + global_("torch", storage_type) + data(key) + data("cpu") + data(numel)
    return pickle.MARK + parts + b"".join(map(data, extra)) + pickle.TUPLE + pickle.BINPERSID


def tensor(key, numel, offset, size, stride, storage_type="FloatStorage", rebuild="_rebuild_tensor_v2"):
    """Opcodes for ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())``."""
    return call(global_("torch._utils", rebuild), storage_id(key, numel, storage_type), data(offset), data(tuple(size)),
                data(tuple(stride)), data(False), call(global_("collections", "OrderedDict")))


def state_dict_pickle(entries):
    """A complete pickle of OrderedDict(name -> value), ``entries`` mapping name -> value opcodes."""
    body = b"".join(data(name) + opcodes for name, opcodes in entries.items())
    return (pickle.PROTO + b"\x02" + call(global_("collections", "OrderedDict")) + pickle.MARK + body
            + pickle.SETITEMS + pickle.STOP)


def contiguous(key, array, storage_type):
    """A tensor covering its whole storage ``key`` (row-major strides)."""
    strides = [s // array.itemsize for s in np.ascontiguousarray(array).strides] if array.ndim else []
    return tensor(key, array.size, 0, array.shape, strides, storage_type)


def torch_zip(pickle_bytes, storages, folder="archive", byteorder=b"little", compression=zipfile.ZIP_STORED):
    """The bytes of a torch.save zip: ``storages`` maps key -> raw bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        archive.writestr(f"{folder}/data.pkl", pickle_bytes)
        if byteorder is not None:
            archive.writestr(f"{folder}/byteorder", byteorder)
        for key, raw in storages.items():
            archive.writestr(f"{folder}/data/{key}", raw)
        archive.writestr(f"{folder}/version", b"3\n")
    return buffer.getvalue()


def torch_legacy(pickle_bytes, storages, numels):
    """The bytes of a pre-1.6 torch.save file: five pickles, then each storage (int64 count, raw bytes)."""
    head = [TORCH_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True, "type_sizes": {}}]
    out = b"".join(pickle.dumps(value, protocol=2) for value in head) + pickle_bytes
    out += pickle.dumps(list(storages), protocol=2)
    for key, raw in storages.items():
        out += numels[key].to_bytes(8, "little") + raw
    return out
