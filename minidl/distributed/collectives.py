"""Collectives: operations that every rank calls together, each with its own tensor.

With world size W and rank r holding tensor x_r (all the same shape):

    all_reduce(x, "sum")    every x_r becomes x_0 + x_1 + ... + x_{W-1}   (in place)
    all_reduce(x, "mean")   ... divided by W;  "max" / "min": elementwise
    broadcast(x, src=0)     every x_r becomes x_0                          (in place)
    all_gather(out, x)      out[s] becomes a copy of x_s, for every rank s

Every rank must call the same collectives in the same order, with the same
shapes and dtypes: a collective is a meeting, and a rank that never comes
leaves the others waiting.

How the bytes travel depends on where the array lives:

- NumPy arrays go straight to MPI (mpi4py reads and writes their memory).
- CuPy arrays go through NCCL, NVIDIA's library that moves data GPU to GPU,
  when every rank has a GPU of its own; its communicator is made on the first
  GPU collective, from an id that rank 0 creates and broadcasts over MPI.
- Otherwise (two ranks sharing a GPU, no NCCL, or ``backend="mpi"``) a CuPy
  array is copied to host memory, reduced with MPI, and copied back.
  (These two GPU paths are written against CuPy's documented API and have not
  been run here: no GPU was available. See the README.)

``async_op=True`` starts the operation and returns a ``Work`` whose ``wait()``
finishes it, so that computation can go on meanwhile (DistributedDataParallel
overlaps its gradient buckets with the rest of backward this way).

``communication_stats()`` counts the collectives, their payload bytes and the
seconds spent waiting in them; the benchmark reads it.
"""
from __future__ import annotations

import time

import numpy as np

from .. import backend
from .process_group import _world, backend_choice


class ReduceOp:
    """PyTorch-style names for the reductions: ``all_reduce(x, op=ReduceOp.SUM)`` (plain strings work too)."""

    SUM, AVG, MAX, MIN = "sum", "mean", "max", "min"


_OPS = ("sum", "mean", "max", "min")
_stats = {"calls": 0, "bytes": 0, "seconds": 0.0}


def communication_stats():
    """{"calls", "bytes", "seconds"} since the last reset: collectives run, payload bytes
    (each rank's own array size; the wire carries about 2(W-1)/W times that for an
    all-reduce), and wall time spent inside collectives and ``Work.wait``."""
    return dict(_stats)


def reset_communication_stats():
    _stats.update(calls=0, bytes=0, seconds=0.0)


class Work:
    """A started collective. ``wait()`` blocks until its result is in the tensor; calling it twice is harmless."""

    def __init__(self, request=None, finish=None):
        self._request, self._finish, self._done = request, finish, False

    def is_completed(self):
        return self._done or (self._request is None or self._request.Test())

    def wait(self):
        if self._done:
            return
        start = time.perf_counter()
        if self._request is not None:
            self._request.Wait()
        if self._finish is not None:
            self._finish()
        self._done = True
        _stats["seconds"] += time.perf_counter() - start


# --------------------------------------------------------------------------- plumbing
def _raw(x):
    """The array behind a Tensor (or the array itself)."""
    return x._array if hasattr(x, "_array") else x


def _mpi_call(comm, name, async_op, *args):
    """``comm.<name>(*args)`` (blocking, returns None) or its non-blocking twin ``comm.I<name>`` (a Request)."""
    if async_op:
        return getattr(comm, "I" + name.lower())(*args)  # Allreduce -> Iallreduce, Bcast -> Ibcast
    getattr(comm, name)(*args)
    return None


def _host_buffer(array):
    """A contiguous host (NumPy) array MPI can use for ``array``, and how to copy the result back.

    A contiguous NumPy array is used as it is (nothing to copy back). A non-contiguous
    one is copied; a CuPy array is copied to host memory (the "through host memory" path).
    """
    if backend.array_module(array) is np and array.flags.c_contiguous:
        return array, None
    host = np.ascontiguousarray(backend.to_device(array, "cpu"))

    def copy_back():
        array[...] = backend.to_device(host, backend.device_of(array))

    return host, copy_back


def _contiguous(array):
    """``array`` itself if contiguous, else a contiguous copy and how to copy the result back (NCCL's needs)."""
    if array.flags.c_contiguous:
        return array, None
    copy = array.copy()

    def copy_back():
        array[...] = copy

    return copy, copy_back


def _nccl_communicator(group, array):
    """The NCCL communicator for CuPy ``array``'s GPU, or None: then its collectives go through host memory.

    Made on the first collective of a GPU array (all ranks reach it together, as every
    collective). NCCL needs one GPU per rank: if two ranks of a machine hold arrays on the
    same GPU, or NCCL is not in this CuPy, every rank falls back to MPI through host memory.
    """
    if backend.array_module(array) is np:
        return None
    device = array.device.id
    if device in group.nccl:
        return group.nccl[device]
    choice = backend_choice()
    try:
        from cupy.cuda import nccl

        usable = choice != "mpi" and bool(nccl.available)
    except ImportError:
        nccl, usable = None, False
    # Every rank learns where every other rank's array lives: the same answer everywhere.
    places = group.comm.allgather((group.mpi.Get_processor_name(), device, usable))
    one_gpu_each = len({(host, gpu) for host, gpu, _ in places}) == group.size
    if all(ok for _, _, ok in places) and one_gpu_each:
        unique_id = group.comm.bcast(nccl.get_unique_id() if group.rank == 0 else None, root=0)
        with backend.on_device(f"cuda:{device}"):
            group.nccl[device] = nccl.NcclCommunicator(group.size, unique_id, group.rank)
    elif choice == "nccl":
        raise RuntimeError(f"backend='nccl' needs NCCL in CuPy and a GPU of its own for each rank; got (host, GPU, "
                           f"NCCL usable) = {places}. Use backend=None to fall back to host memory.")
    else:
        group.nccl[device] = None
    return group.nccl[device]


def _nccl_args(array):
    """(pointer, element count, NCCL dtype, current stream pointer) of a contiguous CuPy array."""
    import cupy
    from cupy.cuda import nccl

    types = {"b": nccl.NCCL_INT8, "B": nccl.NCCL_UINT8, "i": nccl.NCCL_INT32, "l": nccl.NCCL_INT64,
             "q": nccl.NCCL_INT64, "e": nccl.NCCL_FLOAT16, "f": nccl.NCCL_FLOAT32, "d": nccl.NCCL_FLOAT64}
    if array.dtype.char not in types:
        raise TypeError(f"NCCL cannot reduce arrays of dtype {array.dtype}")
    if not array.flags.c_contiguous:
        raise ValueError("NCCL needs a contiguous array")
    return array.data.ptr, array.size, types[array.dtype.char], cupy.cuda.get_current_stream().ptr


def _nccl_op(name):
    from cupy.cuda import nccl

    return {"sum": nccl.NCCL_SUM, "mean": nccl.NCCL_SUM, "max": nccl.NCCL_MAX, "min": nccl.NCCL_MIN}[name]


def _start(group, array, mpi_name, mpi_args, nccl_call, async_op, then=None):
    """Run one collective on ``array`` (NumPy or CuPy) by the right path; return a Work (or None when blocking).

    mpi_args(buffer) -> the arguments of ``comm.<mpi_name>`` for a host buffer;
    nccl_call(communicator, array) -> launches the NCCL version on the current CUDA stream.
    then(): run once the result is in place (e.g. divide by W for a mean).
    """
    if group.size == 1:  # nothing to exchange: the result is already in place
        if then is not None:
            then()
        return Work() if async_op else None
    _stats["calls"] += 1
    _stats["bytes"] += int(array.nbytes)
    start = time.perf_counter()
    nccl = _nccl_communicator(group, array)
    if nccl is not None:  # queued on the GPU stream: later GPU work on that stream sees the result
        target, copy_back = _contiguous(array)
        nccl_call(nccl, target)
        request = None
    else:
        buffer, copy_back = _host_buffer(array)
        request = _mpi_call(group.comm, mpi_name, async_op, *mpi_args(buffer))

    def finish():
        if copy_back is not None:
            copy_back()
        if then is not None:
            then()

    work = Work(request, finish)
    _stats["seconds"] += time.perf_counter() - start
    if async_op:
        return work
    work.wait()
    return None


# --------------------------------------------------------------------------- the collectives
def all_reduce(tensor, op="sum", group=None, async_op=False):
    """Reduce ``tensor`` over all ranks, in place: every rank ends with the same result.

    op: "sum", "mean" (floating point only), "max" or "min". Returns None, or a Work with async_op=True.
    """
    group = group or _world("all_reduce")
    array = _raw(tensor)
    if op not in _OPS:
        raise ValueError(f"all_reduce: unknown op {op!r}; use one of {_OPS}")
    if op == "mean" and array.dtype.kind != "f":
        raise TypeError(f"all_reduce(op='mean') needs a floating point tensor, got {array.dtype}")
    MPI = group.mpi
    mpi_op = {"sum": MPI.SUM, "mean": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}[op]

    def nccl_call(comm, a):
        pointer, count, dtype, stream = _nccl_args(a)
        comm.allReduce(pointer, pointer, count, dtype, _nccl_op(op), stream)

    def divide():  # "mean": MPI and NCCL sum, then every rank divides
        backend.array_module(array).divide(array, group.size, out=array)

    then = divide if op == "mean" else None
    return _start(group, array, "Allreduce", lambda buffer: (MPI.IN_PLACE, buffer, mpi_op), nccl_call, async_op, then)


def broadcast(tensor, src=0, group=None, async_op=False):
    """Copy rank ``src``'s ``tensor`` into every other rank's ``tensor``, in place."""
    group = group or _world("broadcast")
    array = _raw(tensor)

    def nccl_call(comm, a):
        pointer, count, dtype, stream = _nccl_args(a)
        comm.broadcast(pointer, pointer, count, dtype, src, stream)

    return _start(group, array, "Bcast", lambda buffer: (buffer, src), nccl_call, async_op)


def all_gather(tensor_list, tensor, group=None, async_op=False):
    """Fill ``tensor_list[s]`` with rank s's ``tensor``, on every rank (PyTorch's signature).

    tensor_list: W tensors shaped like ``tensor`` (their values are overwritten).
    """
    group = group or _world("all_gather")
    if len(tensor_list) != group.size:
        raise ValueError(f"all_gather: tensor_list has {len(tensor_list)} tensors for a world of {group.size}")
    gathered = all_gather_array(_raw(tensor), group)
    for target, value in zip(tensor_list, gathered):
        _raw(target)[...] = value
    return Work() if async_op else None


def all_gather_array(array, group=None):
    """Every rank's ``array`` stacked along a new first axis: (W, *array.shape), on array's device."""
    group = group or _world("all_gather")
    xp = backend.array_module(array)
    source = xp.ascontiguousarray(array)
    if group.size == 1:
        return source[None].copy()
    with backend.on_device(backend.device_of(array)):
        out = xp.empty((group.size,) + tuple(array.shape), dtype=array.dtype)

    def nccl_call(comm, a):
        pointer, count, dtype, stream = _nccl_args(source)
        comm.allGather(pointer, a.data.ptr, count, dtype, stream)

    def mpi_args(buffer):
        return (backend.to_device(source, "cpu"), buffer)

    _start(group, out, "Allgather", mpi_args, nccl_call, async_op=False)
    return out


def all_gather_object(object_list, obj, group=None):
    """Fill ``object_list`` (length W) with every rank's picklable ``obj`` (small things: names, shapes)."""
    group = group or _world("all_gather_object")
    object_list[:] = group.comm.allgather(obj)


def broadcast_coalesced(arrays, src=0, group=None):
    """Broadcast many arrays from rank ``src`` with one collective per (device, dtype), in place.

    The arrays are packed into one flat buffer, broadcast, and unpacked: one large
    message instead of many small ones (each small message costs a latency).
    """
    group = group or _world("broadcast")
    kinds = {}
    for array in arrays:
        kinds.setdefault((backend.device_of(array), array.dtype), []).append(array)
    for members in kinds.values():
        flat = flatten(members)
        broadcast(flat, src, group)
        unflatten_into(flat, members)


def flatten(arrays):
    """One 1-D array holding all ``arrays`` (same dtype and device) end to end."""
    xp = backend.array_module(arrays[0])
    return xp.concatenate([a.reshape(-1) for a in arrays])


def unflatten_into(flat, arrays):
    """Copy consecutive pieces of ``flat`` back into ``arrays`` (the inverse of ``flatten``)."""
    offset = 0
    for array in arrays:
        array[...] = flat[offset : offset + array.size].reshape(array.shape)
        offset += array.size
