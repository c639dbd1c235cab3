"""Small helpers shared by the tests: the optional torch oracle and array comparison."""
import numpy as np
import pytest

try:
    import torch
except ImportError:  # parity tests skip cleanly where torch is absent
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch (CPU build) is not installed")


def to_numpy(value):
    """A NumPy array from a minidl or torch tensor (or an array)."""
    if hasattr(value, "detach"):
        value = value.detach()
    if hasattr(value, "cpu"):
        value = value.cpu()
    if hasattr(value, "numpy"):
        return np.asarray(value.numpy())
    return np.asarray(value)


def assert_close(actual, expected, rtol=1e-7, atol=1e-10):
    np.testing.assert_allclose(to_numpy(actual), to_numpy(expected), rtol=rtol, atol=atol)
