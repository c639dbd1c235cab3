"""A job in which rank 1 raises while rank 0 waits in a collective: mpiexec must end it, not hang.

    mpiexec -n 2 python tests/distributed/raising.py
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import minidl  # noqa: E402
import minidl.distributed as dist  # noqa: E402

dist.init_process_group()
if dist.get_rank() == 1:
    time.sleep(0.2)  # let rank 0 reach its collective first
    raise ValueError("rank 1 fails on purpose")
dist.all_reduce(minidl.ones(3))  # rank 0 would wait here for ever without the abort
print("rank 0 finished: the failure went unnoticed")
