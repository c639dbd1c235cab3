"""Losses: cross_entropy, nll_loss, binary_cross_entropy_with_logits, mse_loss."""
import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import minidl
from minidl.nn import functional as F
from minidl.testing import float_arrays, shapes, tensor_pairs, tensors
from tests.helpers import assert_close, needs_torch, to_numpy, torch

REDUCTIONS = ["mean", "sum", "none"]


@st.composite
def class_loss_cases(draw):
    """Scores (N, C, *), targets with some ignored positions, optional class weights, a reduction."""
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    spatial = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    ignore_index = draw(st.sampled_from([-100, -1, 0, 2]))  # an ignored real class is legal too
    target = draw(hnp.arrays(np.int64, (n,) + spatial, elements=st.sampled_from(list(range(c)) + [ignore_index])))
    reduction = draw(st.sampled_from(REDUCTIONS))
    if reduction == "mean" and (target == ignore_index).all():
        target.flat[0] = (ignore_index + 1) % c if c > 1 or ignore_index != 0 else 0
        if target.flat[0] == ignore_index:  # one class, and it is ignored: nothing to average
            reduction = "sum"
    weight = draw(st.none() | float_arrays((c,), low=0.2, high=2.0))
    return dict(
        scores=draw(float_arrays((n, c) + spatial)), target=target, weight=weight,
        ignore_index=ignore_index, reduction=reduction,
    )


def call(fn, case, scores, **extra):
    weight = None if case["weight"] is None else minidl.tensor(case["weight"])
    return fn(scores, minidl.tensor(case["target"]), weight=weight, ignore_index=case["ignore_index"],
              reduction=case["reduction"], **extra)


# --------------------------------------------------------------------------- gradients
@given(case=class_loss_cases(), smoothing=st.sampled_from([0.0, 0.3]))
def test_cross_entropy_gradient(case, smoothing):
    scores = minidl.tensor(case["scores"], requires_grad=True)
    assert minidl.gradcheck(lambda s: call(F.cross_entropy, case, s, label_smoothing=smoothing), [scores])


@given(case=class_loss_cases())
def test_nll_loss_gradient(case):
    scores = minidl.tensor(case["scores"], requires_grad=True)
    assert minidl.gradcheck(lambda s: call(F.nll_loss, case, s), [scores])


@given(pair=st.tuples(tensors(min_dims=0, max_dims=3, max_side=4)).map(lambda t: t[0]).flatmap(
    lambda x: st.tuples(st.just(x), tensors(x.shape, low=0.0, high=1.0))), reduction=st.sampled_from(REDUCTIONS))
def test_bce_with_logits_gradient(pair, reduction):
    x, y = pair
    assert minidl.gradcheck(lambda a, b: F.binary_cross_entropy_with_logits(a, b, reduction=reduction), [x, y])


@given(x=tensors(shapes(1, 2, max_side=4)), reduction=st.sampled_from(REDUCTIONS))
def test_bce_with_logits_gradient_with_weights(x, reduction):
    c = x.shape[-1]
    y = minidl.tensor(np.random.default_rng(0).uniform(0, 1, x.shape), requires_grad=True)
    weight = minidl.tensor(np.linspace(0.5, 1.5, c))
    pos_weight = minidl.tensor(np.linspace(2.0, 0.5, c))
    assert minidl.gradcheck(
        lambda a, b: F.binary_cross_entropy_with_logits(a, b, weight, reduction, pos_weight), [x, y]
    )


@given(pair=tensor_pairs().filter(lambda p: p[0].shape == p[1].shape) | tensors(max_dims=3).map(
    lambda t: (t, minidl.tensor(t.detach().numpy()[::-1].copy() if t.ndim else t.detach().numpy(), requires_grad=True))),
    reduction=st.sampled_from(REDUCTIONS))
def test_mse_loss_gradient(pair, reduction):
    assert minidl.gradcheck(lambda a, b: F.mse_loss(a, b, reduction), list(pair))


# --------------------------------------------------------------------------- laws
@given(case=class_loss_cases())
def test_cross_entropy_is_nll_of_log_softmax(case):
    scores = minidl.tensor(case["scores"])
    assert_close(call(F.cross_entropy, case, scores), call(F.nll_loss, case, F.log_softmax(scores, 1)), rtol=1e-10)


@given(case=class_loss_cases())
def test_reductions_agree(case):
    """mean = sum / sum of the kept targets' weights; 'none' has the target's shape and sums to 'sum'."""
    scores, target = minidl.tensor(case["scores"]), case["target"]
    per_position = call(F.cross_entropy, {**case, "reduction": "none"}, scores).numpy()
    total = call(F.cross_entropy, {**case, "reduction": "sum"}, scores).item()
    assert per_position.shape == target.shape
    assert (per_position[target == case["ignore_index"]] == 0).all()
    np.testing.assert_allclose(per_position.sum(), total, rtol=1e-10, atol=1e-12)
    kept = target != case["ignore_index"]
    weight = np.ones(scores.shape[1]) if case["weight"] is None else case["weight"]
    denominator = weight[np.where(kept, target, 0)][kept].sum()
    if denominator > 0:
        mean = call(F.cross_entropy, {**case, "reduction": "mean"}, scores).item()
        np.testing.assert_allclose(mean, total / denominator, rtol=1e-10)


def test_cross_entropy_value_by_hand(device):
    logits = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]])
    target = np.array([0, 2])
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    loss = F.cross_entropy(minidl.tensor(logits, device=device), minidl.tensor(target, device=device))
    np.testing.assert_allclose(to_numpy(loss), -(log_probs[0, 0] + log_probs[1, 2]) / 2, rtol=1e-12)


def test_all_targets_ignored():
    """reduction='mean' over no targets is 0/0 = nan, as in PyTorch; 'sum' is 0; the gradient is 0."""
    logits = minidl.randn(2, 3, 4, 4, requires_grad=True)
    target = minidl.full((2, 4, 4), -1, dtype=minidl.int64)
    mean = F.cross_entropy(logits, target, ignore_index=-1)
    assert np.isnan(mean.item())
    assert F.cross_entropy(logits, target, ignore_index=-1, reduction="sum").item() == 0
    mean.backward()
    assert (logits.grad.numpy() == 0).all()


def test_huge_logits_are_stable():
    logits = minidl.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], requires_grad=True)
    loss = F.cross_entropy(logits, minidl.tensor([1, 2]), reduction="none")
    np.testing.assert_allclose(loss.detach().numpy(), [2e4, np.log(2)], rtol=1e-6)
    loss.sum().backward()
    np.testing.assert_allclose(logits.grad.numpy(), [[1, -1, 0], [0, 0.5, -0.5]], atol=1e-6)


def test_backward_through_a_retained_graph_twice():
    """The fused op turns its saved buffer into the gradient; a second backward recomputes it."""
    logits = minidl.randn(2, 4, 3, 3, dtype=minidl.float64, requires_grad=True)
    target = minidl.randint(0, 4, (2, 3, 3))
    loss = F.cross_entropy(logits, target, label_smoothing=0.1)
    loss.backward(retain_graph=True)
    first = logits.grad.numpy().copy()
    logits.grad = None
    loss.backward()
    np.testing.assert_allclose(logits.grad.numpy(), first, rtol=1e-12)


def test_unbatched_input():
    logits = minidl.tensor([1.0, 2.0, 3.0], dtype=minidl.float64)
    expected = np.log(np.exp([1.0, 2.0, 3.0]).sum()) - 2.0
    assert abs(F.cross_entropy(logits, minidl.tensor(1)).item() - expected) < 1e-12
    assert F.cross_entropy(logits, minidl.tensor(1), reduction="none").shape == ()


def test_float32_stays_float32(device):
    logits = minidl.randn(2, 5, 3, 3, device=device, requires_grad=True)
    target = minidl.randint(0, 5, (2, 3, 3), device=device)
    weight = minidl.ones(5, dtype=minidl.float64, device=device)  # must not widen the math
    loss = F.cross_entropy(logits, target, weight=weight)
    loss.backward()
    assert loss.dtype == minidl.float32 and logits.grad.dtype == minidl.float32


def test_weight_gradient_is_not_implemented():
    weight = minidl.ones(3, dtype=minidl.float64, requires_grad=True)
    loss = F.cross_entropy(minidl.randn(4, 3, dtype=minidl.float64), minidl.tensor([0, 1, 2, 0]), weight=weight)
    with pytest.raises(RuntimeError, match="derivative for 'weight' is not implemented"):
        loss.backward()


# --------------------------------------------------------------------------- PyTorch parity
def _assert_backward_matches(loss, loss_t, inputs, rng, dtype, tol):
    """Backpropagate the same random upstream gradient through both losses; compare the
    losses and each (minidl, torch) input pair's gradient."""
    upstream = rng.normal(size=tuple(loss_t.shape)).astype(dtype)
    loss.backward(minidl.tensor(upstream))
    loss_t.backward(torch.tensor(upstream))
    assert_close(loss, loss_t, rtol=tol, atol=tol)
    for ours, theirs in inputs:
        assert_close(ours.grad, theirs.grad, rtol=tol, atol=tol)


def both(values, dtype, requires_grad=False):
    return minidl.tensor(values, dtype=dtype, requires_grad=requires_grad), torch.tensor(values, requires_grad=requires_grad)


@needs_torch
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-10), ("float32", 1e-5)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape, smoothing", [((2, 5, 6, 7), 0.0), ((2, 5, 6, 7), 0.2), ((9, 5), 0.0), ((3, 5, 8), 0.1)])
def test_cross_entropy_matches_torch(shape, smoothing, reduction, dtype, tol):
    rng = np.random.default_rng(4)
    logits = (rng.normal(size=shape) * 3).astype(dtype)
    target = rng.integers(-1, shape[1], (shape[0],) + shape[2:])  # -1: ignored
    weight = rng.uniform(0.2, 2.0, shape[1]).astype(dtype)
    x, xt = both(logits, dtype, requires_grad=True)
    (t, tt), (w, wt) = both(target, None), both(weight, dtype)
    loss = F.cross_entropy(x, t, weight=w, ignore_index=-1, reduction=reduction, label_smoothing=smoothing)
    loss_t = torch.nn.functional.cross_entropy(xt, tt, weight=wt, ignore_index=-1, reduction=reduction, label_smoothing=smoothing)
    _assert_backward_matches(loss, loss_t, [(x, xt)], rng, dtype, tol)


@needs_torch
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-10), ("float32", 1e-5)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss_matches_torch(reduction, dtype, tol):
    rng = np.random.default_rng(5)
    log_probs = np.log(rng.dirichlet(np.ones(4), (3, 5, 5)).transpose(0, 3, 1, 2)).astype(dtype)
    log_probs = np.ascontiguousarray(log_probs)  # torch's nll_loss2d wants contiguous input
    target = rng.integers(-1, 4, (3, 5, 5))
    weight = rng.uniform(0.2, 2.0, 4).astype(dtype)
    x, xt = both(log_probs, dtype, requires_grad=True)
    loss = F.nll_loss(x, minidl.tensor(target), minidl.tensor(weight), ignore_index=-1, reduction=reduction)
    loss_t = torch.nn.functional.nll_loss(xt, torch.tensor(target), torch.tensor(weight), ignore_index=-1, reduction=reduction)
    _assert_backward_matches(loss, loss_t, [(x, xt)], rng, dtype, tol)


@needs_torch
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-10), ("float32", 1e-5)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_bce_with_logits_matches_torch(weighted, reduction, dtype, tol):
    rng = np.random.default_rng(6)
    (x, xt), (y, yt) = both((rng.normal(size=(4, 3)) * 4).astype(dtype), dtype, True), both(rng.uniform(0, 1, (4, 3)).astype(dtype), dtype, True)
    extra, extra_t = {}, {}
    if weighted:
        (w, wt), (pw, pwt) = both(rng.uniform(0.5, 2, (4, 1)).astype(dtype), dtype), both(rng.uniform(0.5, 3, 3).astype(dtype), dtype)
        extra, extra_t = dict(weight=w, pos_weight=pw), dict(weight=wt, pos_weight=pwt)
    loss = F.binary_cross_entropy_with_logits(x, y, reduction=reduction, **extra)
    loss_t = torch.nn.functional.binary_cross_entropy_with_logits(xt, yt, reduction=reduction, **extra_t)
    _assert_backward_matches(loss, loss_t, [(x, xt), (y, yt)], rng, dtype, tol)


@needs_torch
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-10), ("float32", 1e-5)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_loss_matches_torch(reduction, dtype, tol):
    rng = np.random.default_rng(7)
    (x, xt), (y, yt) = both(rng.normal(size=(3, 4, 2)).astype(dtype), dtype, True), both(rng.normal(size=(3, 4, 2)).astype(dtype), dtype, True)
    loss, loss_t = F.mse_loss(x, y, reduction), torch.nn.functional.mse_loss(xt, yt, reduction=reduction)
    _assert_backward_matches(loss, loss_t, [(x, xt), (y, yt)], rng, dtype, tol)


# --------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("fn", [F.cross_entropy, F.nll_loss])
@pytest.mark.parametrize("bad", [3, 7, -1, -5])
def test_out_of_range_target_names_the_value(fn, bad):
    target = minidl.tensor([[0, 1], [2, bad]])
    with pytest.raises(ValueError, match=rf"target value {bad} is out of bounds.*\[0, 3\).*3 classes"):
        fn(minidl.randn(2, 3, 2), target)


def test_ignore_index_may_lie_outside_the_classes():
    F.cross_entropy(minidl.randn(2, 3, 2), minidl.tensor([[0, 1], [2, 255]]), ignore_index=255)


@pytest.mark.parametrize("fn", [F.cross_entropy, F.nll_loss])
@pytest.mark.parametrize("scores_shape, target_shape", [((4, 3), (5,)), ((2, 3, 4, 4), (2, 4)), ((2, 3, 4, 4), (2, 3, 4, 4)), ((4, 3), (4, 1))])
def test_target_shape_mismatch_names_both_shapes(fn, scores_shape, target_shape):
    with pytest.raises(ValueError, match=rf"target of shape {re_shape(target_shape)}.*input of shape {re_shape(scores_shape)}"):
        fn(minidl.randn(*scores_shape), minidl.zeros(*target_shape, dtype=minidl.int64))


def re_shape(shape):
    return "\\(" + ", ".join(map(str, shape)) + ",?\\)"


@pytest.mark.parametrize("fn", [F.cross_entropy, F.nll_loss])
def test_bad_dtypes_weights_and_reductions(fn):
    with pytest.raises(TypeError, match="int64.*float32"):
        fn(minidl.randn(4, 3), minidl.zeros(4))
    with pytest.raises(TypeError, match="floating point"):
        fn(minidl.tensor([[1, 2]]), minidl.tensor([0]))
    with pytest.raises(ValueError, match=r"weight should have shape \(3,\)"):
        fn(minidl.randn(4, 3), minidl.tensor([0, 1, 2, 0]), weight=minidl.ones(4))
    with pytest.raises(ValueError, match="reduction must be one of"):
        fn(minidl.randn(4, 3), minidl.tensor([0, 1, 2, 0]), reduction="avg")


def test_bad_label_smoothing():
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(minidl.randn(4, 3), minidl.tensor([0, 1, 2, 0]), label_smoothing=1.5)


@pytest.mark.parametrize("fn", [F.mse_loss, F.binary_cross_entropy_with_logits])
def test_elementwise_losses_need_equal_shapes(fn):
    with pytest.raises(ValueError, match=r"target of shape \(4, 1\).*input of shape \(4, 3\)"):
        fn(minidl.randn(4, 3), minidl.randn(4, 1))


def test_a_leaf_input_gets_its_gradient_without_a_copy(monkeypatch):
    """cross_entropy's gradient is the forward's exp buffer, made in the logits' shape: it reaches the
    leaf as an array of its own, which the engine keeps without a copy."""
    from minidl.autograd import engine
    arrived = []
    store = engine._accumulate_into_leaf
    monkeypatch.setattr(engine, "_accumulate_into_leaf", lambda leaf, grad, handed_out: (
        arrived.append(grad.base is None), store(leaf, grad, handed_out)))
    logits = minidl.randn(2, 5, 3, 4, requires_grad=True)
    F.cross_entropy(logits, minidl.tensor(np.random.default_rng(0).integers(0, 5, (2, 3, 4)))).backward()
    assert arrived == [True], "the gradient reached the leaf as a view: the engine copied it"
