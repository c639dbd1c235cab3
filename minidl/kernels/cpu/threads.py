"""Every CPU core at work: ``minidl.set_num_threads(n)`` / ``minidl.get_num_threads()``.

Why the fast kernels run threads of their own
---------------------------------------------
NumPy's BLAS already spreads one *big* matrix product over all cores. But a
convolution with few channels (16 or 32, the full-resolution layers of a
segmentation net) is not one big product: most of its time goes to im2col's
copy, which NumPy runs on ONE core, and to matmuls only 16 rows tall, which
BLAS's threads barely speed up. Splitting the *batch* instead -- each thread
builds the columns of its own images and multiplies them -- keeps every core
busy in both. Python threads can do this: NumPy releases the GIL inside copies
and matmuls, so they really run at the same time.

While our threads run, BLAS must run one thread per call: two threads each
asking a 2-thread BLAS for a product just queue behind each other. NumPy has no
call for that, but the OpenBLAS inside NumPy's wheels exports
``openblas_set_num_threads``; ``ctypes`` reaches it (found on first use, not on
import). ``parallel_map`` sets BLAS to one thread for the time its threads run
and gives it back its own count afterwards, so NumPy code outside minidl keeps
BLAS's threads. Where OpenBLAS cannot be reached (NumPy built on another BLAS),
minidl's thread count is 1 and everything runs in the caller's thread.

A product that runs in the caller's thread (a batch of one image, a linear
layer) is left to BLAS and its own threads, which it has back outside the
parallel sections. The splits live in the fast kernels: ``conv.py`` (by
images, or bands of rows), and ``elementwise`` and ``channel_blocks`` below
(blocks of memory, for the ops that only stream through it: ReLU, BatchNorm,
pooling and unpooling, resampling, the softmax's exp).
"""
from __future__ import annotations

import contextlib
import ctypes
import glob
import math
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ...backend import array_module

__all__ = ["get_num_threads", "set_num_threads", "parallel_map", "even_slices", "elementwise", "channel_blocks"]


# --------------------------------------------------------------------------- BLAS's thread count
class _OpenBLAS:
    """The get/set thread-count functions of the OpenBLAS that NumPy loaded, looked up on first use."""

    # Symbol names: NumPy >= 2 ships "scipy_openblas" with a prefix and a 64-bit-int suffix;
    # older wheels ship plain OpenBLAS.
    NAMES = [("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
             ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
             ("openblas_get_num_threads", "openblas_set_num_threads")]

    def __init__(self):
        self.searched = False
        self.get = self.set = None

    @property
    def found(self):
        if not self.searched:
            self.searched = True
            self.get, self.set = self._search()
        return self.get is not None

    def _search(self):
        # Wheels put their BLAS next to the package: numpy.libs (Linux), numpy/.dylibs (macOS)
        package = os.path.dirname(np.__file__)
        for path in glob.glob(package + ".libs/*openblas*") + glob.glob(os.path.join(package, ".dylibs", "*openblas*")):
            try:
                library = ctypes.CDLL(path)  # already loaded by NumPy: this returns the same copy
            except OSError:
                continue
            for get_name, set_name in self.NAMES:
                if hasattr(library, get_name) and hasattr(library, set_name):
                    get, set_ = getattr(library, get_name), getattr(library, set_name)
                    get.restype, set_.argtypes = ctypes.c_int, [ctypes.c_int]
                    return get, set_
        return None, None


_openblas = _OpenBLAS()


# --------------------------------------------------------------------------- our own threads
_threads = None  # minidl's thread count; None until first asked (then BLAS's own count)
_pool = None  # made on first use, with _threads workers
_pool_lock = threading.Lock()  # guards making and replacing _pool, and the BLAS hand-over below
_blas_borrowers = 0  # parallel_map calls now running with BLAS held at one thread
_blas_own_count = None  # BLAS's count before the first of them took it


def get_num_threads():
    """How many threads minidl's fast CPU kernels split their work into (like ``torch.get_num_threads``).

    By default as many as NumPy's BLAS uses (it reads OPENBLAS_NUM_THREADS /
    OMP_NUM_THREADS); 1 where BLAS's thread count cannot be set.
    """
    global _threads
    if _threads is None:
        _threads = max(1, _openblas.get()) if _openblas.found else 1
    return _threads


def set_num_threads(count):
    """Split minidl's fast CPU kernels (convolutions, matmuls, the memory-bound ops) over ``count`` threads.

    1 turns the splitting off. Where NumPy's BLAS is not an OpenBLAS minidl
    can reach, the count stays 1 (with a warning). Under ``mpiexec`` with one
    process per core, start with OMP_NUM_THREADS=1 (which makes 1 the default)
    or call this with 1.
    """
    global _threads, _pool
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"set_num_threads: expected a positive int, got {count!r}")
    if not _openblas.found:
        if count > 1:
            warnings.warn("set_num_threads: NumPy's BLAS is not an OpenBLAS that minidl can reach, so minidl "
                          "cannot keep it from competing with its own threads; minidl stays at 1 thread")
        _threads = 1
        return
    with _pool_lock:
        if _pool is not None and count != _threads:
            _pool.shutdown(wait=False)  # its threads finish their items and end; new work goes to a new pool
            _pool = None
        _threads = int(count)


def parallel_map(function, items):
    """[function(item) for item in items], the items shared among ``get_num_threads()`` threads.

    With one thread or one item it is exactly that list comprehension -- and
    so it is inside one of our threads (a nested split would wait for threads
    that are all busy waiting). ``function`` must not write to memory another
    item reads; each thread has its own conv scratch buffer (conv.py,
    ``_Scratch``). An exception in any item is raised here. While the items
    run, NumPy's BLAS runs one thread per call (``_blas_held_at_one``).
    """
    items = list(items)
    if get_num_threads() == 1 or len(items) < 2 or _in_our_thread():
        return [function(item) for item in items]
    with _blas_held_at_one():
        return list(_thread_pool().map(function, items))


def _thread_pool():
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=_threads, thread_name_prefix="minidl", initializer=_mark_as_ours)
        return _pool


@contextlib.contextmanager
def _blas_held_at_one():
    """BLAS at one thread per call inside, its own count again once no parallel_map runs.

    (Several Python threads may run parallel_map at once: the first takes
    BLAS's count, the last gives it back.)
    """
    global _blas_borrowers, _blas_own_count
    with _pool_lock:
        if _blas_borrowers == 0:
            _blas_own_count = _openblas.get()
            _openblas.set(1)
        _blas_borrowers += 1
    try:
        yield
    finally:
        with _pool_lock:
            _blas_borrowers -= 1
            if _blas_borrowers == 0:
                _openblas.set(_blas_own_count)


def _forget_pool_after_fork():
    """A forked child inherits the pool object but not its threads: work queued there would wait forever."""
    global _pool, _pool_lock, _blas_borrowers
    _pool, _pool_lock, _blas_borrowers = None, threading.Lock(), 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)

_local = threading.local()


def _mark_as_ours():
    _local.ours = True


def _in_our_thread():
    return getattr(_local, "ours", False)


def even_slices(size, count):
    """range(size) cut into ``count`` slices of near-equal length, in order (empty ones left out)."""
    count = max(count, 1)
    bounds = [size * i // count for i in range(count + 1)]
    return [slice(start, stop) for start, stop in zip(bounds, bounds[1:]) if stop > start]


# --------------------------------------------------------------------------- memory-bound ops in blocks
# Ops like ReLU or BatchNorm do a few flops per number: their speed is the memory's. Two
# things help them. Each thread streams its own blocks, so both cores' share of the memory
# bandwidth is used. And an op made of several passes (BatchNorm's backward makes five) runs
# all its passes over one block while that block is still in the CPU's cache, instead of
# each pass over the whole array from main memory (docs/performance.md has the figures, and
# why 4 MB). Two helpers, two rules:
# - ``elementwise`` (one ufunc call, e.g. ReLU): cut once the array passes BLOCK_BYTES, and only
#   with more than one thread -- a single pass gains nothing from the cache;
# - ``channel_blocks`` (several passes per block: BatchNorm, pooling, resampling): cut from
#   2 * BLOCK_BYTES on, with any thread count -- the later passes find the block cached.
BLOCK_BYTES = 4 << 20


def elementwise(function, out, *operands):
    """``function(*operands, out=out)`` for an elementwise ``function``, in blocks of about BLOCK_BYTES shared among the threads.

    The array operands have ``out``'s shape (scalars are passed whole). Each
    block is a range of the flattened arrays, so only C-contiguous arrays are
    cut; anything else (other layouts, CuPy arrays, small arrays) is one call.
    Returns ``out``.
    """
    arrays = [a for a in (out,) + operands if isinstance(a, np.ndarray)]
    count = -(-out.nbytes // BLOCK_BYTES)  # ceil
    if (count < 2 or get_num_threads() == 1 or not isinstance(out, np.ndarray)
            or not all(a.flags.c_contiguous and a.shape == out.shape for a in arrays)):
        function(*operands, out=out)
        return out
    flat_out = out.reshape(-1)  # views: all are contiguous
    flat = [a.reshape(-1) if isinstance(a, np.ndarray) else a for a in operands]

    def apply(block):
        function(*[a[block] if isinstance(a, np.ndarray) else a for a in flat], out=flat_out[block])

    parallel_map(apply, even_slices(out.size, count))
    return out


def channel_blocks(x, plane=None):
    """The blocks of an (N, C, *) array that per-channel ops work in: (image slice, channel slice) pairs.

    ``x[block]`` is the block. Each is about BLOCK_BYTES: several whole images
    where an image is smaller, else one image's channels in groups. A block
    slices only N and C, so it also fits another array of the same N and C:
    ``plane`` (a spatial shape) plans for that array's planes instead of x's,
    e.g. a resampling's larger output. A per-channel statistic is a sum over
    blocks of each block's (channels,) part. One block holds everything where
    nothing would be gained: a small array, a GPU. (With one thread the blocks
    still pay: the later passes find the block in the cache.)
    """
    n, c = x.shape[:2]
    plane_bytes = x.itemsize * math.prod(x.shape[2:] if plane is None else plane)
    everything = [(slice(0, n), slice(0, c))]
    if array_module(x) is not np or n * c * plane_bytes < 2 * BLOCK_BYTES or plane_bytes == 0:
        return everything
    if c * plane_bytes <= BLOCK_BYTES:
        return [(images, slice(0, c)) for images in even_slices(n, -(-n // (BLOCK_BYTES // (c * plane_bytes))))]
    groups = even_slices(c, -(-c // max(1, BLOCK_BYTES // plane_bytes)))
    return [(slice(i, i + 1), channels) for i in range(n) for channels in groups]
