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


# =========================================================================== 9. training loop
def small_model(seed=0):
    minidl.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 1))


def batch(seed=0):
    rng = np.random.default_rng(seed)
    return minidl.tensor(rng.standard_normal((2, 3, 8, 8)).astype(np.float32)), minidl.tensor(rng.integers(0, 5, (2, 8, 8)))


def test_ch09_without_zero_grad_gradients_accumulate():
    model, (images, masks) = small_model(), batch()
    F.cross_entropy(model(images), masks).backward()
    once = [p.grad.numpy().copy() for p in model.parameters()]
    F.cross_entropy(model(images), masks).backward()  # no zero_grad in between
    for p, g in zip(model.parameters(), once):
        np.testing.assert_allclose(p.grad.numpy(), 2 * g, rtol=1e-6, atol=1e-8)


def test_ch09_resume_needs_the_optimizer_state():
    from minidl import optim
    from train_segnet import train_step

    criterion = nn.CrossEntropyLoss()
    batches = [batch(seed) for seed in range(4)]

    def steps(model, optimizer, which):
        for images, masks in (batches[i] for i in which):
            train_step(model, images, masks, optimizer, criterion)

    straight = small_model()
    steps(straight, optim.AdamW(straight.parameters(), lr=1e-2), range(4))

    first = small_model()
    first_optimizer = optim.AdamW(first.parameters(), lr=1e-2)
    steps(first, first_optimizer, range(2))
    for with_optimizer in (False, True):
        resumed = small_model(seed=1)  # other initial weights: the loaded state must replace them
        resumed.load_state_dict(first.state_dict())
        optimizer = optim.AdamW(resumed.parameters(), lr=1e-2)
        if with_optimizer:
            optimizer.load_state_dict(first_optimizer.state_dict())
        steps(resumed, optimizer, range(2, 4))
        same = all(np.array_equal(a.detach().numpy(), b.detach().numpy())
                   for a, b in zip(straight.parameters(), resumed.parameters()))
        assert same == with_optimizer


# =========================================================================== 10. transfer learning
def old_school_model():
    from minidl.models import SegNetSmall
    from minidl.models.transfer import OldSchool

    minidl.manual_seed(0)
    return OldSchool(SegNetSmall(num_classes=11), num_classes=23)


def running_means(module):
    return [m.running_mean.numpy().copy() for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


@pytest.mark.parametrize("freeze_by_hand", [True, False])
def test_ch10_freezing_by_hand_lets_batch_norm_drift(freeze_by_hand):
    model = old_school_model()
    if freeze_by_hand:
        model.encoder.requires_grad_(False)
    else:
        nn.freeze(model.encoder)
    before = running_means(model.encoder)
    model.train()
    model(minidl.randn(2, 3, 32, 32) * 3 + 1)
    unchanged = all(np.array_equal(a, b) for a, b in zip(before, running_means(model.encoder)))
    assert unchanged == (not freeze_by_hand)


def test_ch10_unfrozen_every_convolution_is_in_the_graph():
    model = old_school_model()
    nn.freeze(model.encoder)
    x, target = minidl.randn(2, 3, 32, 32), minidl.randint(0, 23, (2, 32, 32))
    assert minidl.autograd.to_dot(F.cross_entropy(model(x), target)).count('label="Conv2dBackward') == 4
    nn.unfreeze(model.encoder)
    assert minidl.autograd.to_dot(F.cross_entropy(model(x), target)).count('label="Conv2dBackward') == 12


# =========================================================================== 11. testing your own layer
def softplus_with(derivative):
    from minidl.ops.elementwise import Pointwise

    class Softplus(Pointwise):
        f = staticmethod(lambda xp, x: xp.log1p(xp.exp(x)))
        df = staticmethod(derivative)

    return Softplus.apply


def property_test(op):
    from hypothesis import given, settings
    from minidl.testing import tensors

    @settings(max_examples=15, deadline=None, database=None)
    @given(tensors(min_dims=0, max_dims=2, max_side=3))
    def test(x):
        assert minidl.gradcheck(op, [x])

    return test


def test_ch11_softplus_tested_and_broken():
    property_test(softplus_with(lambda xp, x, y: 1 / (1 + xp.exp(-x))))()
    with pytest.raises(minidl.GradcheckError, match=r"^gradcheck failed for input 0 of shape"):
        property_test(softplus_with(lambda xp, x, y: xp.exp(x)))()


def test_ch11_conv2d_at_drawn_configurations():
    from hypothesis import given, settings
    from minidl.testing import conv_configs

    @settings(max_examples=10, deadline=None, database=None)
    @given(conv_configs())
    def test(config):
        rng = np.random.default_rng(0)
        x = minidl.tensor(rng.standard_normal(config["x_shape"]), requires_grad=True)
        w = minidl.tensor(rng.standard_normal(config["w_shape"]), requires_grad=True)
        options = {key: config[key] for key in ("stride", "padding", "dilation", "groups")}
        assert minidl.gradcheck(lambda x, w: F.conv2d(x, w, **options), [x, w])

    with use_kernels("reference"):
        test()


# =========================================================================== 12. fast kernels
def test_ch12_a_fast_kernel_must_subclass_its_reference():
    from minidl.kernels import fast_kernel_for, fast_kernels
    from minidl.ops.elementwise import Exp

    with pytest.raises(TypeError, match="NotAnExp must subclass Exp, the op it replaces"):
        @fast_kernel_for(Exp)
        class NotAnExp(minidl.Function):
            pass
    assert Exp not in fast_kernels()


def test_ch12_a_mutated_fast_relu_differs_from_the_reference():
    from minidl.kernels.cpu.activation import FastRelu
    from minidl.ops.elementwise import Relu

    class Mutant(FastRelu):
        @staticmethod
        def backward(ctx, grad):
            _, y = ctx.saved_tensors
            return grad * (y >= 0)

    values = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    gradients = {}
    for op in (Relu, Mutant):
        x = minidl.tensor(values, requires_grad=True)
        with use_kernels("reference"):  # each class runs as itself
            op.apply(x).sum().backward()
        gradients[op] = x.grad.numpy()
    assert gradients[Relu].tolist() == [0, 0, 0, 1, 1]
    assert (gradients[Mutant] != gradients[Relu]).tolist() == list(values <= 0)


# =========================================================================== 8. receptive field and memory
def test_ch08_one_more_layer_adds_two_pixels():
    from architectures import ConstantResolution

    assert minidl.summary(ConstantResolution(width=8, depth=9), (1, 3, 32, 32)).receptive_field == (19, 19)


def test_ch08_pooling_in_the_middle_sees_more_and_keeps_less():
    from architectures import ConstantResolution
    from minidl.models.blocks import conv_bn_relu

    units = [conv_bn_relu(3, 8)] + [conv_bn_relu(8, 8) for _ in range(7)]
    pooled = nn.Sequential(*units[:4], nn.MaxPool2d(2), *units[4:], nn.Upsample(scale_factor=2), nn.Conv2d(8, 23, 1))
    with_pooling = minidl.summary(pooled, (1, 3, 32, 32))
    naive = minidl.summary(ConstantResolution(width=8), (1, 3, 32, 32))
    assert (naive.receptive_field, with_pooling.receptive_field) == ((17, 17), (26, 26))
    assert with_pooling.activation_bytes < naive.activation_bytes
