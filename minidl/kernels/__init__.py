"""The seam between the lesson and the speed: ``minidl.set_kernels("reference" | "fast")``.

Every differentiable op of minidl is written once as the textbook writes it:
its ``Function`` in ``minidl/nn/functional/`` or ``minidl/ops/``, forward and
backward side by side, whole-batch, no threads and no buffers. That is the
**reference** kernel set, the one to read and to step through in a debugger.

A few ops also have a **fast** CPU kernel in ``minidl/kernels/cpu/``: a
subclass of the reference ``Function`` that computes the same numbers
(the tests hold every fast kernel against its reference) in less time, with
cache-sized pieces, threads and reused buffers. ``Function.apply`` asks
``implementation`` below which class to run, so the switch is this one place:

- ``minidl.set_kernels("reference")``, or ``MINIDL_KERNELS=reference`` in the
  environment before ``import minidl``, runs the textbook code everywhere;
- ``"fast"`` (the default) runs a fast kernel where one is registered and
  the data is a NumPy array. A GPU array always takes the reference path:
  CuPy's own kernels and cuBLAS are the GPU's fast path.

A fast kernel registers itself with ``@fast_kernel_for(ReferenceFunction)``.
Most replace only the heavy steps that the reference names as class
attributes (``Conv2d.weight_times_columns``, ``MaxPool2d.scatter_to_planes``),
so forward and backward read the same in both sets.
"""
from __future__ import annotations

import contextlib
import os

import numpy as np

__all__ = ["set_kernels", "get_kernels", "use_kernels", "fast_kernel_for", "implementation", "fast_kernels"]

KERNEL_SETS = ("reference", "fast")

_fast_kernels = {}  # reference Function class -> its fast CPU subclass


def _from_environment():
    name = os.environ.get("MINIDL_KERNELS", "fast")
    if name not in KERNEL_SETS:
        raise ValueError(f"MINIDL_KERNELS must be one of {KERNEL_SETS}, got {name!r}")
    return name


_selected = _from_environment()


def set_kernels(name):
    """Choose the kernel set for the whole process: ``"reference"`` (the textbook code) or ``"fast"``."""
    global _selected
    if name not in KERNEL_SETS:
        raise ValueError(f"set_kernels: expected one of {KERNEL_SETS}, got {name!r}")
    _selected = name


def get_kernels():
    """The kernel set in use: ``"reference"`` or ``"fast"``."""
    return _selected


@contextlib.contextmanager
def use_kernels(name):
    """``with minidl.kernels.use_kernels("reference"):`` -- the kernel set for a block, then back."""
    previous = get_kernels()
    set_kernels(name)
    try:
        yield
    finally:
        set_kernels(previous)


def fast_kernel_for(reference):
    """Class decorator: register a fast CPU subclass of the ``Function`` ``reference``.

    The fast class must take the same arguments and return the same values
    as the reference (to float rounding); its gradient node keeps the
    reference's name (``Conv2dBackward``), so nothing a user sees changes.
    """

    def register(fast):
        if not issubclass(fast, reference):
            raise TypeError(f"{fast.__name__} must subclass {reference.__name__}, the op it replaces")
        fast.replaces = reference
        _fast_kernels[reference] = fast
        return fast

    return register


def fast_kernels():
    """{reference Function: fast subclass} for every registered fast kernel (the tests walk it)."""
    return dict(_fast_kernels)


def implementation(function, array):
    """The Function class that runs the op ``function`` on ``array`` (its first tensor's data).

    The fast CPU kernel when the fast set is selected, one is registered and
    ``array`` is a NumPy array; otherwise ``function`` itself.
    """
    if _selected == "fast" and type(array) is np.ndarray:
        return _fast_kernels.get(function, function)
    return function
