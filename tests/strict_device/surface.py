"""What ``import cupy`` and ``import cupyx`` give while the stand-in is installed.

The ``cupy`` module here has CuPy's names for what minidl (and its tests and
benchmarks) call: the device array, its ufuncs, the NumPy functions CuPy implements,
host <-> device copies (``asarray``, ``asnumpy``, ``ndarray.get``), ``random.RandomState``,
``cuda`` (Device, runtime.getDeviceCount, streams, events, MemoryHook, the memory pool),
``lib.stride_tricks.as_strided`` and ``linalg``; ``cupyx`` has the scatter functions.
A NumPy function missing from ``FUNCTION_NAMES`` is one the stand-in does not claim CuPy
has: called on a device array it raises, as CuPy would for a function it lacks.
"""
from __future__ import annotations

import time
import types

import numpy as np

from .array import DEVICE_ID, UFUNCS, Pool, adopt, call, index_operand, ndarray, ufunc

DEVICE_COUNT = 1
__version__ = "0+strict.stand.in"

# NumPy functions that CuPy implements with the same signature (cupy's reference, "Routines")
FUNCTION_NAMES = (
    # creation
    "empty empty_like zeros zeros_like ones ones_like full full_like arange linspace logspace eye identity tri "
    "meshgrid indices diag diagflat tril triu ascontiguousarray asfortranarray copy "
    # shapes and joins
    "reshape ravel transpose swapaxes moveaxis rollaxis expand_dims squeeze broadcast_to broadcast_arrays "
    "atleast_1d atleast_2d atleast_3d concatenate stack vstack hstack dstack column_stack split array_split "
    "hsplit vsplit tile repeat flip fliplr flipud roll rot90 pad append unique copyto "
    # indexing
    "take take_along_axis put_along_axis put putmask where nonzero flatnonzero argwhere choose compress diagonal "
    "extract select fill_diagonal ravel_multi_index unravel_index ix_ searchsorted "
    # reductions and math
    "sum prod cumsum cumprod mean var std median average percentile quantile max amax min amin argmax argmin "
    "nansum nanprod nanmean nanvar nanstd nanmax nanmin nanargmax nanargmin clip around round dot vdot inner outer "
    "tensordot einsum kron cross trace diff convolve bincount histogram count_nonzero any all isclose allclose "
    "array_equal nan_to_num real imag angle sort argsort partition argpartition lexsort "
    # memory and shape queries
    "may_share_memory shares_memory ndim shape size"
).split()


def _function(numpy_function, name):
    where = f"cupy.{name}"

    def function(*args, **kwargs):
        return call(numpy_function, args, kwargs, where)

    function.__name__ = function.__qualname__ = name
    function.__doc__ = f"numpy.{name} on device arrays (host arrays refused)."
    return function


# =========================================================================== host <-> device
def _host_data(obj):
    """Data to copy to the device: host arrays, scalars, nested lists; device arrays inside lists must be all."""
    if isinstance(obj, (list, tuple)):
        leaves = list(_leaves(obj))
        devices = sum(isinstance(leaf, ndarray) for leaf in leaves)
        if devices and devices != len(leaves):
            raise TypeError("Implicit conversion to a NumPy array is not allowed: a list mixes device arrays "
                            "with other values")
        return [_host_data(item) for item in obj]
    return obj._memory if isinstance(obj, ndarray) else obj


def _leaves(obj):
    for item in obj:
        if isinstance(item, (list, tuple)):
            yield from _leaves(item)
        else:
            yield item


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0):
    """A new device array (a host -> device copy for host data)."""
    if isinstance(obj, ndarray) and not copy and ndmin <= obj.ndim:
        return obj.astype(dtype, copy=False) if dtype is not None else obj
    return adopt(np.array(_host_data(obj), dtype=dtype, copy=True, order=order, ndmin=ndmin))


def asarray(a, dtype=None, order=None, *, blocking=False):
    """``a`` itself if it is a device array of ``dtype``; otherwise a copy on the device."""
    if isinstance(a, ndarray):
        return a.astype(dtype, copy=False) if dtype is not None else a
    return adopt(np.array(_host_data(a), dtype=dtype, order=order or "K", copy=True))


def asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
    """A host copy of a device array (host data passes through ``numpy.asarray``)."""
    if isinstance(a, ndarray):
        return a.get(order=order, out=out)
    return np.asarray(a, order=order)


def get_array_module(*args):
    return cupy if any(isinstance(a, ndarray) for a in args) else np


def result_type(*arrays_and_dtypes):
    return np.result_type(*(a.dtype if isinstance(a, ndarray) else a for a in arrays_and_dtypes))


# =========================================================================== random numbers
class RandomState:
    """CuPy's generator API (``random_sample``, ``standard_normal``, ``randint``, ...), drawing on the device."""

    def __init__(self, seed=None):
        self._generator = np.random.Generator(np.random.PCG64(seed))

    def _floats(self, draw, size, dtype):
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"cupy.random draws float32 or float64 only, got {dtype}")
        return adopt(np.asarray(draw(size=size, dtype=dtype)))

    def random_sample(self, size=None, dtype=float):
        return self._floats(self._generator.random, size, dtype)

    def standard_normal(self, size=None, dtype=float):
        return self._floats(self._generator.standard_normal, size, dtype)

    def uniform(self, low=0.0, high=1.0, size=None, dtype=float):
        return self.random_sample(size, dtype) * (high - low) + low

    def normal(self, loc=0.0, scale=1.0, size=None, dtype=float):
        return self.standard_normal(size, dtype) * scale + loc

    def randint(self, low, high=None, size=None, dtype=int):
        return adopt(np.asarray(self._generator.integers(low, high, size=size, dtype=dtype)))

    def permutation(self, num):
        if isinstance(num, ndarray):
            return num[self.permutation(len(num))]
        return adopt(self._generator.permutation(num))

    def shuffle(self, a):
        if not isinstance(a, ndarray):
            raise TypeError("The array must be cupy.ndarray")
        self._generator.shuffle(a._memory)


# =========================================================================== cuda
class CUDARuntimeError(RuntimeError):
    pass


class Device:
    """A GPU by number; the stand-in has DEVICE_COUNT of them (one)."""

    def __init__(self, device=None):
        self.id = DEVICE_ID if device is None else int(device)

    def _check(self):
        if not 0 <= self.id < DEVICE_COUNT:
            raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")

    def __enter__(self):
        self._check()
        return self

    def __exit__(self, *exc):
        return False

    def use(self):
        self._check()

    def synchronize(self):
        pass

    compute_capability = "90"

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return f"<CUDA Device {self.id}>"


class MemoryPointer:
    def __init__(self, ptr, device):
        self.ptr, self.device = ptr, device


class MemoryHook:
    """Base class of memory hooks: ``with hook:`` makes it see every allocation and free of device arrays."""

    name = "MemoryHook"

    def __enter__(self):
        Pool.hooks.append(self)
        return self

    def __exit__(self, *exc):
        Pool.hooks.remove(self)
        return False

    def alloc_preprocess(self, **kwargs): pass  # noqa: E704
    def alloc_postprocess(self, **kwargs): pass  # noqa: E704
    def malloc_preprocess(self, **kwargs): pass  # noqa: E704
    def malloc_postprocess(self, **kwargs): pass  # noqa: E704
    def free_preprocess(self, **kwargs): pass  # noqa: E704
    def free_postprocess(self, **kwargs): pass  # noqa: E704


class MemoryPool:
    """``cupy.get_default_memory_pool()``: the bytes held by live device arrays."""

    def used_bytes(self):
        return Pool.used

    def total_bytes(self):
        return Pool.used

    def free_bytes(self):
        return 0

    def free_all_blocks(self, stream=None):
        pass

    def n_free_blocks(self):
        return 0

    def set_limit(self, size=None, fraction=None):
        pass

    def get_limit(self):
        return 0


class Stream:
    ptr = 0

    def synchronize(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


Stream.null = Stream()


class Event:
    def __init__(self, *args, **kwargs):
        self.time = None

    def record(self, stream=None):
        self.time = time.perf_counter()

    def synchronize(self):
        pass


def get_elapsed_time(start, end):
    """Milliseconds between two recorded events."""
    return (end.time - start.time) * 1000.0


def _get_device_properties(device):
    Device(device)._check()
    return {"name": b"strict CuPy stand-in (no GPU)", "totalGlobalMem": 0, "major": 9, "minor": 0}


def _module(name, doc, **attributes):
    module = types.ModuleType(name, doc)
    module.__dict__.update(attributes)
    return module


runtime = _module(
    "cupy.cuda.runtime", "CUDA runtime calls", CUDARuntimeError=CUDARuntimeError,
    getDeviceCount=lambda: DEVICE_COUNT, getDeviceProperties=_get_device_properties,
    deviceSynchronize=lambda: None, runtimeGetVersion=lambda: 12000, driverGetVersion=lambda: 12000,
)
cuda = _module(
    "cupy.cuda", "Devices, streams, events and memory", Device=Device, MemoryPointer=MemoryPointer,
    MemoryHook=MemoryHook, MemoryPool=MemoryPool, Stream=Stream, Event=Event, get_elapsed_time=get_elapsed_time,
    get_current_stream=lambda: Stream.null, get_device_id=lambda: DEVICE_ID, is_available=lambda: True,
    runtime=runtime,
)
random = _module("cupy.random", "Random numbers on the device", RandomState=RandomState)
stride_tricks = _module("cupy.lib.stride_tricks", "Views with given strides",
                        as_strided=_function(np.lib.stride_tricks.as_strided, "lib.stride_tricks.as_strided"))
lib = _module("cupy.lib", "cupy.lib", stride_tricks=stride_tricks)
linalg = _module("cupy.linalg", "Linear algebra", **{
    name: _function(getattr(np.linalg, name), f"linalg.{name}") for name in ("norm", "inv", "solve", "det", "svd", "qr", "eigh")
})

_POOL = MemoryPool()
_NUMPY_NAMES = (
    "bool_ int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16 float32 float64 complex64 complex128 intp "
    "dtype finfo iinfo newaxis inf nan pi e can_cast promote_types issubdtype isscalar floating integer "
    "signedinteger unsignedinteger number"
).split()

cupy = _module(
    "cupy", "A strict stand-in for CuPy (tests/strict_device): device arrays that follow CuPy's rules, in host memory.",
    __version__=__version__, ndarray=ndarray, ufunc=ufunc, array=array, asarray=asarray, asanyarray=asarray,
    asnumpy=asnumpy, get_array_module=get_array_module, result_type=result_type, random=random, cuda=cuda, lib=lib,
    linalg=linalg, get_default_memory_pool=lambda: _POOL, get_default_pinned_memory_pool=lambda: _POOL,
    is_available=lambda: True,
    **UFUNCS,
    **{name: _function(getattr(np, name), name) for name in FUNCTION_NAMES},
    **{name: getattr(np, name) for name in _NUMPY_NAMES},
)


def _scatter(numpy_ufunc, name, dtypes):
    def scatter(a, slices, value):
        if not isinstance(a, ndarray):
            raise TypeError(f"cupyx.{name}: the target must be a cupy.ndarray")
        if a.dtype not in dtypes:  # CUDA atomics exist for these only
            raise TypeError(f"{name} only supports {', '.join(str(np.dtype(d)) for d in dtypes)} as data type")
        numpy_ufunc.at(a._memory, index_operand(slices), value._memory if isinstance(value, ndarray) else value)

    scatter.__name__ = name
    return scatter


_ATOMIC = (np.int32, np.float16, np.float32, np.float64, np.uint32, np.uint64)
cupyx = _module(
    "cupyx", "CuPy's extras: scatter_add, scatter_max, scatter_min",
    scatter_add=_scatter(np.add, "scatter_add", _ATOMIC),
    scatter_max=_scatter(np.maximum, "scatter_max", _ATOMIC[:1] + _ATOMIC[2:]),
    scatter_min=_scatter(np.minimum, "scatter_min", _ATOMIC[:1] + _ATOMIC[2:]),
)

MODULES = {"cupy": cupy, "cupy.cuda": cuda, "cupy.cuda.runtime": runtime, "cupy.random": random, "cupy.lib": lib,
           "cupy.lib.stride_tricks": stride_tricks, "cupy.linalg": linalg, "cupyx": cupyx}


def namespace(numpy_module_name):
    """The stand-in's module for a NumPy module name ("numpy" -> cupy, "numpy.linalg" -> cupy.linalg, ...)."""
    return MODULES.get("cupy" + numpy_module_name[len("numpy"):]) if numpy_module_name.startswith("numpy") else None
