"""Checking a pickle's opcodes before it runs: what it may do, and what memory it may ask for.

A pickle is a program for a stack machine (see ``torch_pickle``). CPython's unpickler trusts
some numbers in it and allocates before it checks anything:

- a memo index: ``LONG_BINPUT 150000000`` (5 bytes) grows the memo -- an array of pointers --
  to 150 million entries, 2.3 GB of zeros; an index near 2**32 asks for 64 GB;
- a counted string's length: ``BINBYTES8``/``BINUNICODE8`` allocate it before reading the bytes.

``scan`` walks every opcode first (``pickletools.genops``, which reads each argument, so a length
that runs past the end of the data fails there, as a ValueError) and refuses:

- any opcode outside ``STATE_DICT_OPCODES``: what a state_dict or a training checkpoint never
  needs (building arbitrary objects, the extension registry, out-of-band buffers);
- a memo store at an index that is not the next free one or an existing one (Python's pickler
  numbers its entries 0, 1, 2...), and a fetch of an entry never stored.

So once the scan passes, the memo holds at most one entry per opcode and every argument lies
inside the data: the unpickler's memory is bounded by the pickle's size.
"""
from __future__ import annotations

import pickletools

from .errors import Refusal
from .files import peek, stream_size

# Plain data (protocols 0-5), the memo, and the four calls a PyTorch file needs: GLOBAL/STACK_GLOBAL
# (resolved by the restricted find_class), REDUCE (calling what it admitted), BUILD (an OrderedDict's
# _metadata; refused on anything else, see torch_pickle) and BINPERSID (a storage).
STATE_DICT_OPCODES = frozenset("""
    PROTO STOP FRAME MARK POP POP_MARK
    INT BININT BININT1 BININT2 LONG LONG1 LONG4 NONE NEWTRUE NEWFALSE FLOAT BINFLOAT
    STRING BINSTRING SHORT_BINSTRING UNICODE SHORT_BINUNICODE BINUNICODE BINUNICODE8
    SHORT_BINBYTES BINBYTES BINBYTES8
    EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_LIST LIST APPEND APPENDS
    EMPTY_DICT DICT SETITEM SETITEMS EMPTY_SET ADDITEMS FROZENSET
    PUT BINPUT LONG_BINPUT MEMOIZE GET BINGET LONG_BINGET
    GLOBAL STACK_GLOBAL REDUCE BUILD BINPERSID
""".split())
_MEMO_STORES = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_MEMO_FETCHES = frozenset({"GET", "BINGET", "LONG_BINGET"})
_FIRST_WINDOW = 1 << 20  # bytes of a legacy file scanned for its next pickle at first


def scan(data):
    """Check the pickle in ``data`` (bytes); raise Refusal, or ValueError where it is malformed."""
    _check_opcodes(pickletools.genops(data), len(data))


def read_scanned(stream):
    """The bytes of the pickle starting at ``stream``'s position, scanned; the stream is left after it.

    For a file holding several pickles (PyTorch's legacy format), where a pickle's length is
    known only once its STOP is found: the scan runs over a window of the file's next bytes,
    four times larger each time it runs out (never past the file's end), so reading and
    rescanning cost at most a few times the pickle's size.
    """
    start, left = stream.tell(), stream_size(stream)
    window = min(left, _FIRST_WINDOW)
    while True:
        data = peek(stream, window)
        try:
            end = _check_opcodes(pickletools.genops(data), len(data))
            break
        except ValueError:  # cut short by the window, or malformed: only the whole rest of the file can tell
            if window == left:
                raise
            window = min(left, 4 * window)
    stream.seek(start + end)
    return data[:end]


def _check_opcodes(opcodes, size):
    """Refuse an opcode a state_dict never needs, a memo index out of turn, a frame past the end.

    Returns where the pickle ends (the position after its STOP).
    """
    entries = 0  # the memo always holds exactly entries 0 .. entries - 1
    for opcode, arg, position in opcodes:
        name = opcode.name
        if name not in STATE_DICT_OPCODES:
            raise Refusal(f"its pickle uses the opcode {name} (at byte {position}), which a state_dict "
                          "never needs; minidl refuses it")
        if name in _MEMO_STORES and arg > entries:
            raise Refusal(f"its pickle stores memo entry {arg} (at byte {position}) while only {entries} "
                          "are in use; CPython would allocate memory for every entry up to it")
        if name in _MEMO_FETCHES and arg >= entries:
            raise Refusal(f"its pickle fetches memo entry {arg} (at byte {position}), which it never stored")
        if name == "FRAME" and arg > size - position:
            raise ValueError(f"a pickle frame of {arg} bytes runs past the end of the data")
        if name == "MEMOIZE" or (name in _MEMO_STORES and arg == entries):
            entries += 1
    return position + 1
