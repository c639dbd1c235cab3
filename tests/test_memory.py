"""Importing minidl changes nothing process-wide; ``minidl.keep_freed_memory()`` is the explicit malloc policy."""
import ctypes
import os
import subprocess
import sys

import pytest

# Allocates a 64 MB array, then frees it, and prints glibc's malloc statistics (mallinfo2) at
# both moments: hblkhd = bytes in blocks mmap'ed from the kernel, fordblks = free bytes kept in
# the heap for reuse.
PROBE = """
import ctypes, numpy as np
{setup}
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
mallinfo2.restype = MallInfo2
array = np.ones(16 << 20, dtype=np.float32)
held = mallinfo2()
del array
freed = mallinfo2()
print(held.hblkhd, freed.fordblks)
"""
MB = 1 << 20
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code, **env):
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               env=dict(os.environ, **env), check=True, cwd=ROOT)
    return completed.stdout.split()


def malloc_statistics(setup):
    mmapped_while_held, kept_after_free = map(int, run_python(PROBE.format(setup=setup)))
    return mmapped_while_held, kept_after_free


def _has_mallinfo2():
    try:
        ctypes.CDLL("libc.so.6").mallinfo2
        return True
    except (OSError, AttributeError):
        return False


needs_glibc = pytest.mark.skipif(not _has_mallinfo2(), reason="malloc is not glibc's (no mallinfo2)")


@needs_glibc
def test_importing_minidl_leaves_malloc_alone():
    mmapped, kept = malloc_statistics("import minidl")
    assert mmapped >= 64 * MB, f"after import minidl a 64 MB array came from the heap ({mmapped / MB:.0f} MB mmap'ed)"
    assert kept < 64 * MB, "after import minidl freed memory stayed in the heap: the import changed malloc"


@needs_glibc
def test_keep_freed_memory_serves_big_arrays_from_the_heap_and_keeps_them():
    mmapped, kept = malloc_statistics("import minidl; assert minidl.keep_freed_memory()")
    assert mmapped < 64 * MB, f"the 64 MB array was mmap'ed ({mmapped / MB:.0f} MB): each step would fault its pages in anew"
    assert kept >= 64 * MB, f"only {kept / MB:.0f} MB kept after the free: the memory went back to the kernel"


# NumPy's OpenBLAS thread count, read through the library's own getter (found independently of minidl)
BLAS_COUNT = """
import ctypes, glob, os, numpy as np
getters = []
for path in glob.glob(os.path.dirname(np.__file__) + ".libs/*openblas*"):
    library = ctypes.CDLL(path)
    getters += [getattr(library, name) for name in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
                                                    "openblas_get_num_threads") if hasattr(library, name)]
def blas_threads():
    return [getter() for getter in getters[:1]]
before = blas_threads()
{action}
print(before == blas_threads(), before)
"""


@pytest.mark.parametrize("action", [
    "import minidl",
    # a split convolution: BLAS is held at one thread while minidl's threads run, then given back
    "import minidl; minidl.set_num_threads(2); minidl.nn.functional.conv2d(minidl.randn(4, 8, 16, 16), minidl.randn(8, 8, 3, 3))",
])
def test_blas_thread_count_is_as_it_was(action):
    unchanged, before = run_python(BLAS_COUNT.format(action=action))
    if before == "[]":
        pytest.skip("NumPy's BLAS is not an OpenBLAS")
    assert unchanged == "True", f"{action!r} changed NumPy's BLAS thread count (it was {before})"
