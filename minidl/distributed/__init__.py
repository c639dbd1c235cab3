"""``minidl.distributed``: data-parallel training on several processes, over MPI (through mpi4py).

Data parallelism: W processes (ranks) each hold a full copy of the model. Every
step, each trains on its own 1/W of the batch; the gradients are averaged across
ranks (one all-reduce), so every copy takes the same optimiser step and the
copies stay identical -- the same step one process would take on the whole batch::

    # mpiexec -n 2 python train.py
    import minidl.distributed as dist
    from minidl.nn.parallel import DistributedDataParallel

    dist.init_process_group()                    # rank, world size from mpiexec
    model = DistributedDataParallel(model)       # rank 0's weights everywhere; averages grads in backward
    sampler = dist.DistributedSampler(dataset)   # this rank's share of each epoch
    ...
    if dist.get_rank() == 0:
        save(...)                                # one rank writes

Reading order: ``process_group.py`` (who is who; failure handling) ->
``collectives.py`` (all_reduce, broadcast, all_gather; MPI, NCCL, host memory) ->
``sampler.py`` -> ``minidl/nn/parallel/distributed.py`` (DistributedDataParallel,
gradient buckets) -> ``minidl/nn/modules/sync_batchnorm.py``.

mpi4py is optional: ``pip install 'minidl[distributed]'`` installs it with the Open MPI
wheel. Importing this package never starts MPI; ``init_process_group`` does.
"""
from .collectives import (
    ReduceOp, Work, all_gather, all_gather_array, all_gather_object, all_reduce, broadcast, broadcast_coalesced,
    communication_stats, reset_communication_stats,
)
from .process_group import (
    ProcessGroup, abort, barrier, destroy_process_group, get_local_rank, get_rank, get_world_size,
    init_process_group, is_available, is_initialized, new_group,
)
from .sampler import DistributedSampler

__all__ = [
    "ProcessGroup", "ReduceOp", "Work", "DistributedSampler", "abort", "all_gather", "all_gather_array",
    "all_gather_object", "all_reduce", "barrier", "broadcast", "broadcast_coalesced", "communication_stats",
    "destroy_process_group", "get_local_rank", "get_rank", "get_world_size", "init_process_group", "is_available",
    "is_initialized", "new_group", "reset_communication_stats",
]
