"""Keeping freed memory for the next step: ``minidl.keep_freed_memory()``, an explicit call.

Why a training step is faster with it
-------------------------------------
Every op of a training step makes new arrays, and the next step makes the
same arrays again. glibc's ``malloc`` hands a big block (over 32 MB, less at
first) straight to the kernel with ``mmap`` and gives it back with ``munmap``
when it is freed. So every step gets brand-new pages, and the first write to
each page is a page fault that costs about as much as a simple op's arithmetic.

Telling ``malloc`` to serve big blocks from its heap and not to give freed
memory back (``mallopt``, the same as the MALLOC_MMAP_THRESHOLD_ and
MALLOC_TRIM_THRESHOLD_ environment variables) makes the second step reuse the
first step's pages. PyTorch's CPU tuning guides reach the same end by swapping
in jemalloc or tcmalloc. The cost: memory a step freed stays with the process
(for the next step) instead of going back to the system.

It changes the whole process (NumPy and PyTorch code beside minidl too), so
``import minidl`` does not do it: the examples and benchmarks call
``minidl.keep_freed_memory()`` (docs/performance.md has the figures).
"""
from __future__ import annotations

import ctypes

__all__ = ["keep_freed_memory"]

# mallopt's parameter numbers, from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
KEEP_UP_TO = 1 << 30  # blocks up to 1 GiB come from the heap; freed memory up to 1 GiB is kept
# Older glibc refuses an mmap threshold above HEAP_MAX_SIZE / 2: 32 MiB on 64-bit machines.
OLDER_GLIBC_LIMIT = 4 * 1024 * 1024 * ctypes.sizeof(ctypes.c_long)


def keep_freed_memory():
    """Ask glibc's malloc, for this whole process, to reuse freed big blocks. True if it agreed.

    False where the C library is not glibc (macOS, musl, Windows): nothing is
    changed there. (Blocks larger than a thread's own heap, 64 MiB, made
    outside the main thread still come from mmap; minidl's big arrays are
    made in the main thread.)
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on; no search
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    kept = bool(mallopt(M_TRIM_THRESHOLD, KEEP_UP_TO))
    from_heap = bool(mallopt(M_MMAP_THRESHOLD, KEEP_UP_TO)) or bool(mallopt(M_MMAP_THRESHOLD, OLDER_GLIBC_LIMIT))
    return kept and from_heap
