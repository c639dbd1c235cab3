"""``minidl.summary(model, input_size)``: a table of a network, layer by layer, with the numbers behind the tutorial's claims.

    >>> s = minidl.summary(SegNetSmall(), (1, 3, 240, 240))
    >>> print(s)                    # one row per leaf module, in execution order
    >>> s.activation_bytes, s.peak_bytes, s.receptive_field

Per row: output shape, parameters (trainable / frozen), multiply-accumulates, the
bytes the autograd graph keeps for that layer's backward, and the receptive field
on the input image (size, jump and start per axis; see ``receptive_field.py``).

How the figures are obtained -- two forward passes on one random input:

1. **shapes and receptive fields**: the input *requires grad*, so the graph reaches
   back to it, and forward hooks on the leaf modules note each layer's output
   node. The receptive-field rules then run over the graph of Function nodes.
2. **memory, as in training**: the input does not require grad; the graph's
   saved arrays are counted per layer (``memory.py``), then one backward runs,
   and the peak of array memory over forward + backward is measured.

The model is left as it was: parameter gradients and buffers (batch norm's
running statistics) are restored afterwards.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .. import dtypes
from .._tensor import Tensor
from ..autograd.function import Function
from ..backend import Device, to_device
from ..nn.functional.common import pair
from ..nn.modules.conv import ConvTranspose2d as ConvTransposeModule
from ..nn.modules.pooling import MaxPool2d as MaxPoolModule, MaxUnpool2d as MaxUnpoolModule
from . import memory
from .receptive_field import ReceptiveField, Window, forward_figures, input_windows, receptive_field

__all__ = ["summary", "Summary", "Row", "receptive_window"]


@dataclass
class Row:
    """One call of a leaf module."""

    name: str
    type: str
    output_shape: tuple
    trainable: int  # parameters, counted at a module's first call only
    frozen: int
    macs: int
    saved_bytes: int  # what the graph keeps for this layer's backward
    receptive_field: ReceptiveField | None  # None: the output does not depend on the input


@dataclass(repr=False)
class Summary:
    """What ``summary`` returns; ``print(summary)`` shows the table."""

    rows: list
    input_size: tuple
    output_shape: tuple
    total_params: int
    trainable_params: int
    macs: int
    activation_bytes: int  # everything the graph keeps for backward after forward
    other_saved_bytes: int  # ... of which by ops outside leaf modules (a U-Net's cat, a skip's add)
    peak_bytes: int  # measured peak over forward + backward, above what existed before
    receptive_field: tuple  # (rows, cols) size of the output's receptive field

    def __str__(self):
        return format_table(self)

    __repr__ = __str__


# =========================================================================== recording the leaf modules' calls
class _Call:
    """What a forward hook notes about one call of a leaf module: graph nodes and shapes, never arrays.

    (Keeping the output Tensors would keep alive arrays that a training step frees
    at once -- the memory figures would be wrong.)
    """

    __slots__ = ("name", "module", "input_nodes", "input_numel", "output_node", "output_shape", "returns_source")

    def __init__(self, name, module, inputs, output, source):
        self.name, self.module = name, module
        self.input_nodes = {t.grad_fn for t in inputs}
        self.input_numel = inputs[0].numel() if inputs else 0
        self.output_node = output.grad_fn if output is not None else None
        self.output_shape = tuple(output.shape) if output is not None else ()
        self.returns_source = output is source  # an Identity on the input


def _first_tensor(value):
    """The first Tensor in a module's output (MaxPool2d with indices returns a tuple)."""
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (tuple, list)):
        return next((v for v in value if isinstance(v, Tensor)), None)
    if isinstance(value, dict):
        return _first_tensor(list(value.values()))
    return None


def _run_recorded(model, x):
    """Run ``model(x)`` with a forward hook on every leaf module; returns (output, [_Call, ...] in order)."""
    names = {}
    for name, module in model.named_modules():
        names.setdefault(id(module), name or type(module).__name__)
    calls, handles = [], []

    def hook(module, inputs, output):
        tensors = tuple(t for t in inputs if isinstance(t, Tensor))
        calls.append(_Call(names[id(module)], module, tensors, _first_tensor(output), x))

    for module in model.modules():
        if not module._modules:  # a leaf: no children
            handles.append(module.register_forward_hook(hook))
    try:
        output = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return _first_tensor(output), calls


def _window_hint(call):
    """Max pooling and unpooling nodes forget their window; their module remembers it."""
    node, m = call.output_node, call.module
    if isinstance(m, MaxPoolModule) and node is not None:
        kernel, stride, padding, dilation = (pair(getattr(m, name), name, repr(m))
                                             for name in ("kernel_size", "stride", "padding", "dilation"))
        return node, tuple(Window("gather", kernel[a], stride[a], padding[a], dilation[a]) for a in range(2))
    if isinstance(m, MaxUnpoolModule) and node is not None:
        return node, tuple(Window("scatter", m.kernel_size[a], m.stride[a], m.padding[a]) for a in range(2))
    return None


def _macs(call):
    """Multiply-accumulates of a convolution or linear layer (0 for the rest).

    Every output value of a conv is a dot product of length C_in/groups * kh * kw
    (the weight's shape after its first axis); a transposed conv does that many per
    *input* value; a linear layer in_features per output value.
    """
    weight = getattr(call.module, "weight", None)
    if not isinstance(weight, Tensor) or weight.ndim not in (2, 4):
        return 0
    per_value = int(np.prod(weight.shape[1:]))
    values = call.input_numel if isinstance(call.module, ConvTransposeModule) else int(np.prod(call.output_shape))
    return values * per_value


# =========================================================================== the two passes
def _layout_pass(model, x_array):
    """Pass 1: per call (name, type, output shape, MACs, receptive field), and the output's receptive field."""
    x = Tensor(x_array, requires_grad=True)
    output, calls = _run_recorded(model, x)
    hints = dict(hint for hint in map(_window_hint, calls) if hint is not None)
    roots = [c.output_node for c in calls if c.output_node is not None] + [output.grad_fn]
    figures = forward_figures([r for r in roots if r is not None], x, hints)
    layout = []
    for call in calls:
        if call.returns_source:  # an Identity on the input: each pixel sees itself
            field = ReceptiveField((1, 1), (Fraction(1), Fraction(1)), (0, 0))
        else:
            field = receptive_field(call.output_node, x, figures, hints)
        layout.append((call.name, type(call.module).__name__, call.output_shape, _macs(call), field, call.module))
    out_field = receptive_field(output.grad_fn, x, figures, hints)
    return layout, tuple(output.shape), out_field


def _layer_nodes(calls):
    """The graph nodes each call made, in execution order.

    Walk back from the call's output until its inputs' nodes (made before the call)
    or nodes an earlier call already claimed.
    """
    claimed, groups = set(), []
    for call in calls:
        stop = call.input_nodes | claimed
        mine, stack = set(), [call.output_node]
        while stack:
            node = stack.pop()
            if node is None or node in stop or node in mine:
                continue
            mine.add(node)
            stack.extend(e for e in node.next_edges if isinstance(e, Function))
        claimed |= mine
        groups.append(mine)
    return groups


def _memory_pass(model, x_array, device):
    """Pass 2: bytes saved per call (+ outside any leaf module), and the peak over forward + backward."""
    from ..kernels.cpu.conv import scratch

    x = Tensor(x_array)
    # The fast convolutions reuse one column buffer per thread (kernels/cpu/conv.py). Drop them,
    # so the peak counts them as a first training step does, whatever ran before.
    scratch.drop()
    with memory.PeakMeter(device) as meter:
        output, calls = _run_recorded(model, x)
        groups = _layer_nodes(calls)
        everything = memory.graph_nodes([output.grad_fn])
        other = everything.difference(*groups)
        kept = [p._array for p in model.parameters()] + [b._array for b in model.buffers()]
        per_group = memory.saved_bytes(groups + [other], exclude=kept)
        if output.requires_grad:
            output.backward(output.new_ones(output.shape))
        del output, calls, groups, everything, other
    return per_group[:-1], per_group[-1], meter.peak


class _Preserved:
    """Restore the parameters' gradients and the buffers' values (running statistics) on exit."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.grads = [(p, p.grad) for p in self.model.parameters()]
        self.buffers = [(b, b._array.copy()) for b in self.model.buffers()]
        for p, _ in self.grads:
            p.grad = None
        return self

    def __exit__(self, *exc):
        for p, grad in self.grads:
            p.grad = grad
        for b, values in self.buffers:
            b._array[...] = values
        return False


def summary(model, input_size, dtype="float32", device="cpu"):
    """Run ``model`` once on a random input of ``input_size`` = (N, C, H, W) and describe it layer by layer.

    The model must already be on ``device`` and in the wanted mode (``train()``
    counts what training keeps: batch norm's inputs, dropout's masks). Returns a
    ``Summary``; print it for the table. Gradients and buffers are restored
    afterwards; the random generator is not (dropout draws from it).
    """
    device, dtype = Device(device), dtypes.as_dtype(dtype)
    x_array = to_device(np.random.default_rng(0).standard_normal(tuple(input_size)).astype(dtype), device)
    with _Preserved(model):
        layout, output_shape, out_field = _layout_pass(model, x_array)
        per_call, other, peak = _memory_pass(model, x_array, device)
    rows, counted = [], set()
    for (name, kind, shape, macs, field, module), saved in zip(layout, per_call):
        first_call = id(module) not in counted
        counted.add(id(module))
        params = list(module.parameters(recurse=False)) if first_call else []
        trainable = sum(p.numel() for p in params if p.requires_grad)
        rows.append(Row(name if first_call else f"{name} (again)", kind, shape, trainable,
                        sum(p.numel() for p in params) - trainable, macs, saved, field))
    parameters = list(model.parameters())
    return Summary(
        rows=rows, input_size=tuple(input_size), output_shape=output_shape,
        total_params=sum(p.numel() for p in parameters),
        trainable_params=sum(p.numel() for p in parameters if p.requires_grad),
        macs=sum(r.macs for r in rows), activation_bytes=sum(per_call) + other, other_saved_bytes=other,
        peak_bytes=peak, receptive_field=out_field.size if out_field is not None else (0, 0),
    )


def receptive_window(model, x, pixel, clip=True):
    """The receptive field of one output pixel: ((top, bottom), (left, right)), inclusive, on the input ``x``.

    ``x`` (N, C, H, W) is the input (a Tensor or an array); ``pixel`` = (row, col) of
    the output. Runs one forward. The input pixels that can change output[..., row, col]
    are exactly this rectangle, when no layer leaves holes (no dilation, no stride
    larger than its kernel). ``clip=False`` gives the window before clipping to the
    image: it may start at negative rows (the zero padding) and end beyond the image.
    A pixel that depends on no input pixel gets an empty window (top > bottom).
    """
    x = Tensor(getattr(x, "_array", x), requires_grad=True)
    output, calls = _run_recorded(model, x)
    hints = dict(hint for hint in map(_window_hint, calls) if hint is not None)
    (top, bottom), (left, right) = input_windows(output.grad_fn, x, ([pixel[0]], [pixel[1]]), hints, clip=clip)
    return (int(top[0]), int(bottom[0])), (int(left[0]), int(right[0]))


# =========================================================================== the table
def human_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def human_count(n):
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return str(int(n))


def _per_axis(pair):
    """(rows, cols) -> "2" when both are 2, else "2x1"; "-" for None."""
    if pair is None:
        return "-"
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def format_table(s):
    """The Summary as text: a rule, the header, one line per row, a rule, the totals."""
    headers = ("Layer", "Type", "Output shape", "Params (train/frozen)", "MACs", "Saved for backward",
               "RF size", "RF jump", "RF start")
    lines = []
    for r in s.rows:
        rf = r.receptive_field
        field = ("-", "-", "-") if rf is None else (
            f"{rf.size[0]}x{rf.size[1]}", _per_axis(rf.jump), f"{rf.start[0]},{rf.start[1]}")
        params = f"{r.trainable:,}/{r.frozen:,}" if r.trainable or r.frozen else "-"
        lines.append((r.name, r.type, str(r.output_shape), params, human_count(r.macs) if r.macs else "-",
                      human_bytes(r.saved_bytes) if r.saved_bytes else "-") + field)
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(headers)]

    def row(cells):  # text columns left-aligned, numbers right-aligned
        return "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    rule = "-" * len(row(headers))
    totals = [
        f"input {s.input_size} -> output {s.output_shape}",
        f"parameters: {s.total_params:,} ({s.trainable_params:,} trainable, {s.total_params - s.trainable_params:,} frozen)",
        f"multiply-accumulates per forward: {human_count(s.macs)}",
        f"kept for backward after forward: {human_bytes(s.activation_bytes)}"
        + (f" (of which {human_bytes(s.other_saved_bytes)} by ops outside leaf modules)" if s.other_saved_bytes else ""),
        f"measured peak over forward + backward: {human_bytes(s.peak_bytes)}",
        f"receptive field of the output: {s.receptive_field[0]}x{s.receptive_field[1]} input pixels",
    ]
    return "\n".join([rule, row(headers), rule, *map(row, lines), rule, *totals])
