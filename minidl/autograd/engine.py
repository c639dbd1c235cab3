"""The backward pass: walk the graph from the output to the leaves, iteratively.

Two passes, no recursion (a chain of 100,000 ops must not hit Python's
recursion limit):

1. Count, for every node reachable from the output, how many edges point at
   it: that is how many gradient contributions it must wait for.
2. Kahn's algorithm: start at the output; run a node's ``backward`` once all of
   its contributions have arrived and been summed; pass each input gradient
   along its edge -- to the producing node, or into ``.grad`` of a leaf.

This order is a reverse topological order, so a node used twice (a diamond,
a shared weight) runs once, with the sum of both gradients.

Every gradient a ``backward`` returns is checked where it is produced, as
PyTorch's engine does (``validate_outputs``), so that a wrong backward is
named, not the node that later receives its result. The input's shape and
dtype need no extra record: the edge holds them -- the producing node's
``output_shape``/``output_dtype``, or the leaf's own array. The rules:

- ``None`` means "no gradient" and is always accepted;
- anything but a NumPy/CuPy array (a float, a list, a minidl Tensor) is an error,
  and so is an array on another device than its input (a host array for a GPU input);
- the shape must equal the input's, or be one the input's shape broadcasts
  to -- (2, 3, 4) for a (3, 4) input -- which is then summed down to it
  (``unbroadcast``); any other shape is an error: (4,) or (1, 4) for (3, 4);
- a real number dtype (float, int, bool) is cast to the input's dtype;
  another (complex, object) is an error.

An error is an ``InvalidGradientError`` (a RuntimeError) with PyTorch's
wording: "Function SiluBackward returned an invalid gradient at index 0 -
got [4] but expected shape compatible with [3, 4]".
"""
from __future__ import annotations

import numpy as np

from ..backend import array_module
from .function import Function, unbroadcast

_FREED_MESSAGE = (
    "Trying to backward through the graph a second time (or directly access saved tensors "
    "after they have already been freed). Saved intermediate values of the graph are freed "
    "when you call .backward(). Specify retain_graph=True if you need to backward through the "
    "graph a second time."
)


class InvalidGradientError(RuntimeError):
    """A Function's backward returned a gradient that cannot belong to its input."""


def count_dependencies(roots, edges_of=lambda node: node.next_edges) -> dict:
    """Every node reachable from ``roots`` and how many edges point at it.

    ``edges_of(node)`` lists a node's outgoing edges (by default all of them);
    the receptive-field walk in ``minidl.summary`` passes its own filter.
    """
    dependencies = {root: 0 for root in roots}
    stack = list(roots)
    while stack:
        node = stack.pop()
        for edge in edges_of(node):
            if isinstance(edge, Function):
                if edge not in dependencies:
                    dependencies[edge] = 0
                    stack.append(edge)
                dependencies[edge] += 1
    return dependencies


def _accumulate_into_leaf(leaf, grad, handed_out):
    """Add ``grad`` (already in the leaf's shape and dtype) into ``leaf.grad``.

    The first gradient is stored without a copy when it is a fresh array that
    nothing else can see: writeable, owning its memory (not a view of another
    array) and not already handed to another leaf in this backward. Otherwise
    it is copied -- ``a + b`` hands the same array to both leaves, and an
    in-place edit of one ``.grad`` must never change the other.
    """
    from .._tensor import Tensor

    if leaf.grad is None:
        private = grad.base is None and getattr(grad.flags, "writeable", True) and id(grad) not in handed_out
        handed_out.add(id(grad))
        leaf.grad = Tensor._from_array(grad if private else grad.copy())
    else:
        leaf.grad = Tensor._from_array(leaf.grad._array + grad)


def run_backward(tensor, grad, retain_graph: bool = False):
    """Propagate ``grad`` (an array shaped like ``tensor``) back to every leaf."""
    root = tensor.grad_fn
    handed_out = {id(grad)}  # the seed belongs to the caller: never store it uncopied
    if root is None:  # a leaf: its gradient is the seed itself
        _accumulate_into_leaf(tensor, grad, handed_out)
        return
    dependencies = count_dependencies([root])
    pending = {root: grad}
    ready = [root]
    while ready:
        node = ready.pop()
        grad = pending.pop(node)
        if node.released:
            raise RuntimeError(_FREED_MESSAGE)

        input_grads = type(node).backward(node, grad)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        if len(input_grads) != len(node.next_edges):
            raise InvalidGradientError(
                f"Function {node.name} returned an incorrect number of gradients "
                f"(expected {len(node.next_edges)}, one per forward argument, got {len(input_grads)})"
            )
        if not retain_graph:
            node.release()

        for index, (edge, input_grad) in enumerate(zip(node.next_edges, input_grads)):
            if edge is None or input_grad is None:
                if isinstance(edge, Function):  # nothing will arrive from here: do not wait for it
                    _arrived(edge, None, pending, dependencies, ready)
                continue
            if isinstance(edge, Function):
                input_grad = _checked(node, index, input_grad, edge.output_shape, edge.output_dtype, edge.output_type)
                _arrived(edge, input_grad, pending, dependencies, ready)
            else:
                input_grad = _checked(node, index, input_grad, edge._array.shape, edge._array.dtype, type(edge._array))
                _accumulate_into_leaf(edge, input_grad, handed_out)


def _checked(node, index, grad, shape, dtype, array_type):
    """The gradient ``node`` returned for its input ``index``, made to fit that input (see the module's rules)."""
    if type(grad) is array_type and grad.dtype is dtype and grad.shape == shape:
        return grad  # the usual case, in three quick comparisons (NumPy's dtypes are singletons, so `is`)
    grad = _as_array(node, index, grad)
    if isinstance(grad, np.ndarray) != issubclass(array_type, np.ndarray):  # host for device, or device for host
        raise _invalid(node, index, f"expected a gradient on the input's device ({_kind(array_type)}) "
                                    f"but got one on {_kind(type(grad))}")
    if grad.shape != shape:
        if not _broadcasts_to(shape, grad.shape):
            raise _invalid(node, index, f"got {list(grad.shape)} but expected shape compatible with {list(shape)}")
        grad = unbroadcast(grad, shape)
    if grad.dtype != dtype:
        if grad.dtype.kind not in "biuf":  # bool, int, unsigned, float: cast like PyTorch; not complex, object
            raise _invalid(node, index, f"expected dtype {dtype} but got {grad.dtype}")
        grad = grad.astype(dtype)
    return grad


def _as_array(node, index, grad):
    """``grad`` as a NumPy or CuPy array (NumPy hands 0-d results back as scalars), or an error."""
    if isinstance(grad, np.generic):
        return np.asarray(grad)
    if isinstance(grad, np.ndarray) or array_module(grad) is not np:
        return grad
    hint = " (backward takes and returns raw arrays, not Tensors)" if hasattr(grad, "_array") else ""
    raise _invalid(node, index, f"expected an array or None, got {type(grad).__name__}{hint}")


def _kind(array_type):
    """'cpu' for a NumPy array type, 'cuda' for a CuPy one."""
    return "cpu" if issubclass(array_type, np.ndarray) else "cuda"


def _invalid(node, index, problem):
    """The error for ``node``'s gradient at ``index``, in PyTorch's words."""
    return InvalidGradientError(f"Function {node.name} returned an invalid gradient at index {index} - {problem}")


def _broadcasts_to(shape, target):
    """True when an array of ``shape`` broadcasts to ``target``: (3, 4) to (2, 3, 4) or (1, 4) to (3, 4)."""
    return len(shape) <= len(target) and all(s in (1, t) for s, t in zip(reversed(shape), reversed(target)))


def _arrived(node, grad, pending, dependencies, ready):
    """One more gradient contribution for ``node``; schedule it when it has them all."""
    if grad is not None:
        pending[node] = pending[node] + grad if node in pending else grad
    dependencies[node] -= 1
    if dependencies[node] == 0:
        if node in pending:
            ready.append(node)
        else:
            _skip(node, pending, dependencies, ready)


def _skip(node, pending, dependencies, ready):
    """A node that received no gradient at all passes 'nothing' on to its inputs."""
    stack = [node]
    while stack:
        current = stack.pop()
        for edge in current.next_edges:
            if isinstance(edge, Function):
                dependencies[edge] -= 1
                if dependencies[edge] == 0:
                    if edge in pending:
                        ready.append(edge)
                    else:
                        stack.append(edge)
