"""Paths and file objects: a name for messages, peeking at the first bytes, atomic writing."""
from __future__ import annotations

import contextlib
import os
import tempfile


def describe(f):
    """How error messages name ``f``: the quoted path, or a file object's name."""
    if hasattr(f, "read") or hasattr(f, "write"):
        return repr(getattr(f, "name", "<file object>"))
    return repr(os.fspath(f))


@contextlib.contextmanager
def open_for_reading(f):
    """A binary stream for ``f`` (a path, opened and closed here, or a file object, left open)."""
    if hasattr(f, "read"):
        yield f
    else:
        with open(f, "rb") as stream:
            yield stream


def peek(stream, size):
    """The next ``size`` bytes (fewer at the end), leaving the stream's position where it was."""
    position = stream.tell()
    try:
        return stream.read(size)
    finally:
        stream.seek(position)


def stream_size(stream):
    """Bytes from the stream's current position to its end."""
    position = stream.tell()
    try:
        return stream.seek(0, os.SEEK_END) - position
    finally:
        stream.seek(position)


@contextlib.contextmanager
def open_for_writing(f):
    """A binary stream to write ``f`` into: a file object as it is, or a path written atomically.

    For a path the bytes go to a temporary file in the same directory, which is fsync'ed and
    renamed over the target (``os.replace``) only once complete: a crash or a full disk while
    saving leaves the previous checkpoint intact, and nobody ever reads half a file.
    """
    if hasattr(f, "write"):
        yield f
        return
    path = os.fspath(f)
    directory, name = os.path.split(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
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
