"""minidl.autograd.to_dot: the graph backward walks, as Graphviz DOT text (no Graphviz needed to test it)."""
import re
import shutil

import pytest

import minidl
from minidl.autograd import graph, to_dot


def edges(text):
    """{(from label, to label)}: the graph's edges by the first line of each node's label."""
    labels = dict(re.findall(r'^  (n\d+) \[label="([^"\\]*)', text, re.M))
    return {(labels[a], labels[b]) for a, b in re.findall(r"^  (n\d+) -> (n\d+);", text, re.M)}


def test_a_small_expression_reads_from_the_leaves_to_the_output():
    x = minidl.tensor([1.0, 2.0], requires_grad=True)
    w = minidl.tensor([3.0, -1.0], requires_grad=True)
    y = (x * w).relu().sum()
    y.backward()
    text = to_dot(y, names={"x": x, "w": w, "y": y})
    assert text.startswith("digraph autograd {\n  rankdir=LR;") and text.endswith("}\n")
    assert edges(text) == {("x", "MulBackward"), ("w", "MulBackward"), ("MulBackward", "ReluBackward"),
                           ("ReluBackward", "SumBackward"), ("SumBackward", "y")}
    assert 'label="x\\n(2,) float32\\ndata [1, 2]\\ngrad [3, 0]"' in text  # -0.0 reads as 0
    assert 'label="MulBackward\\n(2,) float32", shape=ellipse' in text
    assert to_dot(y, names={"x": x, "w": w, "y": y}) == text  # the same graph, the same text


def test_a_node_used_twice_appears_once_with_two_edges():
    x = minidl.tensor([1.0, 2.0, 3.0], requires_grad=True)
    h = x.exp()
    y = h * h
    text = to_dot(y, names={"x": x})
    assert text.count("ExpBackward\\n") == 1
    assert re.findall(r"^  n\d+ -> n\d+;", text, re.M).count(f"  {_id(text, 'ExpBackward')} -> {_id(text, 'MulBackward')};") == 2


def _id(text, label):
    return re.search(rf'^  (n\d+) \[label="{label}', text, re.M).group(1)


def test_constants_are_left_out_and_big_leaves_show_no_values():
    x = minidl.randn(3, 4, requires_grad=True)
    y = (x * 2.0).sum()
    text = to_dot(y)
    assert edges(text) == {("leaf", "MulBackward"), ("MulBackward", "SumBackward"), ("SumBackward", "output")}
    assert 'label="leaf\\n(3, 4) float32", shape=box' in text  # 12 values: shape and dtype only


def test_a_leaf_alone_is_one_box():
    x = minidl.tensor(2.0, requires_grad=True)
    assert to_dot(x, names={"x": x}).count("shape=box") == 1


def test_render_says_what_to_install_without_graphviz(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="Graphviz's `dot` program"):
        graph.render("digraph {}", tmp_path / "g.svg")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_render_writes_the_picture(tmp_path):
    x = minidl.tensor([1.0], requires_grad=True)
    path = graph.render(to_dot((x * x).sum()), tmp_path / "g.svg")
    assert path.read_text().lstrip().startswith(("<?xml", "<svg"))
