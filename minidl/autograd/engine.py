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
"""
from __future__ import annotations

from .function import Function

_FREED_MESSAGE = (
    "Trying to backward through the graph a second time (or directly access saved tensors "
    "after they have already been freed). Saved intermediate values of the graph are freed "
    "when you call .backward(). Specify retain_graph=True if you need to backward through the "
    "graph a second time."
)


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
    """Add ``grad`` into ``leaf.grad``.

    The first gradient is stored without a copy when it is a fresh array that
    nothing else can see: writeable, owning its memory (not a view of another
    array) and not already handed to another leaf in this backward. Otherwise
    it is copied -- ``a + b`` hands the same array to both leaves, and an
    in-place edit of one ``.grad`` must never change the other.
    """
    from .._tensor import Tensor

    if grad.dtype != leaf._array.dtype:
        grad = grad.astype(leaf._array.dtype)
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
        if grad.shape != node.output_shape:
            raise RuntimeError(f"{node.name} received a gradient of shape {grad.shape}, expected {node.output_shape}")
        if grad.dtype != node.output_dtype:
            grad = grad.astype(node.output_dtype)

        input_grads = type(node).backward(node, grad)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        if len(input_grads) != len(node.next_edges):
            raise RuntimeError(
                f"{node.name} returned {len(input_grads)} gradients for {len(node.next_edges)} forward arguments"
            )
        if not retain_graph:
            node.release()

        for edge, input_grad in zip(node.next_edges, input_grads):
            if edge is None or input_grad is None:
                if isinstance(edge, Function):  # nothing will arrive from here: do not wait for it
                    _arrived(edge, None, pending, dependencies, ready)
                continue
            if isinstance(edge, Function):
                _arrived(edge, input_grad, pending, dependencies, ready)
            else:
                _accumulate_into_leaf(edge, input_grad, handed_out)


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
