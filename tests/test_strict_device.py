"""The strict CuPy stand-in (tests/strict_device) refuses what CuPy refuses, so the cuda tests can fail.

Each refusal below is a leak the stand-in must catch for the cuda tests to prove anything;
each allowance is something CuPy does allow, which the stand-in must not flag.
"""
import sys

import numpy as np
import pytest

import minidl
from tests import strict_device
from tests.strict_device import cupy, cupyx

from .broken_op import op_whose_backward_returns


@pytest.fixture
def device_array():
    with strict_device.installed():
        yield cupy.arange(6, dtype=np.float32).reshape(2, 3)


# --------------------------------------------------------------------------- refused, as by CuPy
@pytest.mark.parametrize("leak", [
    lambda a: np.asarray(a),                           # implicit copy to the host
    lambda a: np.array(a, dtype=np.float64),
    lambda a: a + np.ones(3, np.float32),              # host and device mixed, either order
    lambda a: np.ones(3, np.float32) * a,
    lambda a: a < np.zeros((2, 3)),
    lambda a: a - np.float64(1.0) * np.ones(1),        # a 0-d host array is still a host array ...
    lambda a: np.concatenate([a, np.zeros((1, 3), np.float32)]),
    lambda a: cupy.exp(np.ones(3)),                    # a device function given host data
    lambda a: cupy.maximum(a, [1.0, 2.0, 3.0]),        # kernels take no lists
    lambda a: np.add.outer(a[0], a[1]),                # ufunc methods: not through __array_ufunc__
    lambda a: np.add.at(a, [0], 1.0),
    lambda a: np.unwrap(a),                            # a NumPy function the stand-in does not claim
    lambda a: np.divide(a, 2.0, where=a > 1),          # where= is NumPy's only
    lambda a: cupy.add(a, 1.0, out=np.empty((2, 3), np.float32)),
    lambda a: [0, 1, 2][a[0, 1]],                      # no __index__: a device scalar is no Python index
    lambda a: a.dot(np.ones(3, np.float32)),
    lambda a: a.sum(axis=0, out=np.empty(3, np.float32)),
])
def test_refuses_host_device_leaks(device_array, leak):
    with pytest.raises(TypeError):
        leak(device_array)


def test_refuses_filling_a_slice_from_a_host_array(device_array):
    with pytest.raises(ValueError, match="non-scalar"):
        device_array[0] = np.zeros(3, np.float32)


def test_scatter_add_has_cudas_atomic_types_only(device_array):
    cupyx.scatter_add(device_array, ([0, 0], [1, 1]), 1.0)
    assert device_array[0, 1].item() == 3.0
    with pytest.raises(TypeError, match="scatter_add only supports"):
        cupyx.scatter_add(cupy.zeros(3, dtype=np.int64), [0], 1)


# --------------------------------------------------------------------------- allowed, as by CuPy
def test_allows_explicit_copies_and_scalars(device_array):
    a = device_array
    host = a.get()
    assert isinstance(host, np.ndarray) and host.tolist() == a.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert float(a[1, 2]) == 5.0 and int(a[0, 1]) == 1 and bool(a[0, 0] == 0) and a.sum().item() == 15.0
    assert repr(a).startswith("array(") and isinstance(cupy.asnumpy(a), np.ndarray)
    assert (a < np.float32(2)).sum().item() == 2 and (a == np.array(1.0)).sum().item() == 1  # NumPy scalars
    source = np.ones(2)
    copied = cupy.asarray(source)
    source[0] = 5
    assert copied.tolist() == [1.0, 1.0]  # a transfer, not a view of host memory
    assert a[np.array([1, 0])][0, 0].item() == 3.0 and a[[0], 1:].shape == (1, 2)  # host indices are copied over
    a[np.array([0]), 0] = np.array([7.0])  # so are values assigned through advanced indexing
    assert a[0, 0].item() == 7.0


def test_numpy_calls_go_to_the_device(device_array):
    a = device_array
    for result in (np.exp(a), np.sum(a), a.max(), np.matmul(a, a.T), a[0, 0], np.where(a > 2, a, 0.0)):
        assert isinstance(result, strict_device.ndarray)  # reductions and elements are 0-d device arrays too
    assert np.may_share_memory(a, a[1:]) and not np.may_share_memory(a, a.copy())
    assert a.astype(np.float32, copy=False) is a and cupy.asarray(a) is a
    owner = a.base  # the arange that a reshapes: views point at the array that owns the memory, as in CuPy
    assert owner is not None and owner.base is None and a[1:].base is owner and a.T.base is owner
    assert a.copy().base is None


def test_memory_hooks_see_allocations_and_frees():
    events = []

    class Hook(cupy.cuda.MemoryHook):
        def malloc_postprocess(self, **kwargs):
            events.append(("malloc", kwargs["mem_size"]))

        def free_postprocess(self, **kwargs):
            events.append(("free", kwargs["mem_size"]))

    with strict_device.installed(), Hook():
        used = cupy.get_default_memory_pool().used_bytes()
        a = cupy.zeros(1000, dtype=np.float32)
        view = a[10:]
        assert cupy.get_default_memory_pool().used_bytes() == used + 4096  # 4000 bytes in 512-byte units
        del a
        assert events == [("malloc", 4096)]  # the view keeps the memory
        del view
    assert events == [("malloc", 4096), ("free", 4096)]


def test_installed_puts_cupy_back_as_it_was(monkeypatch):
    sentinel = object()
    monkeypatch.setitem(sys.modules, "cupy", sentinel)
    monkeypatch.delitem(sys.modules, "cupyx", raising=False)
    with strict_device.installed() as module:
        import cupy as imported

        assert imported is module and minidl.backend.cupy_module() is module
    assert sys.modules["cupy"] is sentinel and "cupyx" not in sys.modules


# --------------------------------------------------------------------------- planted leaks in minidl ops
class HostExp(minidl.Function):
    """exp written for the host only: what the stand-in exists to catch."""

    @staticmethod
    def forward(ctx, x):
        y = np.exp(np.asarray(x))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * y


# y = 2 x, whose backward returns a host array whatever the device
host_gradient = op_whose_backward_returns(lambda grad: np.full(grad.shape, 2.0, grad.dtype))


def test_a_host_only_op_fails_on_the_device_and_works_on_the_cpu(cuda):
    assert HostExp.apply(minidl.zeros(2)).tolist() == [1.0, 1.0]
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array"):
        HostExp.apply(minidl.zeros(2, device=cuda))


@pytest.mark.parametrize("where", ["into a leaf", "into a graph"])
def test_a_host_gradient_for_a_device_input_is_refused_where_it_is_made(cuda, where):
    """The engine checks a gradient's device as PyTorch's does: a host gradient never reaches a device leaf."""
    x = minidl.randn(3, device=cuda, requires_grad=True)
    output = host_gradient(x) if where == "into a leaf" else host_gradient(x * 2)
    with pytest.raises(RuntimeError, match=r"returned an invalid gradient at index 0 - expected a gradient on the "
                                           r"input's device \(cuda\) but got one on cpu"):
        output.sum().backward()
    assert x.grad is None


def test_copy_into_a_device_tensor_from_a_raw_device_array(cuda):
    """Tensor.copy_ called np.asarray on its source: a raw device array raised TypeError."""
    target = minidl.zeros(3, device=cuda)
    target.copy_(cupy.arange(3, dtype=np.float32))
    assert target.tolist() == [0.0, 1.0, 2.0]
    target.copy_(np.ones(3, dtype=np.float32))  # and from the host
    assert target.tolist() == [1.0, 1.0, 1.0]
