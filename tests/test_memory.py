"""minidl.memory: after ``import minidl`` big arrays come from malloc's heap and stay there once freed."""
import os
import subprocess
import sys

import pytest

import minidl

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


def malloc_statistics(**env):
    completed = subprocess.run([sys.executable, "-c", PROBE.format(setup="import minidl")], capture_output=True,
                               text=True, env=dict(os.environ, **env), check=True,
                               cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    mmapped_while_held, kept_after_free = map(int, completed.stdout.split())
    return mmapped_while_held, kept_after_free


needs_glibc = pytest.mark.skipif(not minidl.memory.enabled, reason="malloc is not glibc's (or the setting is off)")


@needs_glibc
def test_a_big_array_comes_from_the_heap_and_its_memory_is_kept_for_reuse():
    mmapped, kept = malloc_statistics()
    assert mmapped < 64 * MB, f"the 64 MB array was mmap'ed ({mmapped / MB:.0f} MB): each step would fault its pages in anew"
    assert kept >= 64 * MB, f"only {kept / MB:.0f} MB kept after the free: the memory went back to the kernel"


@needs_glibc
def test_minidl_keep_freed_memory_0_leaves_malloc_alone():
    mmapped, kept = malloc_statistics(MINIDL_KEEP_FREED_MEMORY="0")
    assert mmapped >= 64 * MB and kept < 64 * MB, (mmapped, kept)
