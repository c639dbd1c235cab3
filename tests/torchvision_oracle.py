"""torchvision as the parity oracle, where torch and torchvision are installed.

The torchvision wheel on this project's registry is built for CUDA; its C++ operators do not
load with the CPU torch, and importing it fails when it registers their "fake" (shape-only)
implementations. The model definitions are pure Python and need none of those operators, so
the ``torchvision`` fixture imports it with ``torch.library.register_fake`` replaced by a no-op
decorator, then puts the real one back. (Test-only: the library never imports torch.)
"""
import pytest

from tests.helpers import torch


def _import_torchvision():
    if torch is None:
        return None
    real = torch.library.register_fake
    torch.library.register_fake = lambda *args, **kwargs: (lambda function: function)
    try:
        import torchvision
        import torchvision.models.segmentation  # noqa: F401
    except Exception:  # absent, or a build this trick does not fix
        return None
    finally:
        torch.library.register_fake = real
    return torchvision


@pytest.fixture(scope="module")
def torchvision():
    """The torchvision module; the test skips where torch or torchvision is missing."""
    module = _import_torchvision()
    if module is None:
        pytest.skip("torch and torchvision (torchvision==0.28.0 beside the CPU torch) are not installed")
    return module
