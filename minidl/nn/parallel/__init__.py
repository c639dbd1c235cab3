"""``minidl.nn.parallel``: training one model on several processes (``DistributedDataParallel``)."""
from .distributed import DistributedDataParallel

__all__ = ["DistributedDataParallel"]
