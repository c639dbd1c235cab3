"""Opening a zip (a PyTorch ``.pth`` or an ``.npz``) so that no member costs more than the file justifies.

Python's zipfile trusts the central directory. Two zip bombs follow from that:

- *overlapping members*: a member's bytes may contain other members (its "data" spans their
  headers too). Stored members that each contain the next turn 1.46 MB into 2.2 GB, growing
  quadratically; Python 3.11's zipfile does not check;
- *compression*: a deflated member of 2.4 MB unpacks to 2.4 GB, and a zipfile reader inflates
  up to 2 GB per call whatever size the member declares.

``open_zip`` checks every member before any is read: a compression method the format uses
(zipfile would raise NotImplementedError for others), no encryption (RuntimeError) nor another
feature zipfile can't read, no name twice; its bytes -- local header, then data -- lie before the
central directory and overlap no other member's; a stored member's declared size is its size on
disk; and all members together unpack to at most ``MAX_EXPANSION`` times the file's size (at
least ``MIN_BUDGET`` bytes). ``read_member`` then reads in bounded chunks into a buffer of the
declared size, and zipfile stops there and checks the CRC: no member yields more than it declares.
"""
from __future__ import annotations

import contextlib
import struct
import zipfile

from .errors import CheckpointError, reading
from .files import fill, stream_size
from .limits import MAX_EXPANSION, MIN_BUDGET

_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, (version .. sizes), file name length, extra field length
_UNSUPPORTED_FLAGS = {0x1: "encrypted", 0x20: "compressed patched data", 0x40: "strongly encrypted"}
_METHOD_NAMES = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated", zipfile.ZIP_BZIP2: "bzip2",
                 zipfile.ZIP_LZMA: "lzma"}


@contextlib.contextmanager
def open_zip(stream, name, methods):
    """The ``zipfile.ZipFile`` of ``stream``, every member checked (see the module docstring).

    ``methods``: the compression methods the format uses (e.g. only ZIP_STORED for PyTorch).
    Failures are CheckpointErrors naming ``name``.
    """
    with reading(name), zipfile.ZipFile(stream) as archive:
        members = archive.infolist()
        for info in members:
            _check_member(info, methods, name)
        _check_layout(archive, stream, members, name)
        _check_budget(members, stream_size_of(stream), name)
        yield archive


def read_member(archive, info):
    """The bytes of member ``info`` (checked by ``open_zip``): a uint8 array of its declared size (``files.fill``)."""
    with archive.open(info) as member:
        return fill(member.readinto, info.file_size, f"member {info.filename!r}")


def stream_size_of(stream):
    """The whole stream's size in bytes (its position kept)."""
    position = stream.tell()
    stream.seek(0)
    try:
        return stream_size(stream)
    finally:
        stream.seek(position)


def _check_member(info, methods, name):
    member = repr(info.filename)
    for flag, what in _UNSUPPORTED_FLAGS.items():
        if info.flag_bits & flag:
            raise CheckpointError(f"{name}: member {member} is {what}, which minidl does not read")
    if info.compress_type not in methods:
        method = _METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
        allowed = " or ".join(_METHOD_NAMES[m] for m in methods)
        raise CheckpointError(f"{name}: member {member} is compressed ({method}); this format's members are {allowed}")
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise CheckpointError(f"{name}: member {member} is stored (not compressed) but declares {info.file_size} "
                              f"bytes for its {info.compress_size} on disk")


def _check_layout(archive, stream, members, name):
    """Every member's bytes lie before the central directory, none overlapping another's; no name twice."""
    spans = sorted((info.header_offset, _data_end(stream, info, name), info.filename) for info in members)
    previous_end, previous = 0, None
    for begin, end, member in spans:
        if begin < previous_end:
            raise CheckpointError(f"{name}: member {member!r} overlaps member {previous!r}; a zip whose members "
                                  "share bytes is refused (it can unpack to far more than the file holds)")
        previous_end, previous = end, member
    if previous_end > archive.start_dir:
        raise CheckpointError(f"{name}: member {previous!r} runs into the zip's central directory")
    names = [info.filename for info in members]
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise CheckpointError(f"{name}: member {twice!r} appears twice in the zip")


def _data_end(stream, info, name):
    """Where member ``info``'s data ends: its local header, file name and extra field, then the data."""
    position = stream.tell()
    try:
        stream.seek(info.header_offset)
        header = stream.read(_LOCAL_HEADER.size)
    finally:
        stream.seek(position)
    if len(header) != _LOCAL_HEADER.size:
        raise CheckpointError(f"{name} is truncated: member {info.filename!r} starts past the end of the file")
    signature, name_length, extra_length = _LOCAL_HEADER.unpack(header)
    if signature != b"PK\x03\x04":
        raise CheckpointError(f"{name} is corrupt: member {info.filename!r} has no local header where the "
                              "central directory puts it")
    return info.header_offset + _LOCAL_HEADER.size + name_length + extra_length + info.compress_size


def _check_budget(members, file_size, name):
    total = sum(info.file_size for info in members)
    budget = max(MAX_EXPANSION * file_size, MIN_BUDGET)
    if total > budget:
        raise CheckpointError(f"{name}: its members unpack to {total} bytes, more than {MAX_EXPANSION} times the "
                              f"file's {file_size}: refused as a zip bomb (save uncompressed to load it)")
