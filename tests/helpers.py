"""Small helpers shared by the tests: the optional torch oracle, array comparison, a tiny MSRC-v2 folder."""
import numpy as np
import pytest
from PIL import Image

from minidl.data import decode_mask

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


def write_msrc(root, rng, train=4, val=2, size=(24, 32)):
    """A tiny MSRC-v2 folder: random photographs, random colour-coded labels (some void), split files."""
    (root / "Images").mkdir(parents=True)
    (root / "GroundTruth").mkdir()
    names = [f"{i}_1_s" for i in range(train + val)]
    for name in names:
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / "Images" / f"{name}.png")
        labels = rng.integers(-1, 23, size)
        Image.fromarray(decode_mask(labels)).save(root / "GroundTruth" / f"{name}_GT.png")
    (root / "train.txt").write_text("\n".join(names[:train]) + "\n")
    (root / "val.txt").write_text("\n".join(names[train:]) + "\n")
    return root
