"""The stand-in's array type and the rules CuPy enforces on it.

A device array here is a NumPy array (``_memory``, the "device memory") wrapped in a
type that is *not* ``numpy.ndarray``, so that host code cannot use it by accident.
Every rule below is CuPy's, read from its sources (cupy/_core/core.pyx, _kernel.pyx,
_routines_indexing.pyx, 9.x to 13.x):

- ``numpy.asarray(a)`` (``__array__``) raises TypeError: no implicit copy to the host;
- a kernel (every ufunc, every operator) takes device arrays, Python scalars and NumPy
  *scalars* only: a ``numpy.ndarray`` (even 0-d) or a list raises TypeError
  ("Unsupported type"); ``out=`` must be a device array;
- a NumPy ufunc called on a device array goes to the device ufunc of the same name
  (``__array_ufunc__``), for plain calls only: ``np.add.outer``, ``.at``, ``.reduce``
  on device arrays raise; comparisons with a 0-d NumPy array take its value;
- a NumPy function called on a device array goes to the device function of the same
  name if the stand-in has one (``__array_function__``), and otherwise raises
  TypeError ("no implementation found"); host arrays among its arguments raise;
- ``float(a)``, ``int(a)``, ``complex(a)``, ``bool(a)``, ``a.item()``, ``a.tolist()``,
  ``repr(a)`` copy to the host and are allowed (CuPy does them through ``get()``);
  there is no ``__index__``, so a device scalar cannot index a Python sequence;
- reductions and single-element indexing give 0-d device arrays, never host scalars;
- indices may be host arrays or lists (CuPy copies them over); values assigned with
  basic indexing may not be non-scalar host arrays.

Allocations are counted as CuPy's memory pool would count them (512-byte units) and
reported to any ``cupy.cuda.MemoryHook`` that is active, so ``minidl.summary`` measures
a peak on the stand-in too.
"""
from __future__ import annotations

import weakref

import numpy as np

DEVICE_ID = 0
_SCALAR_TYPES = (bool, int, float, complex, np.generic)  # what a CuPy kernel takes besides device arrays
_UNSUPPORTED_KINDS = "OSUVMm"  # object, strings, void, datetimes: CuPy has no such dtypes


def _unsupported(value, where):
    hint = " (copy it to the device with cupy.asarray first)" if isinstance(value, np.ndarray) else ""
    return TypeError(f"Unsupported type {type(value)} in {where}: the stand-in, as CuPy, takes device arrays "
                     f"and scalars only{hint}")


# =========================================================================== memory, as the pool sees it
class Pool:
    """The bytes device arrays hold, and the memory hooks to tell (``cupy.cuda.MemoryHook``)."""

    unit = 512  # CuPy rounds every allocation up to 512 bytes
    used = 0
    peak = 0
    hooks = []
    owners = {}  # id(NumPy buffer) -> (weakref to that buffer, weakref to the device array that owns it)

    @classmethod
    def allocate(cls, array, buffer):
        size = buffer.nbytes
        mem_size = -(-size // cls.unit) * cls.unit
        cls.owners[id(buffer)] = (weakref.ref(buffer), weakref.ref(array))
        if not size:
            return
        pointer = buffer.ctypes.data
        for hook in list(cls.hooks):
            hook.malloc_preprocess(device_id=DEVICE_ID, size=size, mem_size=mem_size)
        cls.used += mem_size
        cls.peak = max(cls.peak, cls.used)
        for hook in list(cls.hooks):
            hook.malloc_postprocess(device_id=DEVICE_ID, size=size, mem_size=mem_size, mem_ptr=pointer, pmem_id=pointer)
        weakref.finalize(array, cls.free, id(buffer), mem_size, pointer)

    @classmethod
    def free(cls, key, mem_size, pointer):
        cls.owners.pop(key, None)
        for hook in list(cls.hooks):
            hook.free_preprocess(device_id=DEVICE_ID, mem_size=mem_size, mem_ptr=pointer, pmem_id=pointer)
        cls.used -= mem_size
        for hook in list(cls.hooks):
            hook.free_postprocess(device_id=DEVICE_ID, mem_size=mem_size, mem_ptr=pointer, pmem_id=pointer)

    @classmethod
    def owner_of(cls, buffer):
        """The device array that owns ``buffer``, or None if no live one does."""
        refs = cls.owners.get(id(buffer))
        if refs is None or refs[0]() is not buffer:
            return None
        return refs[1]()


def _buffer(memory):
    """The NumPy array at the root of ``memory``'s chain of views (``as_strided`` puts a non-array link in it)."""
    root, link = memory, memory.base
    while link is not None:
        if isinstance(link, np.ndarray):
            root = link
        link = getattr(link, "base", None)
    return root


def adopt(memory, known=None):
    """The device array for a NumPy result ``memory``.

    ``known`` maps id(memory) -> device array for the call's device inputs: a result
    that *is* one of them (``astype(copy=False)``, ``asarray``) comes back as that very
    array; a view of one gets it as its ``base``; anything else is new device memory.
    """
    if known and id(memory) in known:
        return known[id(memory)]
    if memory.dtype.kind in _UNSUPPORTED_KINDS:
        raise ValueError(f"Unsupported dtype {memory.dtype}")
    array = object.__new__(ndarray)
    array._memory = memory
    buffer = _buffer(memory)
    owner = Pool.owner_of(buffer)
    array._base = owner if owner is not None else None
    if owner is None:
        Pool.allocate(array, buffer)
    return array


def to_device(result, known=None):
    """Wrap whatever a NumPy call returned: arrays and NumPy scalars become device arrays."""
    if isinstance(result, np.ndarray):
        return adopt(result, known)
    if isinstance(result, np.generic):
        return adopt(np.asarray(result))
    if isinstance(result, tuple):
        return tuple(to_device(r, known) for r in result)
    if isinstance(result, list):
        return [to_device(r, known) for r in result]
    return result


def device_arrays(value, found):
    """Collect id(memory) -> device array for every device array in ``value`` (nested sequences too)."""
    if isinstance(value, ndarray):
        found[id(value._memory)] = value
    elif isinstance(value, (list, tuple)):
        for item in value:
            device_arrays(item, found)
    elif isinstance(value, dict):
        for item in value.values():
            device_arrays(item, found)
    return found


def operand(value, where):
    """A function argument as NumPy sees it: device arrays unwrapped; host arrays refused."""
    if isinstance(value, ndarray):
        return value._memory
    if isinstance(value, np.ndarray):
        raise _unsupported(value, where)
    if isinstance(value, list):
        return [operand(v, where) for v in value]
    if isinstance(value, tuple):
        return tuple(operand(v, where) for v in value)
    return value


def kernel_operand(value, where):
    """An argument of an elementwise kernel: a device array or a scalar, nothing else."""
    if isinstance(value, ndarray):
        return value._memory
    if isinstance(value, _SCALAR_TYPES):
        return value
    raise _unsupported(value, where)


def index_operand(key):
    """An index: device arrays unwrapped; host arrays, lists and scalars allowed (CuPy copies them over)."""
    if isinstance(key, tuple):
        return tuple(index_operand(k) for k in key)
    return key._memory if isinstance(key, ndarray) else key


def is_advanced(key):
    parts = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, (ndarray, np.ndarray, list)) for k in parts)


def call(function, args, kwargs, where):
    """Run a NumPy function on device arguments, strictly, and wrap the result."""
    known = device_arrays((args, kwargs), {})
    host_args = operand(args, where)
    host_kwargs = {k: operand(v, where) for k, v in kwargs.items()}
    with np.errstate(all="ignore"):  # CuPy never warns about 0/0 or overflow
        result = function(*host_args, **host_kwargs)
    return to_device(result, known)


# =========================================================================== ufuncs
class ufunc:  # noqa: N801  (CuPy's name)
    """A device ufunc: a NumPy ufunc that takes device arrays and scalars only.

    Only plain calls: the ``reduce``/``accumulate``/``outer``/``at`` methods are left out
    (CuPy had none before 13 and has them for a few ufuncs since); ``where=`` is refused.
    """

    def __init__(self, numpy_ufunc):
        self._numpy = numpy_ufunc
        self.__name__ = self.name = numpy_ufunc.__name__
        self.nin, self.nout, self.nargs = numpy_ufunc.nin, numpy_ufunc.nout, numpy_ufunc.nargs

    def __repr__(self):
        return f"<ufunc '{self.__name__}'>"

    def __call__(self, *args, out=None, dtype=None, casting="same_kind", **unsupported):
        if unsupported:
            raise TypeError(f"Wrong arguments {unsupported}")
        where = f"cupy.{self.__name__}"
        host_args = [kernel_operand(a, where) for a in args]
        outs = out if isinstance(out, tuple) else (out,) if out is not None else ()
        if not all(isinstance(o, ndarray) for o in outs):
            raise TypeError("Output arguments type must be cupy.ndarray")
        kwargs = {"dtype": dtype, "casting": casting}
        if outs:
            kwargs["out"] = tuple(o._memory for o in outs)
        with np.errstate(all="ignore"):
            result = self._numpy(*host_args, **kwargs)
        return to_device(result, device_arrays(outs, {}))


UFUNC_NAMES = (
    "add subtract multiply divide true_divide floor_divide negative positive power float_power remainder mod fmod "
    "absolute rint sign heaviside exp exp2 log log2 log10 expm1 log1p sqrt square cbrt reciprocal "
    "sin cos tan arcsin arccos arctan arctan2 hypot sinh cosh tanh arcsinh arccosh arctanh deg2rad rad2deg "
    "bitwise_and bitwise_or bitwise_xor invert left_shift right_shift "
    "greater greater_equal less less_equal not_equal equal logical_and logical_or logical_xor logical_not "
    "maximum minimum fmax fmin isfinite isinf isnan signbit copysign nextafter ldexp frexp modf floor ceil trunc "
    "logaddexp logaddexp2 conjugate matmul"
).split()
UFUNCS = {name: ufunc(getattr(np, name)) for name in UFUNC_NAMES}
UFUNCS["abs"] = UFUNCS["absolute"]
UFUNCS["conj"] = UFUNCS["conjugate"]
_COMPARISONS = {"greater", "greater_equal", "less", "less_equal", "equal", "not_equal"}


# =========================================================================== the array
def _binary(name, reflected=False, inplace=False):
    function = UFUNCS[name]

    def operator(self, other):
        if not isinstance(other, ndarray) and _defers_to(other):
            return NotImplemented
        if name in _COMPARISONS and isinstance(other, np.ndarray) and other.ndim == 0:
            other = other.item()  # CuPy's workaround for numpy/numpy#12142
        if inplace:
            return function(self, other, out=self)
        return function(other, self) if reflected else function(self, other)

    return operator


def _defers_to(other):
    """CuPy's _should_use_rop: let ``other``'s reflected operator run (a type that opts out of ufuncs)."""
    handler = getattr(type(other), "__array_ufunc__", _MISSING)
    if handler is _MISSING:
        return ndarray.__array_priority__ < getattr(other, "__array_priority__", 0)
    return handler is None


_MISSING = object()

_OPERATORS = {"add": "add", "sub": "subtract", "mul": "multiply", "truediv": "true_divide",
              "floordiv": "floor_divide", "mod": "remainder", "pow": "power", "matmul": "matmul",
              "and": "bitwise_and", "or": "bitwise_or", "xor": "bitwise_xor", "lshift": "left_shift",
              "rshift": "right_shift"}
_COMPARISON_OPERATORS = {"lt": "less", "le": "less_equal", "eq": "equal", "ne": "not_equal", "gt": "greater",
                         "ge": "greater_equal"}

# CuPy's ndarray methods that compute on the device (the host-facing ones are written out below). Their
# arguments are shapes, axes and indices, which CuPy takes from host sequences too (it converts them),
# except for the operands of the methods in _DATA_METHODS and for out=.
_METHODS = (
    "all any argmax argmin argpartition argsort astype choose clip compress conj conjugate copy cumprod cumsum "
    "diagonal dot flatten max mean min nonzero partition prod put ravel repeat reshape round sort squeeze std sum "
    "swapaxes take trace transpose var view"
).split()
_DATA_METHODS = {"clip", "dot"}


class ndarray:  # noqa: N801  (CuPy's name)
    """An array in (stand-in) device memory. See the module docstring for its rules."""

    __slots__ = ("_memory", "_base", "__weakref__")
    __array_priority__ = 100

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        if memptr is not None or strides is not None:
            raise NotImplementedError("the stand-in allocates its own memory")
        self._memory = np.empty(shape, dtype, order=order)
        self._base = None
        Pool.allocate(self, self._memory)

    # ------------------------------------------------------------------ attributes
    shape = property(lambda self: self._memory.shape)
    dtype = property(lambda self: self._memory.dtype)
    ndim = property(lambda self: self._memory.ndim)
    size = property(lambda self: self._memory.size)
    itemsize = property(lambda self: self._memory.itemsize)
    nbytes = property(lambda self: self._memory.nbytes)
    strides = property(lambda self: self._memory.strides)
    flags = property(lambda self: self._memory.flags)
    base = property(lambda self: self._base)
    T = property(lambda self: to_device(self._memory.T, {id(self._memory): self}))

    @property
    def device(self):
        from .surface import cuda

        return cuda.Device(DEVICE_ID)

    @property
    def data(self):
        from .surface import cuda

        return cuda.MemoryPointer(self._memory.ctypes.data, cuda.Device(DEVICE_ID))

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.shape, "typestr": self.dtype.str, "descr": self.dtype.descr,
                "data": (self._memory.ctypes.data, False), "strides": None if self.flags.c_contiguous else self.strides,
                "version": 3, "stream": 1}

    # ------------------------------------------------------------------ to the host, explicitly
    def get(self, stream=None, order="C", out=None):
        """A copy in host memory (a numpy.ndarray)."""
        if out is not None:
            if not isinstance(out, np.ndarray):
                raise TypeError("Only numpy.ndarray can be obtained from cupy.ndarray")
            out[...] = self._memory
            return out
        return np.array(self._memory, order=order, copy=True)

    def set(self, arr, stream=None):
        """Copy a host array of the same shape and dtype in."""
        if not isinstance(arr, np.ndarray):
            raise TypeError("Only numpy.ndarray can be set to cupy.ndarray")
        if arr.dtype != self.dtype or arr.shape != self.shape:
            raise ValueError(f"Shape or dtype mismatch: {arr.shape} {arr.dtype} into {self.shape} {self.dtype}")
        self._memory[...] = arr

    def item(self):
        if self.size != 1:
            raise ValueError("can only convert an array of size 1 to a Python scalar")
        return self._memory.item()

    def tolist(self):
        return self._memory.tolist()

    def tobytes(self, order="C"):
        return self._memory.tobytes(order)

    def __float__(self):
        return float(self.get())

    def __int__(self):
        return int(self.get())

    def __complex__(self):
        return complex(self.get())

    def __bool__(self):
        if self.size != 1:
            raise ValueError("The truth value of an array with more than one element (or none) is ambiguous. "
                             "Use a.any() or a.all()")
        return bool(self._memory.reshape(()))

    def __repr__(self):
        return repr(self.get())

    def __str__(self):
        return str(self.get())

    def __format__(self, spec):
        return format(self.get(), spec)

    def __reduce__(self):
        from .surface import array

        return array, (self.get(),)

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    # ------------------------------------------------------------------ copies
    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()

    def fill(self, value):
        if isinstance(value, (np.ndarray, ndarray)) and value.shape != ():
            raise ValueError("non-scalar array cannot be used for fill")
        self._memory.fill(value.item() if isinstance(value, (np.ndarray, ndarray)) else value)

    # ------------------------------------------------------------------ containers and indexing
    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of unsized object")
        return len(self._memory)

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(len(self)))

    def __getitem__(self, key):
        return to_device(self._memory[index_operand(key)], {id(self._memory): self})

    def __setitem__(self, key, value):
        if isinstance(value, list) or (isinstance(value, np.ndarray) and value.ndim):
            if not is_advanced(key):  # basic indexing fills from a scalar or copies a device array
                raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
        elif not isinstance(value, (ndarray, np.ndarray)):
            kernel_operand(value, "cupy.ndarray.__setitem__")
        self._memory[index_operand(key)] = value._memory if isinstance(value, ndarray) else value

    # ------------------------------------------------------------------ NumPy's protocols
    def __array_ufunc__(self, numpy_ufunc, method, *inputs, **kwargs):
        device_ufunc = UFUNCS.get(numpy_ufunc.__name__)
        if method != "__call__" or device_ufunc is None:
            return NotImplemented
        out = kwargs.get("out", ())
        for x in inputs + tuple(out):
            if not isinstance(x, (ndarray, np.ndarray, *_SCALAR_TYPES)):
                return NotImplemented
        if out:
            if len(out) != 1:
                raise ValueError("The 'out' parameter must have exactly one array value")
            kwargs["out"] = out[0]
        if numpy_ufunc.__name__ in _COMPARISONS:
            inputs = tuple(x.item() if isinstance(x, np.ndarray) and x.ndim == 0 else x for x in inputs)
        return device_ufunc(*inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        from . import surface

        namespace = surface.namespace(func.__module__)
        device_function = getattr(namespace, func.__name__, None) if namespace is not None else None
        if device_function is None or device_function is func:
            return NotImplemented
        if not all(t in (ndarray, np.ndarray) for t in types):
            return NotImplemented
        return device_function(*args, **kwargs)

    # ------------------------------------------------------------------ unary operators
    def __neg__(self):
        return UFUNCS["negative"](self)

    def __pos__(self):
        return self

    def __abs__(self):
        return UFUNCS["absolute"](self)

    def __invert__(self):
        return UFUNCS["invert"](self)


def _method(name):
    numpy_method = getattr(np.ndarray, name)
    strict = name in _DATA_METHODS

    def method(self, *args, **kwargs):
        if strict or isinstance(kwargs.get("out"), np.ndarray):
            return call(numpy_method, (self, *args), kwargs, f"cupy.ndarray.{name}")
        known = {id(self._memory): self}
        with np.errstate(all="ignore"):
            result = numpy_method(self._memory, *index_operand(args), **{k: index_operand(v) for k, v in kwargs.items()})
        return to_device(result, known)

    method.__name__ = name
    return method


for _name in _METHODS:
    setattr(ndarray, _name, _method(_name))
for _short, _ufunc_name in _OPERATORS.items():
    setattr(ndarray, f"__{_short}__", _binary(_ufunc_name))
    setattr(ndarray, f"__r{_short}__", _binary(_ufunc_name, reflected=True))
    setattr(ndarray, f"__i{_short}__", _binary(_ufunc_name, inplace=True))
for _short, _ufunc_name in _COMPARISON_OPERATORS.items():
    setattr(ndarray, f"__{_short}__", _binary(_ufunc_name))
ndarray.__hash__ = None
