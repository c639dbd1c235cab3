"""minidl: a small deep-learning library, written to be read.

    import minidl
    x = minidl.tensor([1.0, 2.0, 3.0], requires_grad=True)
    (x * x).sum().backward()
    x.grad            # tensor([2., 4., 6.])
"""
from . import dtypes
from .dtypes import bool_ as bool, float16, float32, float64, half, double, int8, int16, int32, int64, long, uint8
from .backend import Device as device, cuda_is_available, manual_seed, initial_seed
from ._tensor import Tensor
from .creation import (
    arange, as_tensor, empty, eye, from_numpy, full, full_like, ones, ones_like, rand, randint, randn, randperm,
    tensor, zeros, zeros_like,
)
from .autograd import Function, enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .ops.elementwise import abs, add, clamp, div, exp, log, maximum, minimum, mul, neg, pow, relu, sigmoid, sqrt, sub, tanh, where
from .ops.reduction import argmax, argmin, max, mean, min, std, sum, var
from .ops.shape import cat, expand, flatten, permute, reshape, squeeze, stack, transpose, unsqueeze
from .ops.linalg import matmul
from .gradcheck import GradcheckError, gradcheck
from . import nn, optim
from .serialization import load, save

clip = clamp
concatenate = cat


class cuda:  # noqa: N801  (mirrors torch.cuda.is_available)
    """``minidl.cuda.is_available()``: True when CuPy sees a GPU."""

    is_available = staticmethod(cuda_is_available)


__version__ = "0.1.0"
from .summary import summary, Summary
from . import kernels
from .kernels import get_kernels, set_kernels
from .kernels import cpu as _cpu_kernels  # noqa: F401  (registers the fast CPU kernels)
from .kernels.cpu.threads import get_num_threads, set_num_threads
from .kernels.cpu.memory import keep_freed_memory
