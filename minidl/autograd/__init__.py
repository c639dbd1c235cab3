"""Autograd: the graph of ``Function`` nodes, the backward engine and grad modes."""
from .function import Function, unbroadcast
from .grad_mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .engine import run_backward
from .graph import to_dot

__all__ = ["Function", "unbroadcast", "enable_grad", "is_grad_enabled", "no_grad", "set_grad_enabled", "run_backward", "to_dot"]
