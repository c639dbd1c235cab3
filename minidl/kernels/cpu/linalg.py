"""Fast matmul: the reference ``Matmul`` (minidl/ops/linalg.py) with its products shared among the threads."""
from __future__ import annotations

from .. import fast_kernel_for
from ...ops.linalg import Matmul
from . import threads


@fast_kernel_for(Matmul)
class FastMatmul(Matmul):
    """Equals ``Matmul``. Faster: while minidl's threads run, BLAS runs one thread per
    call, so ``threads.matmul`` gives each thread its own block of rows or columns."""

    multiply = staticmethod(threads.matmul)
