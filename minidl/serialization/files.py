"""Paths and file objects: a name for messages, bounded reading, atomic writing.

Saving to a path
----------------
``open_for_writing`` writes the bytes to a temporary file beside the target, named
``.<target name>.<8 random characters>.tmp``, fsyncs it and renames it over the target
(``os.replace``) only once complete: a crash or a full disk while saving leaves the previous
checkpoint intact, and nobody ever reads half a file. Besides:

- *Symlinks*: a path that is a symlink is resolved first; the link's target is replaced, the
  link stays a link.
- *Permissions*: re-saving keeps the existing file's mode (a 0600 checkpoint stays 0600). A new
  file is created with mode 0666 and the kernel applies the process umask, as ``open()`` would;
  the umask is never changed, not even for a moment (other threads may be creating files).
- *Leftovers*: a process killed while saving (SIGKILL, power loss) leaves its temporary file.
  Each save of a target first removes that target's *stale* temporaries: files in the same
  directory named exactly as above, untouched for ``STALE_AFTER_S`` seconds, and not locked --
  a save holds an exclusive ``flock`` on its temporary while it writes, and the kernel drops the
  lock when the process dies (where there is no ``flock``, as on Windows, a file still open
  can't be removed). Files of other names, other targets, or in use are never touched.
- *Errors* (``OSError``) name the target, never the temporary file.
"""
from __future__ import annotations

import contextlib
import os
import re
import secrets
import time

import numpy as np

try:
    import fcntl
except ImportError:  # Windows: an open file can't be removed, which protects a save in progress
    fcntl = None

from .errors import Refusal

STALE_AFTER_S = 60  # a temporary untouched this long (and unlocked) is a dead save's leftover
_READ_CHUNK = 1 << 20


def describe(f):
    """How error messages name ``f``: the quoted path, or a file object's name."""
    if hasattr(f, "read") or hasattr(f, "write"):
        return repr(getattr(f, "name", "<file object>"))
    return repr(os.fspath(f))


# --------------------------------------------------------------------------- reading
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


def read_exactly(stream, size, what):
    """The next ``size`` bytes of ``stream``, as a writable uint8 array (see ``fill``).

    Checked against what the stream has left before anything is allocated, so a corrupt size
    can't make us allocate it; raises Refusal naming ``what`` when the file is too short.
    """
    left = stream_size(stream)
    if left < size:
        raise Refusal(f"truncated: {what} needs {size} bytes, the file has {left} left")
    return fill(getattr(stream, "readinto", None) or _readinto_with(stream.read), size, what)


def fill(readinto, size, what):
    """A writable uint8 NumPy array of exactly ``size`` bytes, from ``readinto(view)`` calls of at most 1 MiB each.

    Reading in bounded chunks keeps a decompressing reader from inflating more than it is
    asked for. The caller has checked ``size`` against the file (``read_exactly``,
    ``zip_archive.open_zip``), so the buffer is allocated at once; the bytes land in it
    directly, and arrays decoded from it share its memory (``dtype_codes.native``).
    """
    buffer = np.empty(size, dtype=np.uint8)  # (not zeroed: every byte is read into)
    view, filled = memoryview(buffer), 0
    while filled < size:
        count = readinto(view[filled:filled + min(size - filled, _READ_CHUNK)])
        if not count:
            raise Refusal(f"truncated: {what} holds {filled} bytes, not the {size} declared")
        filled += count
    return buffer


def _readinto_with(read):
    """``readinto`` for a file object that has only ``read``."""
    def readinto(view):
        chunk = read(len(view))
        view[:len(chunk)] = chunk
        return len(chunk)
    return readinto


# --------------------------------------------------------------------------- writing
@contextlib.contextmanager
def open_for_writing(f):
    """A binary stream to write ``f`` into: a file object as it is, or a path written atomically.

    For a path: see the module docstring (temporary file, fsync, rename; symlinks, modes,
    leftovers of killed saves, error messages).
    """
    if hasattr(f, "write"):
        yield f
        return
    target = os.path.realpath(os.fspath(f))  # through a symlink: write its target, keep the link
    try:
        remove_stale_temporaries(target)
        fd, temporary = _create_temporary(target)
    except OSError as error:
        raise _naming(error, target) from error
    try:
        with os.fdopen(fd, "wb") as out:
            _lock(fd)  # marks the temporary as in use until it is closed (see remove_stale_temporaries)
            yield out
            out.flush()
            os.fsync(out.fileno())  # the bytes are on disk before the rename makes them "the" checkpoint
        os.replace(temporary, target)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        if isinstance(error, OSError):
            raise _naming(error, target) from error
        raise


def temporary_pattern(target):
    """The names ``open_for_writing`` gives the temporary files of ``target`` (a compiled regex)."""
    return re.compile(rf"\.{re.escape(os.path.basename(target))}\.[a-z0-9_]{{8}}\.tmp")


def remove_stale_temporaries(target):
    """Remove leftovers of killed saves of ``target``: see the module docstring for which files count."""
    directory = os.path.dirname(target)
    pattern, now = temporary_pattern(target), time.time()
    with os.scandir(directory) as entries:
        candidates = [entry.path for entry in entries if pattern.fullmatch(entry.name)
                      and entry.is_file(follow_symlinks=False)
                      and now - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER_S]
    for path in candidates:
        with contextlib.suppress(OSError), _unless_in_use(path) as unused:
            if unused:
                os.remove(path)


def _create_temporary(target):
    """``(fd, path)`` of a new, empty temporary file beside ``target``, with the mode the target will have.

    An existing target's mode is kept; a new one gets 0666 minus the umask, applied by the kernel.
    """
    directory, name = os.path.split(target)
    try:
        mode = os.stat(target).st_mode & 0o777
    except FileNotFoundError:
        mode = None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        temporary = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(temporary, flags, 0o666 if mode is None else mode)
        except FileExistsError:
            continue
        if mode is not None:
            os.chmod(temporary, mode)  # exactly the old mode, even where the umask would have narrowed it
        return fd, temporary
    raise FileExistsError(f"no free temporary file name beside {target}")


def _lock(fd):
    """Hold an exclusive lock on ``fd`` until it is closed (best effort: some file systems have none)."""
    if fcntl is not None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)


@contextlib.contextmanager
def _unless_in_use(path):
    """Yields True when no process holds ``path``'s lock, keeping it locked meanwhile.

    Yields False when another process holds it, or when this file system can't tell.
    Without ``flock`` (Windows) yields True: removing a file that is open there fails.
    """
    if fcntl is None:
        yield True
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        unused = True
    except OSError:  # BlockingIOError: a live save holds it; others: no locks here, so don't guess
        unused = False
    try:
        yield unused
    finally:
        os.close(fd)


def _naming(error, target):
    """``error`` (an OSError) naming ``target`` instead of the temporary file the bytes were going to."""
    if error.errno is not None:
        return OSError(error.errno, error.strerror, target)  # (OSError picks the subclass from errno)
    return type(error)(f"{error} (while saving {target})")
