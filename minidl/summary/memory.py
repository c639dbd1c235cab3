"""Memory: what the autograd graph keeps for backward, and the peak during a training step.

What the graph keeps
--------------------
Each graph node (a ``Function`` instance, ``tensor.grad_fn``) is also the ``ctx``
of its op: whatever ``forward`` stored on it -- ``ctx.saved_tensors`` and any other
attribute (max pooling's indices, batch norm's statistics) -- stays alive until
backward has used it. ``saved_arrays(node)`` lists those arrays.

Two subtleties decide the count:
- one array can be saved by several nodes (a ReLU keeps its output, and the next
  convolution keeps the same array as its input): it is counted once;
- a view (a reshape, a slice) keeps its whole *base* array alive: the base is what
  is counted.
Parameters are left out: the model holds them anyway.

The peak
--------
On the CPU every NumPy allocation is reported to Python's ``tracemalloc``, so the
peak of traced memory during forward + backward is the peak of array memory
(plus a little for Python objects). On a GPU, a CuPy memory hook counts the bytes
handed out by (and returned to) the memory pool.
"""
from __future__ import annotations

import tracemalloc

from ..autograd.function import Function
from ..backend import array_module

_ENGINE_ATTRIBUTES = ("next_edges", "needs_input_grad")  # the graph's wiring, not saved data


def _is_array(value):
    """An array (NumPy's, CuPy's), not an array class (a node's ``output_type``)."""
    return (not isinstance(value, type) and hasattr(value, "nbytes") and hasattr(value, "dtype")
            and hasattr(value, "shape") and hasattr(value, "base"))


def _arrays_in(value):
    """Arrays in a ctx attribute: an array itself, a Tensor's array, or inside a tuple/list."""
    from .._tensor import Tensor

    if isinstance(value, Tensor):
        yield value._array
    elif _is_array(value):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _arrays_in(item)


def saved_arrays(node):
    """Every array ``node`` keeps for its backward."""
    for name, value in vars(node).items():
        if name not in _ENGINE_ATTRIBUTES:
            yield from _arrays_in(value)


def owner(array):
    """The array that owns the memory a view looks into (the array itself if it is no view)."""
    while _is_array(array.base) and array_module(array.base) is array_module(array):
        array = array.base
    return array


def graph_nodes(roots):
    """Every node reachable from ``roots`` (nodes or None), in no particular order."""
    seen, stack = set(), [r for r in roots if r is not None]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        stack.extend(edge for edge in node.next_edges if isinstance(edge, Function))
    return seen


def saved_bytes(groups, exclude=()):
    """Bytes kept by each group of nodes, every memory block counted once, in the first group that keeps it.

    groups: a list of node collections (one per layer, in execution order);
    exclude: arrays not to count (parameters). Returns a list of byte counts.
    """
    counted = {id(owner(array)) for array in exclude}
    totals = []
    for nodes in groups:
        total = 0
        for node in nodes:
            for array in saved_arrays(node):
                block = owner(array)
                if id(block) not in counted:
                    counted.add(id(block))
                    total += block.nbytes
        totals.append(total)
    return totals


class PeakMeter:
    """``with PeakMeter(device) as meter: ...`` then ``meter.peak``: the most bytes allocated at once inside.

    Counts only what is allocated inside the block, above what was live when it began.
    """

    def __init__(self, device):
        self.device, self.peak = device, 0

    def __enter__(self):
        if self.device.type == "cpu":
            self._started = not tracemalloc.is_tracing()
            if self._started:
                tracemalloc.start()
            tracemalloc.reset_peak()
            self._base = tracemalloc.get_traced_memory()[0]
        else:
            self._hook = _PoolPeakHook()
            self._hook.__enter__()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cpu":
            self.peak = tracemalloc.get_traced_memory()[1] - self._base
            if self._started:
                tracemalloc.stop()
        else:
            self._hook.__exit__(*exc)
            self.peak = self._hook.peak
        return False


def _PoolPeakHook():  # noqa: N802  (a class made on first use: CuPy is imported only on a GPU)
    import cupy

    class PoolPeakHook(cupy.cuda.MemoryHook):
        """Bytes taken from CuPy's memory pool, running total and peak."""

        name = "PoolPeakHook"

        def __init__(self):
            self.used = self.peak = 0

        def malloc_postprocess(self, **kwargs):
            self.used += kwargs["mem_size"]
            self.peak = max(self.peak, self.used)

        def free_postprocess(self, **kwargs):
            self.used -= kwargs["mem_size"]

    return PoolPeakHook()
