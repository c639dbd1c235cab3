"""The autograd engine: graph shapes, accumulation, release, grad modes, error messages."""
import re

import numpy as np
import pytest
from hypothesis import given

import minidl
from minidl.testing import tensor_pairs, tensors
from tests.broken_op import op_whose_backward_returns


def test_diamond_sums_both_paths():
    x = minidl.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    z = y * y + y  # y feeds two ops: dz/dx = (2y + 1) * 3
    z.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), (2 * np.array([3.0, 6.0]) + 1) * 3)


def test_shared_leaf_accumulates_over_uses_and_over_calls():
    w = minidl.tensor(2.0, requires_grad=True)
    (w * w * w).backward()  # d(w^3) = 3 w^2 = 12
    assert w.grad.item() == 12.0
    (w * 5).backward()  # a second backward adds into .grad
    assert w.grad.item() == 17.0


def test_deep_chain_does_not_recurse():
    x = minidl.tensor(1.5, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y + 1.0
    y.backward()
    assert x.grad.item() == 1.0


def test_graph_is_released_after_backward():
    x = minidl.tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()


def test_retain_graph_allows_a_second_backward():
    x = minidl.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 8.0])


def test_saved_arrays_are_freed_after_backward():
    x = minidl.tensor(np.ones(3), requires_grad=True)
    y = x.exp()
    node = y.grad_fn
    assert node.saved_tensors[1] is not None  # exp keeps its output
    y.sum().backward()
    assert not hasattr(node, "saved_tensors") and node.released


def test_no_grad_records_nothing_as_context_and_decorator():
    x = minidl.tensor([1.0], requires_grad=True)
    with minidl.no_grad():
        y = x * 2
    assert not y.requires_grad and y.grad_fn is None

    @minidl.no_grad()
    def double(t):
        return t * 2

    assert double(x).grad_fn is None
    assert minidl.is_grad_enabled()
    with minidl.no_grad():
        with minidl.enable_grad():
            assert (x * 2).requires_grad


def test_set_grad_enabled_restores():
    with minidl.set_grad_enabled(False):
        assert not minidl.is_grad_enabled()
    assert minidl.is_grad_enabled()


def test_detach_stops_gradient():
    x = minidl.tensor([1.0, 2.0], requires_grad=True)
    y = x * x.detach()  # d/dx = x (the detached factor is a constant)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 2.0])


@given(tensors(min_dims=1, max_dims=3))
def test_detached_data_shares_values_but_not_history(x):
    d = x.data
    assert d.grad_fn is None and not d.requires_grad
    assert np.shares_memory(d.numpy(), x.detach().numpy())


@given(tensor_pairs(min_dims=0, max_dims=3))
def test_broadcast_then_reduce_gradient_is_the_summed_gradient(pair):
    """d/da sum(a + b) is the number of times each element of a was broadcast."""
    a, b = pair
    (a + b).sum().backward()
    out_shape = np.broadcast_shapes(a.shape, b.shape)
    copies = int(np.prod(out_shape)) // max(a.numel(), 1)
    np.testing.assert_allclose(a.grad.numpy(), np.full(a.shape, copies))


def test_non_scalar_backward_needs_gradient():
    x = minidl.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar outputs"):
        (x * 2).backward()
    (x * 2).backward(minidl.tensor([1.0, 0.5]))
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 1.0])


def test_backward_of_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        minidl.tensor([1.0]).sum().backward()


def test_requires_grad_rules():
    with pytest.raises(RuntimeError, match="floating point"):
        minidl.tensor([1, 2], requires_grad=True)
    x = minidl.tensor([1.0], requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match="leaf"):
        y.requires_grad_(False)
    z = minidl.tensor([1.0]).requires_grad_()
    assert z.requires_grad and z.is_leaf


def test_inplace_on_leaf_requiring_grad_is_refused_outside_no_grad():
    w = minidl.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="in-place"):
        w.add_(1.0)
    with minidl.no_grad():
        w.add_(1.0)
    assert w.item() == 2.0


def test_retain_grad_keeps_intermediate_gradient():
    x = minidl.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    y.retain_grad()
    (y * y).sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), [6.0, 12.0])
    np.testing.assert_allclose(x.grad.numpy(), [18.0, 36.0])


def test_needs_input_grad_lets_an_op_skip_work():
    seen = []

    class Spy(minidl.Function):
        @staticmethod
        def forward(ctx, a, b):
            return a * b

        @staticmethod
        def backward(ctx, grad):
            seen.append(ctx.needs_input_grad)
            return None, grad

    frozen = minidl.tensor([1.0, 2.0])
    trained = minidl.tensor([3.0, 4.0], requires_grad=True)
    Spy.apply(frozen, trained).sum().backward()
    assert seen == [(False, True)]
    np.testing.assert_allclose(trained.grad.numpy(), [1.0, 1.0])


def test_branch_without_gradient_does_not_block_the_rest():
    """A node whose output gets no gradient (argmax path) must not stall its inputs."""
    x = minidl.tensor([1.0, 3.0, 2.0], requires_grad=True)
    values, _ = minidl.max(x * 2, 0)
    (values + (x * 1.0).sum()).backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 3.0, 1.0])


def test_leaf_gradients_do_not_alias_each_other():
    a = minidl.tensor([1.0], requires_grad=True)
    b = minidl.tensor([1.0], requires_grad=True)
    (a + b).sum().backward()
    with minidl.no_grad():
        a.grad.mul_(0)
    assert b.grad.item() == 1.0


def test_float32_gradients_stay_float32_when_mixed_with_float64():
    w = minidl.tensor([1.0, 2.0], requires_grad=True)
    (w * minidl.tensor(np.array([1.0, 1.0]))).sum().backward()  # float32 * float64 -> float64
    assert w.grad.dtype == minidl.float32


# --------------------------------------------------------------------------- gradients checked where they are made
def as_leaf(x):
    return x


def after_matmul(x):
    """x goes through a matmul first: the gradient of the broken op reaches MatmulBackward, not a leaf."""
    return x @ minidl.eye(4, dtype=minidl.float64)


@pytest.mark.parametrize("feed", [as_leaf, after_matmul], ids=["leaf", "inside a graph"])
@pytest.mark.parametrize("wrong, got", [
    pytest.param(lambda g: g.sum(axis=0), "[4]", id="summed over axis 0"),  # the case
    pytest.param(lambda g: g[:1], "[1, 4]", id="one row"),  # (1, 4) broadcasts to (3, 4): the wrong way round
    pytest.param(lambda g: g.T.copy(), "[4, 3]", id="transposed"),
    pytest.param(lambda g: g.sum(), "[]", id="summed to a scalar"),
])
def test_a_wrong_shaped_gradient_names_the_function_that_returned_it(feed, wrong, got):
    x = minidl.randn(3, 4, dtype=minidl.float64, requires_grad=True)
    y = op_whose_backward_returns(wrong)(feed(x))
    message = rf"Function BrokenBackward returned an invalid gradient at index 0 - got {re.escape(got)} but expected shape compatible with \[3, 4\]"
    with pytest.raises(RuntimeError, match=message):
        y.sum().backward()
    assert x.grad is None  # nothing wrong reached the leaf


@pytest.mark.parametrize("feed", [as_leaf, after_matmul], ids=["leaf", "inside a graph"])
def test_a_gradient_the_input_broadcasts_to_is_summed_down_to_it(feed):
    """PyTorch's rule: a (2, 3, 4) gradient for a (3, 4) input is accepted and summed over the new axis."""
    x = minidl.randn(3, 4, dtype=minidl.float64, requires_grad=True)
    y = op_whose_backward_returns(lambda g: np.broadcast_to(g, (2, 3, 4)))(feed(x))
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full((3, 4), 2.0))


@pytest.mark.parametrize("wrong", [lambda g: g.astype(np.float32), lambda g: g.astype(np.int64), lambda g: g > 0],
                         ids=["float32", "int64", "bool"])
def test_a_real_gradient_of_another_dtype_is_cast_to_the_input_dtype(wrong):
    x = minidl.randn(3, 4, dtype=minidl.float64, requires_grad=True)
    op_whose_backward_returns(wrong)(x * 1).sum().backward()
    assert x.grad.dtype == minidl.float64
    np.testing.assert_array_equal(x.grad.numpy(), np.ones((3, 4)))


def test_a_complex_gradient_for_a_real_input_is_refused():
    x = minidl.randn(3, 4, dtype=minidl.float64, requires_grad=True)
    y = op_whose_backward_returns(lambda g: g.astype(np.complex128))(x)
    with pytest.raises(RuntimeError, match=r"BrokenBackward returned an invalid gradient at index 0 - expected dtype float64 but got complex128"):
        y.sum().backward()


@pytest.mark.parametrize("wrong, named", [
    pytest.param(lambda g: 1.0, "float", id="float"),
    pytest.param(lambda g: g.tolist(), "list", id="list"),
    pytest.param(lambda g: minidl.tensor(g), r"Tensor \(backward takes and returns raw arrays, not Tensors\)", id="Tensor"),
])
def test_a_gradient_that_is_not_an_array_is_refused(wrong, named):
    x = minidl.randn(3, 4, dtype=minidl.float64, requires_grad=True)
    y = op_whose_backward_returns(wrong)(x)
    with pytest.raises(RuntimeError, match=rf"BrokenBackward returned an invalid gradient at index 0 - expected an array or None, got {named}"):
        y.sum().backward()


def test_the_index_is_the_forward_argument_whose_gradient_is_wrong():
    class Broken(minidl.Function):
        @staticmethod
        def forward(ctx, a, scale, b):
            return a * scale + b

        @staticmethod
        def backward(ctx, grad):
            return grad * 2.0, None, grad.sum(axis=1)  # b is (4,): its gradient is the sum over axis 0, not 1

    a = minidl.randn(3, 4, dtype=minidl.float64, requires_grad=True)
    b = minidl.randn(4, dtype=minidl.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"index 2 - got \[3\] but expected shape compatible with \[4\]"):
        Broken.apply(a, 2.0, b).sum().backward()


def test_a_0d_result_that_numpy_returns_as_a_scalar_is_a_gradient():
    """grad * x of two 0-d arrays is a NumPy scalar, not an array: the engine accepts it."""
    x = minidl.tensor(3.0, dtype=minidl.float64, requires_grad=True)
    op_whose_backward_returns(lambda g: g * np.asarray(2.0))(x).backward()
    assert x.grad.item() == 2.0 and x.grad.shape == ()


def test_a_wrong_number_of_gradients_is_named():
    x = minidl.randn(3, dtype=minidl.float64, requires_grad=True)
    y = op_whose_backward_returns(lambda g: (g, g))(x)
    with pytest.raises(RuntimeError, match=r"Function BrokenBackward returned an incorrect number of gradients \(expected 1, one per forward argument, got 2\)"):
        y.sum().backward()
