"""Fast cross-entropy: the reference ``CrossEntropy`` with its exp shared among the threads."""
from __future__ import annotations

import numpy as np

from .. import fast_kernel_for
from ...nn.functional.loss import CrossEntropy
from .threads import elementwise


@fast_kernel_for(CrossEntropy)
class FastCrossEntropy(CrossEntropy):
    """Equals ``CrossEntropy``. Faster: the exp of every logit, about half of the forward's
    time, runs in blocks on several threads (``threads.elementwise``)."""

    exp_in_place = staticmethod(lambda a: elementwise(np.exp, a, a))
