"""Tensor construction, dtype rules, devices, conversions and error messages."""
import numpy as np
import pytest

import minidl


def test_dtype_rules_follow_pytorch():
    assert minidl.tensor([1.0, 2.0]).dtype == minidl.float32
    assert minidl.tensor(3.5).dtype == minidl.float32
    assert minidl.tensor([1, 2]).dtype == minidl.int64
    assert minidl.tensor([True, False]).dtype == minidl.bool
    assert minidl.tensor(np.zeros(3)).dtype == minidl.float64  # an ndarray keeps its dtype
    assert minidl.tensor(np.zeros(3, np.float32)).dtype == minidl.float32
    assert minidl.tensor([1, 2], dtype=minidl.float64).dtype == minidl.float64


def test_python_scalars_never_widen_a_tensor():
    x = minidl.tensor([1.0, 2.0])
    assert (x * 2.5).dtype == minidl.float32
    assert (2 + x).dtype == minidl.float32
    assert (minidl.tensor([1, 2]) * 2).dtype == minidl.int64
    assert (minidl.tensor([1, 2]) * 2.5).dtype == minidl.float32  # int with a float scalar -> default float
    assert (minidl.tensor([1, 2]) / 2).dtype == minidl.float32  # true division
    assert (minidl.tensor([True]) + 1).dtype == minidl.int64


def test_tensor_promotion_by_category_then_width():
    f32, f64, i64 = minidl.tensor([1.0]), minidl.tensor(np.ones(1)), minidl.tensor([1])
    assert (f32 + f64).dtype == minidl.float64
    assert (i64 + f32).dtype == minidl.float32  # NumPy would say float64; PyTorch says float32
    assert (i64 + minidl.tensor([True])).dtype == minidl.int64


def test_matmul_of_mixed_dtypes_names_both():
    with pytest.raises(RuntimeError, match=r"float32 \(2, 2\) and float64 \(2, 2\)"):
        minidl.ones(2, 2) @ minidl.ones(2, 2, dtype=minidl.float64)


def test_properties_and_conversions():
    x = minidl.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    assert x.shape == (2, 2) and x.ndim == 2 and x.numel() == 4 and x.size(1) == 2
    assert x.device == "cpu" and str(x.device) == "cpu" and x.is_leaf
    assert x.sum().item() == 10.0
    with pytest.raises(RuntimeError, match="detach"):
        x.numpy()
    assert isinstance(x.detach().numpy(), np.ndarray)
    assert x.to(minidl.float64).dtype == minidl.float64
    assert x.cpu().device == "cpu"
    assert x.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(ValueError, match="one element"):
        x.item()


def test_repr_looks_like_pytorch():
    assert repr(minidl.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert "requires_grad=True" in repr(minidl.tensor([1.0], requires_grad=True))
    assert "grad_fn=<MulBackward>" in repr(minidl.tensor([1.0], requires_grad=True) * 2)
    assert "dtype=minidl.float64" in repr(minidl.tensor(np.ones(2)))


def test_creation_functions():
    assert minidl.zeros(2, 3).shape == (2, 3) and minidl.zeros((2, 3)).dtype == minidl.float32
    assert minidl.ones(4, dtype=minidl.int64).sum().item() == 4
    assert minidl.full((2,), 7).dtype == minidl.int64 and minidl.full((2,), 7.0).dtype == minidl.float32
    assert minidl.arange(5).tolist() == [0, 1, 2, 3, 4] and minidl.arange(0, 1, 0.5).dtype == minidl.float32
    assert minidl.zeros_like(minidl.ones(2, dtype=minidl.float64)).dtype == minidl.float64
    assert minidl.randn(3, 4).dtype == minidl.float32
    r = minidl.randint(0, 5, (100,))
    assert r.dtype == minidl.int64 and 0 <= r.min().item() and r.max().item() < 5
    with pytest.raises(ValueError, match="negative dimension"):
        minidl.zeros(-1)


def test_manual_seed_makes_random_numbers_repeat():
    minidl.manual_seed(7)
    a = minidl.randn(5).numpy().copy()
    minidl.manual_seed(7)
    assert np.array_equal(a, minidl.randn(5).numpy())
    assert not np.array_equal(a, minidl.randn(5).numpy())


def test_cuda_without_cupy_or_gpu_says_how_to_install():
    if minidl.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="CuPy"):
        minidl.zeros(2, device="cuda")
    with pytest.raises(RuntimeError, match="pip install"):
        minidl.tensor([1.0]).to("cuda")


def test_bad_device_strings():
    with pytest.raises(ValueError, match="unknown device"):
        minidl.zeros(1, device="tpu")
    with pytest.raises(ValueError, match="index"):
        minidl.device("cuda:x")


def test_indexing_forms():
    x = minidl.arange(12).reshape(3, 4)
    assert x[1].tolist() == [4, 5, 6, 7]
    assert x[:, 1:3].shape == (3, 2)
    assert x[minidl.tensor([0, 2])].shape == (2, 4)
    assert x[x > 5].tolist() == [6, 7, 8, 9, 10, 11]
    with pytest.raises(IndexError, match=r"shape \(3, 4\)"):
        x[5]


def test_reshape_and_shape_errors_name_the_shapes():
    x = minidl.zeros(2, 3)
    with pytest.raises(RuntimeError, match=r"invalid for input of size 6"):
        x.reshape(4, 2)
    with pytest.raises(IndexError, match="Dimension out of range"):
        x.sum(2)
    with pytest.raises(ValueError, match="cat"):
        minidl.cat([minidl.zeros(2, 3), minidl.zeros(2, 4)], 0)
    with pytest.raises(RuntimeError, match=r"cannot be multiplied"):
        minidl.zeros(2, 3) @ minidl.zeros(2, 3)


def test_comparisons_give_bool_tensors_without_gradient():
    x = minidl.tensor([1.0, 2.0, 3.0], requires_grad=True)
    mask = x >= 2
    assert mask.dtype == minidl.bool and not mask.requires_grad
    assert mask.tolist() == [False, True, True]
    assert (x == x).all().item()


def test_seed_snippet_evaluate_model_runs_with_minidl():
    """The tutorial's accuracy line, with torch replaced by minidl."""
    outputs = minidl.tensor(np.random.default_rng(0).standard_normal((2, 23, 4, 4)).astype(np.float32))
    targets = minidl.tensor(np.random.default_rng(1).integers(-1, 23, (2, 4, 4)))
    _, preds = minidl.max(outputs, 1)
    targets_mask = targets >= 0
    score = np.mean((preds == targets)[targets_mask].data.cpu().numpy())
    expected = (outputs.numpy().argmax(1) == targets.numpy())[targets.numpy() >= 0].mean()
    assert score == pytest.approx(expected)
