"""``minidl.nn.functional`` (``F``): the differentiable layer ops, PyTorch's names and arguments.

One file per family; each op's forward and backward sit side by side.
"""
from ...ops.elementwise import relu, sigmoid, tanh
from ...ops.shape import pad
from .activation import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .dropout import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .upsampling import *  # noqa: F401,F403
