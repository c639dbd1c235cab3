"""Shared test set-up: hypothesis profiles and the device parameter.

Hypothesis profiles (choose with MINIDL_HYPOTHESIS_PROFILE):
- ``ci`` (default): few examples per property, so the suite stays quick;
- ``thorough``: many more examples, for a deeper search before a release.

The ``device`` fixture runs a test on "cpu" and on "cuda". What "cuda" is, MINIDL_TEST_CUDA says:
- ``auto`` (default): the real GPU where CuPy sees one, else the strict CuPy stand-in
  (tests/strict_device: CuPy's rules, NumPy's arithmetic, no GPU needed);
- ``gpu``: the real GPU, and a usage error where there is none (benchmarks/gpu_check.sh);
- ``standin``: the stand-in even where a GPU is present;
- ``off``: the cuda cases skip.
"""
import contextlib
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import minidl
from tests import strict_device

settings.register_profile(
    "ci", max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.register_profile(
    "thorough", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.load_profile(os.environ.get("MINIDL_HYPOTHESIS_PROFILE", "ci"))

CUDA_MODES = ("auto", "gpu", "standin", "off")
CUDA_MODE = os.environ.get("MINIDL_TEST_CUDA", "auto")
if CUDA_MODE not in CUDA_MODES:
    raise pytest.UsageError(f"MINIDL_TEST_CUDA must be one of {', '.join(CUDA_MODES)}, got {CUDA_MODE!r}")
if CUDA_MODE == "gpu" and not minidl.cuda_is_available():
    raise pytest.UsageError("MINIDL_TEST_CUDA=gpu but CuPy sees no usable GPU")
USE_STANDIN = CUDA_MODE == "standin" or (CUDA_MODE == "auto" and not minidl.cuda_is_available())

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(CUDA_MODE == "off", reason="MINIDL_TEST_CUDA=off"))]


def _cuda_backend():
    """The context in which "cuda" is what MINIDL_TEST_CUDA asks for: the stand-in installed, or the GPU as it is."""
    return strict_device.installed() if USE_STANDIN else contextlib.nullcontext()


@pytest.fixture(params=DEVICES)
def device(request):
    """Run a test once per device: "cpu", then "cuda" on the GPU or on the strict stand-in (see above)."""
    with _cuda_backend() if request.param == "cuda" else contextlib.nullcontext():
        yield request.param


@pytest.fixture
def cuda():
    """For a test of the GPU path alone: "cuda", on the GPU or on the strict stand-in (see above)."""
    if CUDA_MODE == "off":
        pytest.skip("MINIDL_TEST_CUDA=off")
    with _cuda_backend():
        yield "cuda"


@pytest.fixture(autouse=True)
def _seed():
    minidl.manual_seed(0)
    np.random.seed(0)
