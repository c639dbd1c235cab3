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


class Refusal(Exception):
    """Raised where the file's name is not at hand (inside the unpickler, a JSON hook): a part
    of the file minidl refuses. ``reading`` turns it into a CheckpointError naming the file."""


# What parsing a damaged file raises from deep inside zipfile, pickle, json or NumPy. RuntimeError
# covers zipfile's "encrypted" and NotImplementedError (an unknown method or version) and
# RecursionError; AttributeError comes from a pickle's BUILD on a dict or a list. MemoryError
# is not among them: the readers bound what they allocate by the file's size, so running out of
# memory means a genuinely large file on a small machine, not a corrupt one.
_READ_FAILURES = (zipfile.BadZipFile, zlib.error, EOFError, pickle.UnpicklingError, struct.error,
                  json.JSONDecodeError, UnicodeDecodeError, ValueError, KeyError, IndexError, TypeError,
                  AttributeError, OverflowError, RuntimeError, OSError)


@contextlib.contextmanager
def reading(name):
    """Re-raise a low-level failure while reading file ``name`` as a CheckpointError naming it.

    ``FileNotFoundError`` and our own CheckpointErrors pass through unchanged; a ``Refusal``
    becomes ``"<name>: <its message>"``.
    """
    try:
        yield
    except (CheckpointError, FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Refusal as refusal:
        raise CheckpointError(f"{name}: {refusal}") from None
    except _READ_FAILURES as error:
        raise CheckpointError(f"{name} is truncated or corrupt and can't be loaded "
                              f"({type(error).__name__}: {error})") from error
