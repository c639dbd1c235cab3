"""The "Try it" exercises of the guide (docs/guide), done as the chapters say, with the outcome they promise.

One test per exercise, named after its chapter: test_ch03_* checks chapter 3's exercises.
A student who does an exercise should see what its test asserts.
"""
import inspect
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import minidl
import minidl.nn.functional as F
from minidl import nn
from minidl.data import VOID
from minidl.kernels import use_kernels

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))


def float64(*shape, seed=0):
    return minidl.tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=True)


# =========================================================================== 1. autograd
def test_ch01_backward_twice_fails_and_retain_graph_adds_up():
    x = minidl.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="Trying to backward through the graph a second time"):
        y.backward()
    x.grad = None
    y = (x * x).sum()
    y.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), 2 * first)


def count_ops(tensor):
    """The exercise's walk: distinct nodes reachable from tensor.grad_fn through next_edges."""
    seen, stack = set(), [tensor.grad_fn] if tensor.grad_fn is not None else []
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.extend(edge for edge in node.next_edges if isinstance(edge, minidl.Function))
    return len(seen)


def test_ch01_count_ops():
    x, w, b = (minidl.tensor(v, requires_grad=True) for v in ([1.0, 2.0], [3.0, -1.0], 0.5))
    y = (x * w + b).relu().sum()
    assert count_ops(y) == 4 == minidl.autograd.to_dot(y).count("shape=ellipse")
    h = x.exp()
    assert count_ops(h * h) == 2


# =========================================================================== 2. writing an op
def test_ch02_a_dropped_term_passes_backward_but_not_gradcheck():
    import custom_op

    class DroppedTerm(custom_op.SiLU):
        @staticmethod
        def backward(ctx, grad):
            x, s = ctx.saved_tensors
            return grad * s

    x = minidl.tensor(np.ones((3, 4)), requires_grad=True)
    DroppedTerm.apply(x).sum().backward()  # no error: the shape is right
    x.grad = None
    with pytest.raises(minidl.GradcheckError) as failure:
        minidl.gradcheck(DroppedTerm.apply, [x])
    message = str(failure.value)
    assert message.startswith("gradcheck failed for input 0 of shape (3, 4) at index (0, 0)")
    assert re.search(r"The Jacobian entry that differs most, .*: analytic 0\.7310\d*, numerical 0\.9276\d*", message)


def test_ch02_a_wrong_shape_is_named_by_backward_itself():
    import custom_op

    broken = custom_op.silu_with_backward(lambda grad, x, s: (grad * s * (1 + x * (1 - s))).sum(axis=0))
    x = minidl.tensor(np.ones((3, 4)), requires_grad=True)
    expected = ("Function SiLUBackward returned an invalid gradient at index 0 - "
                "got [4] but expected shape compatible with [3, 4]")
    with pytest.raises(RuntimeError, match=re.escape(expected)):
        broken(x).sum().backward()


# =========================================================================== 3. convolution
def test_ch03_col2im_that_overwrites_breaks_only_overlapping_windows(monkeypatch):
    from minidl.nn.functional import conv

    source = inspect.getsource(conv.col2im)
    assert source.count("+=") == 1
    namespace = dict(vars(conv))
    exec(source.replace("+=", "="), namespace)  # the exercise's edit: overwrite instead of add
    monkeypatch.setattr(conv, "col2im", namespace["col2im"])
    x, w = float64(1, 2, 6, 6), float64(3, 2, 3, 3, seed=1)
    with use_kernels("reference"):
        with pytest.raises(minidl.GradcheckError, match=r"^gradcheck failed for input 0 of shape \(1, 2, 6, 6\)"):
            minidl.gradcheck(lambda x, w: F.conv2d(x, w, padding=1), [x, w])
        assert minidl.gradcheck(lambda w: F.conv2d(x.detach(), w, padding=1), [w])  # dW needs no col2im
        assert minidl.gradcheck(lambda x, w: F.conv2d(x, w, stride=3), [x, w])  # windows that do not overlap


def test_ch03_predict_the_size():
    from minidl.nn.functional.conv import conv_output_size

    assert conv_output_size(7, kernel=3, stride=2, padding=1, dilation=2) == 3
    y = F.conv2d(minidl.randn(1, 1, 7, 7), minidl.randn(1, 1, 3, 3), stride=2, padding=1, dilation=2)
    assert y.shape == (1, 1, 3, 3)


# =========================================================================== 4. transposed convolution
def test_ch04_kernel_a_multiple_of_the_stride_has_no_checkerboard():
    counts = F.conv_transpose2d(minidl.ones(1, 1, 3, 3), minidl.ones(1, 1, 4, 4), stride=2, padding=1).numpy()[0, 0]
    assert counts.shape == (6, 6) == ((3 - 1) * 2 - 2 * 1 + 4,) * 2
    assert np.all(counts[1:-1, 1:-1] == 4)


@pytest.mark.parametrize("size", [1, 5, 32])
def test_ch04_kernel_4_stride_2_padding_1_doubles(size):
    # (in - 1) * 2 - 2 * pad + 4 = 2 * in  <=>  pad = 1
    y = F.conv_transpose2d(minidl.ones(1, 1, size, size), minidl.ones(1, 1, 4, 4), stride=2, padding=1)
    assert y.shape[-2:] == (2 * size, 2 * size)


# =========================================================================== 5. pooling
def test_ch05_ties_keep_the_first_maximum():
    _, indices = F.max_pool2d(minidl.ones(1, 1, 4, 4), 2, return_indices=True)
    assert indices.numpy()[0, 0].tolist() == [[0, 2], [8, 10]]


def test_ch05_overlapping_windows_add_their_gradients():
    plane = np.ones((3, 3), np.float32)
    plane[1, 1] = 5
    x = minidl.tensor(plane[None, None], requires_grad=True)
    F.max_pool2d(x, 3, stride=1, padding=1).sum().backward()
    expected = np.zeros((3, 3))
    expected[1, 1] = 9
    np.testing.assert_array_equal(x.grad.numpy()[0, 0], expected)


# =========================================================================== 6. batch norm and dropout
def test_ch06_batch_norm_without_the_statistics_terms():
    from minidl.nn.functional.normalization import BatchNorm

    class Broken(BatchNorm):
        @staticmethod
        def backward(ctx, grad):
            ctx.batch_stats = False  # the evaluation-mode gradient, in training mode
            return BatchNorm.backward(ctx, grad)

    x = float64(4, 3, 2, 2)
    with pytest.raises(minidl.GradcheckError, match=r"^gradcheck failed for input 0 of shape \(4, 3, 2, 2\)"):
        minidl.gradcheck(lambda x: Broken.apply(x, None, None, None, None, 1e-5)[0], [x])
    mean, var = np.zeros(3), np.full(3, 2.0)  # running statistics: the evaluation gradient is the right one
    assert minidl.gradcheck(lambda x: Broken.apply(x, None, None, mean, var, 1e-5)[0], [x])


def test_ch06_dropout_keeps_the_mean():
    minidl.manual_seed(0)
    assert abs(F.dropout(minidl.ones(100_000), p=0.5).numpy().mean() - 1) < 0.01
    assert abs(F.dropout2d(minidl.ones(64, 64, 4, 4), p=0.5).numpy().mean() - 1) < 0.05


# =========================================================================== 7. loss and metric
def test_ch07_the_wrong_ignore_index_is_named():
    logits = minidl.randn(1, 3, 2, 2)
    target = minidl.tensor([[[0, 1], [VOID, 2]]])
    with pytest.raises(ValueError, match=re.escape("target value -1 is out of bounds; class indices must lie in "
                                                   "[0, 3) for 3 classes, or equal ignore_index (-100)")):
        F.cross_entropy(logits, target)


def test_ch07_void_counted_as_wrong_halves_the_accuracy():
    from minidl.metrics import SegmentationMetrics

    target = np.array([[0, 1, VOID, VOID]])
    prediction = np.array([[0, 1, 0, 0]])
    assert np.mean(prediction == target) == 0.5
    assert SegmentationMetrics(2).update(prediction, target).pixel_accuracy() == 1.0
