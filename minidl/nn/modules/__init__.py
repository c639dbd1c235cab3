"""The layer modules, one file per concept (they call ``minidl.nn.functional``)."""
from .activation import LeakyReLU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from .container import ModuleDict, ModuleList, Sequential
from .conv import Conv2d, ConvTranspose2d
from .dropout import Dropout, Dropout2d
from .flatten import Flatten
from .linear import Identity, Linear
from .loss import CrossEntropyLoss, MSELoss
from .normalization import BatchNorm1d, BatchNorm2d
from .pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d, MaxUnpool2d
from .upsampling import Upsample

__all__ = [
    "AdaptiveAvgPool2d", "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Conv2d", "ConvTranspose2d",
    "CrossEntropyLoss", "Dropout", "Dropout2d", "Flatten", "Identity", "LeakyReLU", "Linear", "LogSoftmax",
    "MSELoss", "MaxPool2d", "MaxUnpool2d", "ModuleDict", "ModuleList", "ReLU", "Sequential", "Sigmoid",
    "Softmax", "Tanh", "Upsample",
]
from .hard_activation import Hardsigmoid, Hardswish, ReLU6  # noqa: E402

__all__ += ["Hardsigmoid", "Hardswish", "ReLU6"]
from .sync_batchnorm import SyncBatchNorm, convert_sync_batchnorm  # noqa: E402

__all__ += ["SyncBatchNorm", "convert_sync_batchnorm"]
