"""``nn.Module``: the base class of every layer and model.

A Module is a tree. Each node keeps three ordered tables, filled by plain
attribute assignment (``__setattr__`` below sorts values into them):

- ``_parameters``: the learnable tensors (``nn.Parameter``), e.g. ``weight``, ``bias``;
- ``_buffers``: tensors that are state but not learned, e.g. BatchNorm's ``running_mean``
  (added with ``register_buffer``);
- ``_modules``: the child modules, e.g. ``self.conv1 = nn.Conv2d(...)``.

Everything else -- ``parameters()``, ``state_dict()``, ``to()``, ``train()`` --
is a walk over that tree. Names follow PyTorch exactly: a parameter's name is
the path of attribute names joined by dots (``features.0.weight``), so a
PyTorch state_dict's keys are minidl's keys too.
"""
from __future__ import annotations

import itertools
import numbers
from collections import OrderedDict, namedtuple

import numpy as np

from .. import backend, dtypes
from .._tensor import Tensor, parse_to_args
from ..autograd.grad_mode import no_grad
from .parameter import Parameter, zero_grads


class IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    """What ``load_state_dict`` returns: the keys it could not match (both empty when all matched)."""

    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()


class RemovableHandle:
    """Returned by ``register_forward_hook``: ``handle.remove()`` unregisters the hook.

    Also a context manager, so ``with module.register_forward_hook(f): model(x)``
    removes the hook on exit.
    """

    _next_id = itertools.count()

    def __init__(self, hooks_dict):
        self.hooks_dict = hooks_dict
        self.id = next(RemovableHandle._next_id)

    def remove(self):
        self.hooks_dict.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False


def _addindent(text, spaces):
    """Indent every line of ``text`` but the first (used by the tree-shaped repr)."""
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    return lines[0] + "\n" + "\n".join(" " * spaces + line for line in lines[1:])


def _source_array(value, key):
    """The raw array behind a state_dict value: a Tensor, a NumPy/CuPy array, or anything array-like."""
    if isinstance(value, Tensor):
        return value._array
    if hasattr(value, "__cuda_array_interface__"):  # a CuPy array: leave it on its GPU
        return value
    if isinstance(value, (np.ndarray, np.generic, numbers.Number)) or hasattr(value, "__array__"):
        return np.asarray(value)
    raise TypeError(f"state_dict value for key {key!r} must be a tensor or an array, got {type(value).__name__}")


class Module:
    """Base class for layers and models: subclass it, assign layers in ``__init__``, write ``forward``.

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 8, 3)
                self.fc = nn.Linear(8, 2)

            def forward(self, x):                       # x: (N, 3, H, W)
                x = self.conv(x).mean(dim=(2, 3))       # (N, 8)
                return self.fc(x)                       # (N, 2)

    Call the module (``net(x)``), not ``forward``, so that hooks run.
    """

    def __init__(self):
        # object.__setattr__: our own __setattr__ needs these tables to exist already.
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required "forward" function')

    # ------------------------------------------------------------------ calling
    def __call__(self, *args, **kwargs):
        """Run pre-hooks, ``forward``, then forward hooks (a hook may replace the input or output)."""
        for hook in list(self._forward_pre_hooks.values()):
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        output = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, output)
            if result is not None:
                output = result
        return output

    def register_forward_hook(self, hook):
        """Call ``hook(module, inputs, output)`` after every forward; returns a RemovableHandle.

        ``inputs`` is the tuple of positional arguments. If the hook returns a value,
        it replaces the output. (The summary tool records shapes this way.)
        """
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    def register_forward_pre_hook(self, hook):
        """Call ``hook(module, inputs)`` before every forward; a returned value replaces the inputs."""
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    # ------------------------------------------------------------------ registration
    def _require_init(self, what):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {what} before Module.__init__() call (call super().__init__() first)")

    def __setattr__(self, name, value):
        params = self.__dict__.get("_parameters")
        buffers = self.__dict__.get("_buffers")
        modules = self.__dict__.get("_modules")
        if isinstance(value, Parameter):
            self._require_init("parameters")
            self._forget(name)
            self.register_parameter(name, value)
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(
                    f"cannot assign '{type(value).__name__}' as parameter '{name}' (nn.Parameter or None expected)"
                )
            params[name] = None
        elif isinstance(value, Module):
            self._require_init("child modules")
            self._forget(name)
            modules[name] = value
        elif modules is not None and name in modules:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as child module '{name}' (nn.Module or None expected)")
            modules[name] = None
        elif buffers is not None and name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign '{type(value).__name__}' as buffer '{name}' (Tensor or None expected)")
            buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name):
        """Remove ``name`` from every table and the instance dict (before re-registering it elsewhere)."""
        self.__dict__.pop(name, None)
        for table in (self._parameters, self._buffers, self._modules):
            table.pop(name, None)
        self._non_persistent_buffers.discard(name)

    def __getattr__(self, name):
        # Only called when normal lookup fails: look in the three tables.
        for table in ("_parameters", "_buffers", "_modules"):
            entries = self.__dict__.get(table)
            if entries is not None and name in entries:
                return entries[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for table in (self._parameters, self._buffers, self._modules):
            if name in table:
                del table[name]
                self._non_persistent_buffers.discard(name)
                return
        object.__delattr__(self, name)

    def _check_new_name(self, name, kind):
        if not isinstance(name, str):
            raise TypeError(f"{kind} name should be a string, got {type(name).__name__}")
        if "." in name or name == "":
            raise KeyError(f"{kind} name can't be empty or contain '.', got {name!r}")
        if hasattr(type(self), name) or (name in self.__dict__):
            raise KeyError(f"attribute '{name}' already exists")

    def register_parameter(self, name, param):
        """Add ``param`` (a Parameter, or None for an absent optional weight) under ``name``."""
        self._require_init("parameters")
        if name not in self._parameters:
            self._check_new_name(name, "parameter")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign '{type(param).__name__}' as parameter '{name}' (nn.Parameter or None expected)")
        self._parameters[name] = param

    def register_buffer(self, name, tensor, persistent=True):
        """Add a non-learned state tensor (or None). Persistent buffers are saved in ``state_dict``."""
        self._require_init("buffers")
        if name not in self._buffers:
            self._check_new_name(name, "buffer")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign '{type(tensor).__name__}' as buffer '{name}' (Tensor or None expected)")
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers.discard(name)
        else:
            self._non_persistent_buffers.add(name)

    def add_module(self, name, module):
        """Add a child module under ``name`` (what ``self.name = module`` does, for computed names)."""
        self._require_init("child modules")
        if not isinstance(module, Module) and module is not None:
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        if name not in self._modules:
            self._check_new_name(name, "module")
        self._modules[name] = module

    register_module = add_module

    def get_submodule(self, target):
        """The module at dotted path ``target`` (``"features.0"``); ``""`` is this module."""
        module = self
        for part in target.split(".") if target else []:
            if part not in module._modules or module._modules[part] is None:
                raise AttributeError(f"{type(module).__name__} has no submodule '{part}' (looking up '{target}')")
            module = module._modules[part]
        return module

    # ------------------------------------------------------------------ walking the tree
    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        """Yield ``(dotted_name, module)`` for this module and every descendant, depth first, parents first."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                yield from child.named_modules(memo, prefix + ("." if prefix else "") + name, remove_duplicate)

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_children(self):
        """Yield ``(name, child)`` for the direct children."""
        seen = set()
        for name, child in self._modules.items():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self):
        for _, child in self.named_children():
            yield child

    def _named_members(self, table, prefix, recurse, remove_duplicate):
        """Walk modules; yield each entry of ``table`` (``_parameters`` or ``_buffers``) with its dotted name.

        Within a module, its own entries come before its children's (PyTorch's order).
        A tensor shared by two layers (tied weights) is yielded once.
        """
        seen = set()
        walk = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse else [(prefix, self)]
        for module_prefix, module in walk:
            for name, value in getattr(module, table).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield module_prefix + ("." if module_prefix else "") + name, value

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        """Yield ``(name, Parameter)``, e.g. ``("features.0.weight", ...)``."""
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        """Yield ``(name, buffer)``, e.g. ``("bn.running_mean", ...)``."""
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        for _, buffer in self.named_buffers(recurse=recurse):
            yield buffer

    def apply(self, fn):
        """Call ``fn(module)`` on every child (recursively), then on this module; returns self.

        Typical use: ``model.apply(init_weights)``.
        """
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------ modes and gradients
    # A module frozen by ``nn.freeze`` (its BatchNorm layers) sets this on itself: train() leaves it in eval mode.
    _stays_in_eval = False

    def train(self, mode=True):
        """Set training mode (dropout active, BatchNorm uses batch statistics) here and below.

        Modules marked by ``nn.freeze`` (the BatchNorm layers of a frozen part) stay in eval mode.
        """
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        for module in self.modules():
            object.__setattr__(module, "training", mode and not module._stays_in_eval)
        return self

    def eval(self):
        """Evaluation mode: ``train(False)``."""
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        """Freeze (False) or unfreeze (True) every parameter; returns self."""
        for param in self.parameters():
            param.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        """Forget accumulated gradients: set ``.grad`` to None (default) or fill it with zeros."""
        zero_grads(self.parameters(), set_to_none)

    # ------------------------------------------------------------------ devices and dtypes
    def _apply_to_tensors(self, convert):
        """Replace the array of every parameter, its gradient and every buffer with ``convert(array)``.

        Only ``_array`` changes, the Tensor objects stay: an optimiser built before
        ``model.to(...)`` holds the same Parameters and keeps working.
        """
        for module in self.modules():
            for tensor in itertools.chain(module._parameters.values(), module._buffers.values()):
                if tensor is None:
                    continue
                tensor._array = convert(tensor._array)
                if tensor.grad is not None:
                    tensor.grad._array = convert(tensor.grad._array)
        return self

    def to(self, *args, device=None, dtype=None):
        """Move parameters and buffers in place: ``to("cuda")``, ``to(minidl.float64)``, ``to(tensor)``.

        A dtype applies to floating-point tensors only (``num_batches_tracked`` stays int64),
        as in PyTorch. Returns self.
        """
        dtype, device = parse_to_args(args, dtype, device)
        if dtype is not None:
            dtype = dtypes.as_dtype(dtype)
            if not dtypes.is_floating(dtype):
                raise TypeError(f"nn.Module.to only accepts floating point dtypes, but got desired dtype={dtype}")
        if device is not None:
            device = backend.Device(device)

        def convert(array):
            if device is not None:
                array = backend.to_device(array, device)
            if dtype is not None and dtypes.is_floating(array.dtype) and array.dtype != dtype:
                array = array.astype(dtype)
            return array

        return self._apply_to_tensors(convert)

    def cuda(self, device=None):
        return self.to("cuda" if device is None else f"cuda:{device}")

    def cpu(self):
        return self.to("cpu")

    def float(self):
        return self.to(dtype=dtypes.float32)

    def double(self):
        return self.to(dtype=dtypes.float64)

    def half(self):
        return self.to(dtype=dtypes.float16)

    # ------------------------------------------------------------------ state_dict
    def state_dict(self, destination=None, prefix="", keep_vars=False):
        """An OrderedDict ``name -> tensor`` of all parameters and persistent buffers.

        Values are detached tensors sharing memory with the model (``keep_vars=True``
        gives the Parameters themselves). Keys match PyTorch's: ``features.0.weight``,
        ``bn.running_mean``, ``bn.num_batches_tracked``.
        """
        if destination is None:
            destination = OrderedDict()
        for name, param in self._parameters.items():
            if param is not None:
                destination[prefix + name] = param if keep_vars else param.detach()
        for name, buffer in self._buffers.items():
            if buffer is not None and name not in self._non_persistent_buffers:
                destination[prefix + name] = buffer if keep_vars else buffer.detach()
        for name, child in self._modules.items():
            if child is not None:
                child.state_dict(destination=destination, prefix=prefix + name + ".", keep_vars=keep_vars)
        return destination

    def load_state_dict(self, state_dict, strict=True):
        """Copy values from ``state_dict`` into this model's parameters and buffers (in place).

        Values may be minidl Tensors or NumPy arrays (e.g. a PyTorch state_dict converted with
        ``{k: v.numpy() for k, v in sd.items()}``); they are cast to each target's dtype and device.

        Every key is checked before anything is copied, so a failed load leaves the model
        untouched. With ``strict=True`` missing or unexpected keys are an error; a shape
        mismatch is always an error. Returns ``IncompatibleKeys(missing_keys, unexpected_keys)``.
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"expected a dict-like state_dict, got {type(state_dict).__name__}")
        own = self.state_dict(keep_vars=True)
        missing = [key for key in own if key not in state_dict]
        unexpected = [key for key in state_dict if key not in own]
        errors = []
        if strict:
            if missing:
                errors.append("Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ".")
            if unexpected:
                errors.append("Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected) + ".")
        sources = {}
        for key, target in own.items():
            if key not in state_dict:
                continue
            source = _source_array(state_dict[key], key)
            if tuple(source.shape) != tuple(target.shape):
                errors.append(
                    f"size mismatch for {key}: copying a param with shape {tuple(source.shape)} from checkpoint, "
                    f"the shape in current model is {tuple(target.shape)}."
                )
            sources[key] = source
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t" + "\n\t".join(errors))
        with no_grad():
            for key, source in sources.items():
                target = own[key]
                target._array[...] = backend.to_device(source.astype(target.dtype, copy=False), target.device)
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ printing
    def extra_repr(self):
        """The text between the parentheses of this module's repr (override in layers)."""
        return ""

    def _get_name(self):
        return type(self).__name__

    def __repr__(self):
        """A tree, as PyTorch prints it::

            Net(
              (conv): Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1))
              (fc): Linear(in_features=8, out_features=2, bias=True)
            )
        """
        extra = self.extra_repr()
        lines = extra.split("\n") if extra else []
        for name, child in self._modules.items():
            lines.append(f"({name}): " + _addindent(repr(child), 2))
        if not self._modules and len(lines) <= 1:
            return f"{self._get_name()}({extra})"
        return self._get_name() + "(\n  " + "\n  ".join(lines) + "\n)"
