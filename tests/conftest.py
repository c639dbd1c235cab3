"""Shared test set-up: hypothesis profiles and the device parameter.

Hypothesis profiles (choose with MINIDL_HYPOTHESIS_PROFILE):
- ``ci`` (default): few examples per property, so the suite stays quick;
- ``thorough``: many more examples, for a deeper search before a release.
"""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import minidl

settings.register_profile(
    "ci", max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.register_profile(
    "thorough", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.load_profile(os.environ.get("MINIDL_HYPOTHESIS_PROFILE", "ci"))

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not minidl.cuda_is_available(), reason="CuPy or a GPU is missing")),
]


@pytest.fixture(params=DEVICES)
def device(request):
    """Run a test once per device; the cuda case skips where CuPy or a GPU is missing."""
    return request.param


@pytest.fixture(autouse=True)
def _seed():
    minidl.manual_seed(0)
    np.random.seed(0)
