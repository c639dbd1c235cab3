"""PyTorch's checkpoint format since 1.6: ``torch.save`` writes a zip archive.

Layout (``archive/`` is any top-level folder name; torchvision's files use it)::

    archive/data.pkl        the pickled object (a state_dict), tensors as persistent ids
    archive/data/0          raw bytes of storage "0": numel * itemsize, in ``byteorder``
    archive/data/1          ...
    archive/byteorder       "little" or "big" (absent in older files: little)
    archive/version         format version; .format_version, .storage_alignment, ...

Members are stored uncompressed, and ``zip_archive.open_zip`` refuses a compressed one, an
encrypted one and members that overlap: together they hold no more bytes than the file. The
pickle is scanned and read by ``torch_pickle`` (no code runs, its memory bounded by its size);
each storage's byte count is checked against its declared size before it is read, and each
tensor against its storage when it is built.
"""
from __future__ import annotations

import zipfile

from .dtype_codes import decode
from .errors import CheckpointError
from .torch_pickle import expected_bytes, materialize, unpickle_bytes
from .zip_archive import open_zip, read_member, stream_size_of


def is_torch_zip(names):
    """True for the member names of a ``torch.save`` zip (a ``data.pkl`` at the top or one folder down)."""
    return any(_pickle_prefix(name) is not None for name in names)


def _pickle_prefix(member):
    """``"archive/"`` for ``"archive/data.pkl"``, ``""`` for ``"data.pkl"``, None for anything else."""
    folder, _, file = member.rpartition("/")
    if file != "data.pkl" or "/" in folder:
        return None
    return folder + "/" if folder else ""


def read(stream, name, device):
    """The object saved in the PyTorch zip ``stream``, with minidl Tensors on ``device``."""
    with open_zip(stream, name, methods=(zipfile.ZIP_STORED,)) as archive:
        prefixes = {p for p in map(_pickle_prefix, archive.namelist()) if p is not None}
        if len(prefixes) != 1:
            raise CheckpointError(f"{name}: expected exactly one data.pkl in this PyTorch zip, found {len(prefixes)}")
        (prefix,) = prefixes
        byteorder = _byteorder(archive, prefix, name)
        refs = {}
        obj = unpickle_bytes(read_member(archive, archive.getinfo(prefix + "data.pkl")).tobytes(), refs)
        storages = {key: _read_storage(archive, prefix, ref, byteorder, name) for key, ref in refs.items()}
        return materialize(obj, storages, name, device, stream_size_of(stream))


def _byteorder(archive, prefix, name):
    try:
        info = archive.getinfo(prefix + "byteorder")
    except KeyError:
        return "little"  # files from before PyTorch 1.13 have no byteorder record: little-endian
    order = read_member(archive, info).tobytes().decode("ascii").strip()
    if order not in ("little", "big"):
        raise CheckpointError(f"{name}: unknown byte order {order!r:.40}")
    return order


def _read_storage(archive, prefix, ref, byteorder, name):
    member = f"{prefix}data/{ref.key}"
    try:
        info = archive.getinfo(member)
    except KeyError:
        raise CheckpointError(f"{name}: storage {ref.key!r} ({member}) is missing from the archive") from None
    if info.file_size != expected_bytes(ref):  # checked before reading: a lying header can't make us read gigabytes
        raise CheckpointError(
            f"{name}: storage {ref.key!r} holds {info.file_size} bytes, but its {ref.numel} {ref.dtype_name} "
            f"elements need {expected_bytes(ref)}"
        )
    return decode(read_member(archive, info), ref.dtype_name, byteorder)
