"""The autograd graph as a picture: Graphviz DOT text, written by minidl itself.

    y = (x * w + b).relu().sum()
    text = minidl.autograd.to_dot(y, names={"x": x, "w": w, "b": b})
    minidl.autograd.graph.render(text, "graph.svg")     # needs Graphviz's `dot` program

The graph is what ``backward`` walks: one node per recorded op (a ``Function``
object, named like ``MulBackward``), whose ``next_edges`` point at the nodes
that made its inputs, or at the leaf tensors themselves. ``to_dot`` follows
those edges from ``tensor`` and draws them in the direction the data flowed:
leaves on the left, the output on the right, as micrograd's ``draw_dot`` does.

- a **leaf** (a tensor you made) is a box: its name from ``names``, shape and
  dtype, its values when it has at most ``MAX_VALUES`` of them, and its
  ``.grad`` once backward has run;
- an **op** is an ellipse with the node's name and the shape of its output
  (intermediate results are not kept by the graph, only their shapes);
- the **output** is a box on the right.

DOT is plain text, so no drawing library is needed: Graphviz (``apt install
graphviz``, ``brew install graphviz``) or any online DOT viewer turns it into a picture.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

from .function import Function

__all__ = ["to_dot", "render"]

MAX_VALUES = 4  # a leaf with this many values or fewer shows them (and its grad)


def to_dot(tensor, names=None) -> str:
    """The graph that produced ``tensor``, as Graphviz DOT text.

    ``names`` maps a label to a tensor ({"x": x, "w": w}); leaves not named
    there are called "leaf". Node ids are given in the order the walk meets
    the nodes, so the same graph always gives the same text.
    """
    names = {id(t): label for label, t in (names or {}).items()}
    lines = ["digraph autograd {", "  rankdir=LR;", '  node [fontname="Helvetica", fontsize=11];']
    ids = {}

    def node_id(thing):
        if id(thing) not in ids:
            ids[id(thing)] = f"n{len(ids)}"
            lines.append(f"  {ids[id(thing)]} [{_attributes(thing, names)}];")
        return ids[id(thing)]

    output = node_id(tensor)
    if tensor.grad_fn is None:  # a leaf on its own: one box
        return "\n".join(lines + ["}"]) + "\n"
    lines.append(f"  {node_id(tensor.grad_fn)} -> {output};")
    stack, seen = [tensor.grad_fn], {id(tensor.grad_fn)}
    while stack:
        node = stack.pop()
        for edge in node.next_edges:
            if edge is None:  # an argument that needs no gradient (a constant, an int)
                continue
            lines.append(f"  {node_id(edge)} -> {node_id(node)};")
            if isinstance(edge, Function) and id(edge) not in seen:
                seen.add(id(edge))
                stack.append(edge)
    return "\n".join(lines + ["}"]) + "\n"


def _attributes(thing, names):
    """DOT attributes of one node: an op (a Function) or a tensor."""
    if isinstance(thing, Function):
        label = f"{thing.name}\n{_shape(thing.output_shape)} {thing.output_dtype}"
        return f'label="{_escape(label)}", shape=ellipse, style=filled, fillcolor="#dde8f5"'
    lines = [names.get(id(thing), "leaf" if thing.grad_fn is None else "output")]
    lines.append(f"{_shape(thing.shape)} {thing.dtype}")
    if thing.numel() <= MAX_VALUES:
        lines.append(f"data {_values(thing)}")
        if thing.grad is not None:
            lines.append(f"grad {_values(thing.grad)}")
    fill = "#f5f5f5" if thing.grad_fn is None else "#e4f2e0"
    return f'label="{_escape(chr(10).join(lines))}", shape=box, style=filled, fillcolor="{fill}"'


def _shape(shape):
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _values(tensor):
    """Up to MAX_VALUES numbers, rounded for reading: '2.0' or '[1.5, -0.25]'."""
    values = np.asarray(tensor.detach().tolist(), dtype=float).ravel()
    text = ", ".join(f"{v + 0.0:.4g}" for v in values)  # + 0.0 turns -0.0 into 0.0
    return text if tensor.ndim == 0 else f"[{text}]"


def _escape(text):
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(dot_text, path):
    """Draw DOT text to ``path`` (.svg, .png or .pdf, from the suffix) with Graphviz's ``dot`` program.

    Raises RuntimeError when ``dot`` is not installed (the text itself needs nothing).
    """
    program = shutil.which("dot")
    if program is None:
        raise RuntimeError("render needs Graphviz's `dot` program (apt install graphviz, brew install graphviz); "
                           "the DOT text from to_dot can also be pasted into any online DOT viewer")
    path = Path(path)
    subprocess.run([program, f"-T{path.suffix.lstrip('.') or 'svg'}", "-o", str(path)], input=dot_text.encode(),
                   check=True)
    return path
