"""A strict stand-in for CuPy, so that minidl's GPU path runs in CI on machines without a GPU.

Never a backend for users: it lives under tests/, computes with NumPy in host memory
and is as slow as NumPy. What it is for is *strictness*: its arrays are of their own
type (not ``numpy.ndarray``) and follow CuPy's rules (see ``array.py``), so a host-only
NumPy call on a device array, host and device arrays mixed in one operation, or a
device array silently turned into a NumPy one raises here as it would on a GPU.

    with strict_device.installed():
        x = minidl.randn(2, 3).to("cuda")   # a stand-in device array
        np.asarray(x._array)                # TypeError, as with CuPy

``installed()`` puts the stand-in into ``sys.modules`` as ``cupy`` and ``cupyx`` (and
their submodules) and restores what was there on exit. minidl's backend seam
(minidl/backend.py) finds CuPy only through ``import cupy`` and ``sys.modules["cupy"]``,
so nothing in the library knows about the stand-in. tests/conftest.py installs it for
the ``cuda`` case of the ``device`` fixture when no real GPU is usable.

What it proves and what it cannot: see tests/strict_device/README.md.
"""
from __future__ import annotations

import contextlib
import sys

from .array import Pool, ndarray
from .surface import MODULES, cupy, cupyx

__all__ = ["installed", "cupy", "cupyx", "ndarray", "Pool"]


@contextlib.contextmanager
def installed():
    """Make ``import cupy`` / ``import cupyx`` give the stand-in inside the block."""
    saved = {name: sys.modules.get(name) for name in MODULES}
    sys.modules.update(MODULES)
    try:
        yield cupy
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
