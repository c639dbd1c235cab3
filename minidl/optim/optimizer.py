"""``Optimizer``: the base class of SGD and Adam(W).

An optimiser holds ``param_groups``: a list of dicts, each with its own
``"params"`` and hyper-parameters (``"lr"``, ``"momentum"``...), so that e.g. a
pretrained backbone can learn slower than a fresh head::

    optim.SGD([{"params": backbone.parameters(), "lr": 1e-3},
               {"params": head.parameters()}], lr=1e-2, momentum=0.9)

and ``state``: per-parameter tensors the method carries from step to step
(momentum buffers, Adam's moment estimates), keyed by the Parameter object.

``step()`` visits every parameter that has a gradient and calls the subclass's
``_update`` on the *raw arrays*, in place and without recording a graph.
Updating in place keeps the Parameter objects (and the model holding them) the
same; the arithmetic uses Python-float hyper-parameters, so float32 weights stay float32.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import backend, dtypes
from .._tensor import Tensor
from ..autograd.grad_mode import enable_grad, no_grad
from ..nn.parameter import zero_grads


class Optimizer:
    """Base class: ``Optimizer(params, defaults)``; subclasses implement ``_update``."""

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.state = {}
        self.param_groups = []
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors or dicts, "
                            f"but got {type(params).__name__}")
        groups = list(_ordered(params))
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __repr__(self):
        lines = [type(self).__name__ + " ("]
        for index, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {index}")
            lines.extend(f"    {key}: {value}" for key, value in sorted(group.items()) if key != "params")
        return "\n".join(lines) + "\n)"

    def add_param_group(self, param_group):
        """Add a group ``{"params": [...], <hyper-parameter overrides>}``; missing settings come from the defaults."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else list(_ordered(params))
        for param in params:
            if not isinstance(param, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is {type(param).__name__}")
            if not param.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        group = dict(param_group, params=params)
        for name, default in self.defaults.items():
            group.setdefault(name, default)
        for name, value in group.items():
            if name != "params":
                _check_finite(name, value)
        existing = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in existing for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none=True):
        """Forget gradients: ``.grad = None`` (default) or fill them with zeros."""
        zero_grads((param for group in self.param_groups for param in group["params"]), set_to_none)

    def step(self, closure=None):
        """Update every parameter that has a gradient; ``closure`` (optional) recomputes and returns the loss."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            for group in self.param_groups:
                for param in group["params"]:
                    if param.grad is None:  # unused in this step, or frozen
                        continue
                    self._update(param._array, param.grad._array, self.state.setdefault(param, {}), group)
        return loss

    def _update(self, param, grad, state, group):
        """Update the raw array ``param`` in place from ``grad``; ``state`` is this parameter's dict."""
        raise NotImplementedError

    # ------------------------------------------------------------------ state_dict
    def state_dict(self):
        """``{"state": {index: {...}}, "param_groups": [{..., "params": [indices]}]}`` (PyTorch's format).

        Parameters are named by their position across all groups (0, 1, ...), since
        Parameter objects can't be saved; loading maps the positions back.
        """
        index_of, groups = {}, []
        for group in self.param_groups:
            for param in group["params"]:
                index_of.setdefault(id(param), len(index_of))
            groups.append(dict(group, params=[index_of[id(p)] for p in group["params"]]))
        state = {index_of[id(param)]: dict(values) for param, values in self.state.items() if id(param) in index_of}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore hyper-parameters and per-parameter state saved by ``state_dict`` (copies the tensors).

        State tensors are moved to each parameter's device; floating ones take its dtype.
        """
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(saved_groups)} parameter groups, "
                             f"the optimizer has {len(self.param_groups)}")
        for index, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"loaded state dict's parameter group {index} has {len(saved['params'])} parameters, "
                                 f"the optimizer's has {len(group['params'])}")
        param_of = {int(i): p for saved, group in zip(saved_groups, self.param_groups)
                    for i, p in zip(saved["params"], group["params"])}
        self.state = {}
        for index, values in state_dict["state"].items():
            param = param_of[int(index)]
            self.state[param] = {name: _restore(name, value, param) for name, value in values.items()}
        self.param_groups = [dict(saved, params=group["params"]) for saved, group in zip(saved_groups, self.param_groups)]


def _check_finite(name, value):
    """A numeric hyper-parameter (or each number of a tuple such as ``betas``) must be finite.

    A NaN or infinite ``lr``, ``momentum``, ``eps``... passes a check like ``lr < 0`` and then
    silently turns every weight into NaN at the first step.
    """
    numbers_in_it = value if isinstance(value, (tuple, list)) else (value,)
    for number in numbers_in_it:
        if isinstance(number, numbers.Real) and not isinstance(number, bool) and not math.isfinite(number):
            raise ValueError(f"Invalid {name} value: {value} ({name} must be a finite number)")


def _ordered(params):
    """``params`` unless it is a set: a set's order changes between runs, and state is matched by position."""
    if isinstance(params, (set, frozenset)):
        raise TypeError("optimizer parameters need to be organized in ordered collections, but the ordering of "
                        "tensors in sets will change between runs. Please use a list instead.")
    return params


def _restore(name, value, param):
    """A copy of one saved state value, ready for ``param``."""
    if isinstance(value, np.ndarray) or (isinstance(value, Tensor)):
        array = value._array if isinstance(value, Tensor) else value
        if name == "step":  # PyTorch saves the step count as a tensor; minidl keeps a Python number
            return array.item()
        if dtypes.is_floating(array.dtype):
            array = array.astype(param.dtype)
        return Tensor._from_array(backend.to_device(array, param.device).copy())
    return value
