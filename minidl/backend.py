"""The one place that knows NumPy from CuPy.

Every op asks this module for the *array module* (``xp``) that matches its
inputs -- ``numpy`` for arrays on the CPU, ``cupy`` for arrays on an NVIDIA
GPU -- and then writes its math once, as ``xp.exp(x)``, ``xp.matmul(a, b)``.
CuPy mirrors NumPy's API, so the same line runs on both.

CuPy is imported lazily, only when a tensor is first moved to (or created on)
``"cuda"``; importing minidl never needs a GPU.
"""
from __future__ import annotations

import contextlib
import os
import sys

import numpy as np

_INSTALL_HINT = (
    "minidl's GPU backend needs CuPy and an NVIDIA GPU. Install CuPy for your CUDA version, "
    "e.g. `pip install 'minidl[cuda]'` or `pip install cupy-cuda12x`, "
    "see https://docs.cupy.dev/en/stable/install.html"
)


# --------------------------------------------------------------------------- devices
class Device:
    """A place where tensors live: ``Device("cpu")`` or ``Device("cuda:0")``."""

    __slots__ = ("type", "index")

    def __init__(self, spec="cpu"):
        if isinstance(spec, Device):
            self.type, self.index = spec.type, spec.index
            return
        if not isinstance(spec, str):
            raise TypeError(f"device must be a string like 'cpu' or 'cuda:0', got {spec!r}")
        kind, _, index = spec.partition(":")
        if kind not in ("cpu", "cuda"):
            raise ValueError(f"unknown device {spec!r}: expected 'cpu', 'cuda' or 'cuda:N'")
        if kind == "cpu" and index:
            raise ValueError(f"unknown device {spec!r}: the CPU has no index")
        if index and not index.isdigit():
            raise ValueError(f"unknown device {spec!r}: the index after 'cuda:' must be a number")
        self.type = kind
        self.index = int(index) if index else (0 if kind == "cuda" else None)

    def __eq__(self, other):
        try:
            other = Device(other)
        except (TypeError, ValueError):
            return NotImplemented
        return (self.type, self.index) == (other.type, other.index)

    def __hash__(self):
        return hash((self.type, self.index))

    def __str__(self):
        return self.type if self.type == "cpu" else f"cuda:{self.index}"

    def __repr__(self):
        return f"device('{self}')"


def cupy_module():
    """Import CuPy on first use, or explain how to get it."""
    try:
        import cupy
    except ImportError as error:
        raise RuntimeError(f"device 'cuda' requested but CuPy is not installed. {_INSTALL_HINT}") from error
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # CUDA driver missing, no GPU visible, ...
        raise RuntimeError(f"device 'cuda' requested but no usable GPU was found ({error}). {_INSTALL_HINT}") from error
    if count == 0:
        raise RuntimeError(f"device 'cuda' requested but no GPU is visible. {_INSTALL_HINT}")
    return cupy


def cuda_is_available() -> bool:
    """True when CuPy imports and sees at least one GPU."""
    try:
        cupy_module()
        return True
    except RuntimeError:
        return False


def module_for(device) -> "module":
    """The array module (numpy or cupy) that holds arrays for ``device``."""
    return np if Device(device).type == "cpu" else cupy_module()


def array_module(array):
    """The array module of an existing array: ``numpy`` or ``cupy``.

    Looks only at ``sys.modules`` so that it never imports CuPy itself: if CuPy
    was never imported, no array can be a CuPy array.
    """
    cupy = sys.modules.get("cupy")
    if cupy is not None and isinstance(array, cupy.ndarray):
        return cupy
    return np


def device_of(array) -> Device:
    """The Device an array lives on."""
    if array_module(array) is np:
        return Device("cpu")
    return Device(f"cuda:{array.device.id}")


def to_device(array, device):
    """Copy ``array`` to ``device`` (no copy when it is already there)."""
    device = Device(device)
    if device_of(array) == device:
        return array
    if device.type == "cpu":
        return array.get()
    cupy = cupy_module()
    with cupy.cuda.Device(device.index):
        return cupy.asarray(array)


def on_device(device):
    """Context that makes ``device`` current, so that new CuPy arrays land on it."""
    device = Device(device)
    if device.type == "cpu":
        return contextlib.nullcontext()
    return cupy_module().cuda.Device(device.index)


def scatter_add(target, index, values):
    """``target[index] += values`` where repeated indices add up (unbuffered).

    NumPy spells it ``np.add.at``; CuPy ``cupyx.scatter_add``.
    """
    xp = array_module(target)
    if xp is np:
        np.add.at(target, index, values)
    else:
        import cupyx

        cupyx.scatter_add(target, index, values)


def quiet_float_errors(xp):
    """A context in which 0/0 gives nan silently (a mean over nothing, as in PyTorch).

    NumPy warns about such divisions unless told not to (``errstate``); CuPy
    never warns and has no ``errstate``.
    """
    errstate = getattr(xp, "errstate", None)
    return errstate(divide="ignore", invalid="ignore") if errstate else contextlib.nullcontext()


# --------------------------------------------------------------------------- random numbers
class _RandomState:
    """One random generator per device, all reseeded by ``minidl.manual_seed``.

    NumPy's ``Generator`` (PCG64) on the CPU, CuPy's ``RandomState`` on a GPU.
    Their method names differ, so the four draws minidl needs are wrapped below.
    """

    def __init__(self):
        self.seed = None
        self.generators = {}

    def manual_seed(self, seed: int):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"manual_seed expects a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        self.generators.clear()

    def generator(self, device):
        device = Device(device)
        if device not in self.generators:
            seed = self.seed if self.seed is not None else int.from_bytes(os.urandom(4), "little")
            if device.type == "cpu":
                self.generators[device] = np.random.Generator(np.random.PCG64(seed))
            else:
                cupy = cupy_module()
                with cupy.cuda.Device(device.index):
                    self.generators[device] = cupy.random.RandomState(seed)
        return self.generators[device]


_random_state = _RandomState()


def manual_seed(seed: int):
    """Seed the random generators of every device (as ``torch.manual_seed``)."""
    _random_state.manual_seed(seed)


def initial_seed():
    """The seed last given to ``manual_seed`` (None if never called)."""
    return _random_state.seed


def random_uniform(shape, dtype, device="cpu"):
    """Uniform samples in [0, 1) of ``shape``."""
    gen = _random_state.generator(device)
    draw = gen.random if Device(device).type == "cpu" else gen.random_sample  # NumPy's / CuPy's name
    with on_device(device):
        return draw(shape, dtype=_draw_dtype(dtype)).astype(dtype, copy=False)


def _draw_dtype(dtype):
    """Generators draw float32 or float64 only: float64 for float64, float32 for the rest."""
    return np.float64 if np.dtype(dtype) == np.float64 else np.float32


def random_normal(shape, dtype, device="cpu"):
    """Standard normal samples of ``shape``."""
    gen = _random_state.generator(device)
    with on_device(device):
        return gen.standard_normal(shape, dtype=_draw_dtype(dtype)).astype(dtype, copy=False)


def random_integers(low, high, shape, device="cpu"):
    """Integers drawn uniformly from [low, high), int64."""
    gen = _random_state.generator(device)
    if Device(device).type == "cpu":
        return gen.integers(low, high, size=shape, dtype=np.int64)
    with on_device(device):
        return gen.randint(low, high, size=shape, dtype=np.int64)


def random_permutation(n, device="cpu"):
    """A random permutation of range(n), int64."""
    gen = _random_state.generator(device)
    with on_device(device):
        return gen.permutation(n).astype(np.int64, copy=False)
