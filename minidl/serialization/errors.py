"""``CheckpointError``, and one place that turns low-level read failures into it."""
from __future__ import annotations

import contextlib
import json
import pickle
import struct
import zipfile
import zlib


class CheckpointError(ValueError):
    """A file that ``load`` cannot read: truncated, corrupt, foreign, unsafe (a pickle asking
    for code), or holding a dtype or a shape minidl cannot map. The message names the file."""


# What parsing a damaged file raises from deep inside zipfile, pickle, json or NumPy.
_READ_FAILURES = (zipfile.BadZipFile, zlib.error, EOFError, pickle.UnpicklingError, struct.error,
                  json.JSONDecodeError, UnicodeDecodeError, ValueError, KeyError, IndexError, TypeError,
                  OverflowError, RecursionError, MemoryError, OSError)


@contextlib.contextmanager
def reading(name):
    """Re-raise a low-level failure while reading file ``name`` as a CheckpointError naming it.

    ``FileNotFoundError`` and our own CheckpointErrors pass through unchanged.
    """
    try:
        yield
    except (CheckpointError, FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except _READ_FAILURES as error:
        raise CheckpointError(f"{name} is truncated or corrupt and can't be loaded "
                              f"({type(error).__name__}: {error})") from error
