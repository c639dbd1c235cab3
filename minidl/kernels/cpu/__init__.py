"""minidl's fast CPU kernels: the same ops as the reference Functions, faster on NumPy arrays.

Each module here holds the fast kernels of one family of ops, every one a
subclass of its reference ``Function`` registered with
``@fast_kernel_for`` (see ``minidl/kernels/__init__.py``), with a docstring
that names the reference it must equal and says why it is faster.
What each one buys, measured, is in docs/performance.md.

- ``threads.py``: minidl's own threads (``minidl.set_num_threads``) and the
  splitting helpers the kernels share;
- ``memory.py``: ``minidl.keep_freed_memory()``, the malloc policy that
  saves a page fault per page of every step's fresh arrays (an explicit call);
- ``activation.py`` (ReLU), ``linalg.py`` (matmul), ...
"""
from . import activation, linalg  # noqa: F401  (importing a module registers its kernels)
