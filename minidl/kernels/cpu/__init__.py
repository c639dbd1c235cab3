"""minidl's fast CPU kernels: the same ops as the reference Functions, faster on NumPy arrays.

Each module here holds the fast kernels of one family of ops. A fast kernel
is a subclass of its reference ``Function`` registered with
``@fast_kernel_for`` (see ``minidl/kernels/__init__.py``); most replace only
the heavy steps that the reference names as class attributes (a conv's three
products, a pooling's scatter), so forward and backward read the same. Each
has a docstring that names the reference it must equal and says why it is
faster; what each one buys, measured, is in docs/performance.md.

- ``threads.py``: minidl's own threads (``minidl.set_num_threads``) and the
  splitting helpers the kernels share;
- ``memory.py``: ``minidl.keep_freed_memory()``, the malloc policy that
  saves a page fault per page of every step's fresh arrays (an explicit call);
- ``conv.py``: conv2d and conv_transpose2d in cache-sized pieces;
- ``pooling.py``, ``normalization.py``, ``resample.py``, ``activation.py``,
  ``loss.py``: the memory-bound ops in cache-sized blocks.

(A plain matmul has no fast kernel: outside minidl's parallel sections BLAS
splits a product over the cores itself.)
"""
from . import activation, conv, loss, normalization, pooling, resample  # noqa: F401  (registering)
