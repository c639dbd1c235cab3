"""Keeping freed memory for the next step: ``minidl.memory.keep_freed_memory()``.

Why a training step is faster with it
-------------------------------------
Every op of a training step makes new arrays: a ReLU on 8x32x240x240 makes a
59 MB output, and the next step makes the same arrays again. glibc's ``malloc``
hands any block over 32 MB (less, at first) straight to the kernel with
``mmap`` and gives it back with ``munmap`` when it is freed. So every step gets
brand-new pages, and the first write to each page is a page fault that costs
about as much as the op's arithmetic (measured in ../shared/PERFORMANCE_FACTS.md:
a fresh 59 MB ReLU output 11.9 ms, a reused one 5.7 ms).

Telling ``malloc`` to serve big blocks from its heap and not to give freed
memory back (``mallopt``, the same as the MALLOC_MMAP_THRESHOLD_ and
MALLOC_TRIM_THRESHOLD_ environment variables) makes the second step reuse the
first step's pages. PyTorch's CPU tuning guides reach the same end by swapping
in jemalloc or tcmalloc. Measured here, one step per process, alternated:
SegNetSmall batch 8 at 240x240 6.6 -> 5.8 s and 7.5 -> 6.2 s, peak RSS 1351 ->
1398 MB; batch 4 at 128x128 about 7% faster.

The cost: memory a step freed stays with the process (for the next step) instead of
going back to the system. ``import minidl`` turns this on where the C library is
glibc (Linux); set MINIDL_KEEP_FREED_MEMORY=0 before importing to leave ``malloc`` alone.
"""
from __future__ import annotations

import ctypes
import os

# mallopt's parameter numbers, from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
KEEP_UP_TO = 1 << 30  # blocks up to 1 GiB come from the heap; freed memory up to 1 GiB is kept
# Older glibc refuses an mmap threshold above HEAP_MAX_SIZE / 2: 32 MiB on 64-bit machines.
OLDER_GLIBC_LIMIT = 4 * 1024 * 1024 * ctypes.sizeof(ctypes.c_long)


def keep_freed_memory():
    """Ask glibc's malloc to reuse freed blocks (see the module docstring). True if it agreed.

    (Blocks larger than a thread's own heap, 64 MiB, made outside the main
    thread still come from mmap; minidl's big arrays are made in the main thread.)
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on; no search
    except (OSError, AttributeError, TypeError):  # not glibc (macOS, musl, Windows): nothing to set
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    kept = bool(mallopt(M_TRIM_THRESHOLD, KEEP_UP_TO))
    from_heap = bool(mallopt(M_MMAP_THRESHOLD, KEEP_UP_TO)) or bool(mallopt(M_MMAP_THRESHOLD, OLDER_GLIBC_LIMIT))
    return kept and from_heap


enabled = os.environ.get("MINIDL_KEEP_FREED_MEMORY", "1") != "0" and keep_freed_memory()
