"""``minidl.nn``: modules (layers with parameters), losses and initialisation.

    import minidl.nn as nn
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
"""
from . import functional
from . import init
from .freeze import freeze, is_frozen, trainable_parameter_count, unfreeze
from .module import IncompatibleKeys, Module, RemovableHandle
from .modules import *  # noqa: F401,F403
from .modules import __all__ as _layer_names
from .parameter import Parameter

__all__ = ["functional", "init", "Module", "Parameter", "IncompatibleKeys", "RemovableHandle", "freeze", "unfreeze",
           "is_frozen", "trainable_parameter_count", *_layer_names]
from . import parallel  # noqa: E402  (DistributedDataParallel; mpi4py is imported only when it is used)

__all__ += ["parallel"]
