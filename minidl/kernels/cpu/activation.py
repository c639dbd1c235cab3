"""Fast ReLU: the reference ``Relu`` (minidl/ops/elementwise.py) in blocks shared among the threads."""
from __future__ import annotations

import numpy as np

from .. import fast_kernel_for
from ...ops.elementwise import Relu
from .threads import elementwise


@fast_kernel_for(Relu)
class FastRelu(Relu):
    """Equals ``Relu``. Faster: both cores stream their own blocks of the array
    (``threads.elementwise``), and backward multiplies by the 0/1 mask a block at a time."""

    @staticmethod
    def f(xp, x):
        return elementwise(np.maximum, np.empty_like(x), x, x.dtype.type(0))

    @staticmethod
    def backward(ctx, grad):
        _, y = ctx.saved_tensors
        return elementwise(_times_positive_mask, np.empty_like(grad), grad, y)


def _times_positive_mask(grad, y, out):
    """out = grad * (y > 0): the reference's ``grad * df`` in one pass, without a where()."""
    return np.multiply(grad, y > 0, out=out)
