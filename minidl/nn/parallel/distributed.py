"""``DistributedDataParallel``: one model per rank, gradients averaged across ranks in backward.

Each rank runs the wrapped model on its own share of the batch. If every rank's
loss is the mean over its share, the average of the ranks' gradients is the
gradient of the mean loss over the whole batch -- what one process would get.
So after ``loss.backward()`` every parameter's ``.grad`` holds that average, on
every rank, and identical optimiser steps keep the copies identical.

What happens, and where
-----------------------
1. Construction (``DistributedDataParallel.__init__``): the ranks check that they
   hold the same model (parameter names, shapes, dtypes; the error names the first
   difference), then rank 0's parameters and buffers are broadcast to all. The
   parameters are assigned to *buckets* (``assign_buckets``).
2. Forward (``Reducer.prepare_for_backward``): after the wrapped model's forward,
   the graph is rewired: every edge that led into a parameter now leads into a
   small ``_GradReady`` node in front of it. The engine sums all the gradient
   contributions of a node before running it, so that node's backward is called
   exactly once, with the parameter's complete gradient: the parameter is *ready*.
3. Backward (``Reducer.gradient_ready``): a ready gradient is copied into its
   bucket's flat buffer. When a bucket is full, its all-reduce starts at once
   (non-blocking with ``overlap=True``) while backward goes on with earlier layers.
   Buckets are filled from the last parameter to the first, the order in which
   backward produces their gradients, and started strictly in bucket order, so
   every rank issues the same collectives in the same order.
4. When the last bucket has started (``Reducer.finish``): wait for each, divide
   by the world size and write the averages into the parameters' ``.grad``.

Why buckets
-----------
A collective costs a fixed latency plus its bytes over the bandwidth. One
all-reduce per parameter pays the latency once per tensor, and most tensors of a
conv net are tiny (biases, BatchNorm weights). Flattening the gradients into a
few buffers of a few MB pays it a few times. Between machines the latency is
tens of microseconds (Ethernet), so dozens of extra all-reduces cost
milliseconds every step. Buckets of a few MB rather than one buffer let the
first buckets travel while backward still computes the rest (``overlap``).
``benchmarks/distributed.py`` measures the three layouts (one per parameter,
4 MB buckets, one buffer); docs/performance.md has the figures.
"""
from __future__ import annotations

import contextlib
import itertools

import numpy as np

from ... import distributed as dist
from ..._tensor import Tensor
from ...autograd.function import Function
from ...autograd.grad_mode import is_grad_enabled
from ...backend import array_module, on_device
from ..module import Module

__all__ = ["DistributedDataParallel", "assign_buckets"]


class DistributedDataParallel(Module):
    """Wrap ``module`` so that backward averages its gradients across all ranks.

        dist.init_process_group()
        model = DistributedDataParallel(build_model(...))
        loss = F.cross_entropy(model(x_local), y_local)   # x_local: this rank's (N / W, ...) share
        loss.backward()                                   # .grad = the average over all ranks
        optimizer.step()

    bucket_cap_mb: size of the gradient buckets (one all-reduce each); 0 gives one per parameter.
    broadcast_buffers: before each training forward, copy rank 0's buffers (e.g. BatchNorm's
        running statistics) to every rank, as PyTorch does. (SyncBatchNorm keeps them equal anyway.)
    find_unused_parameters: allow parameters that get no gradient in some iteration (found by
        walking the graph after forward; they count as zero). Otherwise that is an error naming them.
        A parameter no rank used ends with a zero ``.grad`` (PyTorch leaves it unchanged).
    overlap: start each bucket's all-reduce as soon as it is full, while backward continues
        (non-blocking MPI); False waits for each bucket's all-reduce at once.

    ``state_dict()`` keys get a ``module.`` prefix (as in PyTorch); save ``ddp.module.state_dict()``
    for checkpoints that load into the bare model. ``with ddp.no_sync():`` skips averaging
    (gradient accumulation: the next synchronised backward averages the accumulated sum).
    Every use of a parameter must happen inside the wrapped module's forward.
    """

    def __init__(self, module, bucket_cap_mb=4.0, broadcast_buffers=True, find_unused_parameters=False, overlap=True):
        super().__init__()
        self.module = module
        self.broadcast_buffers = broadcast_buffers
        self.find_unused_parameters = find_unused_parameters
        self._sync_enabled = True
        # A communicator of our own: the buckets' collectives can never be mistaken for
        # another library's (SyncBatchNorm's, the user's) issued in between.
        self._group = dist.new_group()
        _check_same_model(module, self._group)
        everything = itertools.chain(module.parameters(), module.buffers())
        dist.broadcast_coalesced([tensor._array for tensor in everything], src=0, group=self._group)
        named = [(name, param) for name, param in module.named_parameters() if param.requires_grad]
        self.reducer = Reducer([p for _, p in named], [n for n, _ in named], bucket_cap_mb, self._group, overlap)

    def forward(self, *inputs, **kwargs):
        buffers = [buffer._array for buffer in self.module.buffers()]
        if self.broadcast_buffers and self.training and buffers:
            dist.broadcast_coalesced(buffers, src=0, group=self._group)
        output = self.module(*inputs, **kwargs)
        if self._sync_enabled and is_grad_enabled() and self.reducer.params:
            self.reducer.prepare_for_backward(output, self.find_unused_parameters)
        return output

    @contextlib.contextmanager
    def no_sync(self):
        """Inside, forward/backward only accumulate local gradients (no communication)."""
        previous, self._sync_enabled = self._sync_enabled, False
        try:
            yield
        finally:
            self._sync_enabled = previous

    def extra_repr(self):
        sizes = ", ".join(f"{bucket.buffer.nbytes / 2**20:.3g}" for bucket in self.reducer.buckets)
        return f"world_size={self._group.size}, buckets of [{sizes}] MB"


# --------------------------------------------------------------------------- construction
def _check_same_model(module, group):
    """Raise the same error on every rank if the ranks' models differ in names, shapes or dtypes."""
    def describe(entry):
        return "nothing" if entry is None else f"{entry[0]} '{entry[1]}' of shape {entry[2]} and dtype {entry[3]}"

    mine = [(kind, name, tuple(t.shape), str(t.dtype))
            for kind, items in (("parameter", module.named_parameters()), ("buffer", module.named_buffers()))
            for name, t in items]
    everyone = [None] * group.size
    dist.all_gather_object(everyone, mine, group)
    reference = everyone[0]
    for rank, theirs in enumerate(everyone[1:], start=1):
        for ours, other in itertools.zip_longest(reference, theirs):
            if ours != other:
                raise RuntimeError(
                    f"DistributedDataParallel: the ranks hold different models. First difference: rank 0 has "
                    f"{describe(ours)}, rank {rank} has {describe(other)}. Every rank must build the same model."
                )


def assign_buckets(params, bucket_cap_mb):
    """Group parameter indices into buckets of at most ``bucket_cap_mb`` MB, last parameter first.

    Backward produces gradients roughly from the output back to the input, i.e. in
    reverse order of ``parameters()``, so reversed buckets fill (and can start their
    all-reduce) early. A bucket holds one dtype on one device; a parameter larger than
    the cap gets a bucket of its own. Returns a list of lists of indices into ``params``.
    """
    cap = bucket_cap_mb * 2**20
    buckets, current, size = [], [], 0
    for index in reversed(range(len(params))):
        param = params[index]
        kind = (param.dtype, param.device)
        if current and (size + param._array.nbytes > cap or kind != (params[current[0]].dtype, params[current[0]].device)):
            buckets.append(current)
            current, size = [], 0
        current.append(index)
        size += param._array.nbytes
    if current:
        buckets.append(current)
    return buckets


# --------------------------------------------------------------------------- backward
class _GradReady(Function):
    """Identity on a parameter, put in front of it by DDP. Its backward receives the parameter's
    summed gradient, hands it to the reducer, and passes nothing on: the reducer writes ``.grad``."""

    @staticmethod
    def forward(ctx, param):
        return param

    @staticmethod
    def backward(ctx, grad):
        ctx.reducer.gradient_ready(ctx.index, grad, ctx.iteration)
        return None


class _Bucket:
    """The gradients of a few parameters, end to end in one flat buffer (one all-reduce for all of them)."""

    def __init__(self, indices, params):
        self.indices = indices
        self.offsets = np.cumsum([0] + [params[i].numel() for i in indices]).tolist()
        first = params[indices[0]]
        with on_device(first.device):
            self.buffer = array_module(first._array).zeros(self.offsets[-1], dtype=first.dtype)
        self.waiting = 0  # gradients still to arrive in this backward
        self.work = None  # the all-reduce in flight

    def slot(self, position):
        """The part of the buffer that holds the ``position``-th parameter's gradient (a view)."""
        return self.buffer[self.offsets[position] : self.offsets[position + 1]]


class Reducer:
    """Collects gradients into buckets during backward and averages them across ranks."""

    def __init__(self, params, names, bucket_cap_mb, group, overlap):
        self.params, self.names, self.group, self.overlap = params, names, group, overlap
        self.buckets = [_Bucket(indices, params) for indices in assign_buckets(params, bucket_cap_mb)] if params else []
        self.place = {i: (bucket, position) for bucket in self.buckets for position, i in enumerate(bucket.indices)}
        self.iteration = 0
        self.used = set(range(len(params)))
        self._arm()

    def _arm(self):
        """Get ready for a backward: every bucket waits for the gradients of its used parameters."""
        for bucket in self.buckets:
            bucket.waiting = sum(1 for i in bucket.indices if i in self.used)
            bucket.work = None
        self.next_bucket = 0  # buckets are started strictly in this order, on every rank
        self.arrived = set()  # indices of the parameters whose gradient has arrived

    def prepare_for_backward(self, outputs, find_unused_parameters):
        """Rewire the graph behind ``outputs`` so that each parameter's gradient passes through a _GradReady node."""
        self._check_previous_backward_finished()
        self.iteration += 1
        index_of = {id(param): index for index, param in enumerate(self.params)}
        hooks = {}  # parameter index -> its _GradReady node (one per parameter, shared by all its uses)

        def hook(index):
            if index not in hooks:
                node = _GradReady.apply(self.params[index]).grad_fn
                node.reducer, node.index, node.iteration = self, index, self.iteration
                hooks[index] = node
            return hooks[index]

        stack = [t.grad_fn for t in _tensors_in(outputs) if t.grad_fn is not None]
        seen = set(stack)
        while stack:
            node = stack.pop()
            edges = node.next_edges
            if any(id(edge) in index_of for edge in edges):
                node.next_edges = tuple(hook(index_of[id(e)]) if id(e) in index_of else e for e in edges)
            for edge in edges:
                if isinstance(edge, Function) and edge not in seen:
                    seen.add(edge)
                    stack.append(edge)

        self.used = set(hooks)
        unused = [self.names[i] for i in range(len(self.params)) if i not in self.used]
        if unused and not find_unused_parameters:
            raise RuntimeError(
                f"DistributedDataParallel: {len(unused)} parameter(s) take no part in computing the output, e.g. "
                f"{', '.join(unused[:5])}. Their gradients could not be averaged; pass find_unused_parameters=True "
                f"(or freeze them with requires_grad_(False) before wrapping)."
            )
        self._arm()

    def _check_previous_backward_finished(self):
        if self.arrived:  # some gradients arrived, but not all: finish() never ran
            missing = [self.names[i] for i in sorted(self.used - self.arrived)]
            raise RuntimeError(
                "DistributedDataParallel: the previous backward did not produce gradients for every parameter "
                f"used in forward (e.g. {', '.join(missing[:5])}), so gradients were not averaged. Compute the loss "
                "from all of the model's outputs, or pass find_unused_parameters=True."
            )

    def gradient_ready(self, index, grad, iteration):
        """Called from backward with parameter ``index``'s complete gradient (a raw array)."""
        if iteration != self.iteration:
            raise RuntimeError("DistributedDataParallel: backward reached the graph of an earlier forward; "
                               "run backward once after each forward (or use no_sync()).")
        bucket, position = self.place[index]
        slot = bucket.slot(position)
        slot[...] = grad.reshape(-1)
        param = self.params[index]
        if param.grad is not None:  # accumulate as .grad would (no_sync steps before, retain_graph)
            slot += param.grad._array.reshape(-1)
        bucket.waiting -= 1
        self.arrived.add(index)
        for earlier in self.buckets[: self.next_bucket]:
            earlier.work.is_completed()  # lets MPI progress the started all-reduces meanwhile
        self._start_ready_buckets()

    def _start_ready_buckets(self):
        while self.next_bucket < len(self.buckets) and self.buckets[self.next_bucket].waiting == 0:
            bucket = self.buckets[self.next_bucket]
            for position, i in enumerate(bucket.indices):
                if i not in self.used:  # find_unused_parameters: this rank contributes zero (or its old .grad)
                    grad = self.params[i].grad
                    bucket.slot(position)[...] = 0 if grad is None else grad._array.reshape(-1)
            bucket.work = dist.all_reduce(bucket.buffer, "sum", group=self.group, async_op=True)
            if not self.overlap:
                bucket.work.wait()
            self.next_bucket += 1
        if self.next_bucket == len(self.buckets):
            self.finish()

    def finish(self):
        """Wait for every bucket, average, and write each parameter's ``.grad``."""
        for bucket in self.buckets:
            bucket.work.wait()
            bucket.buffer /= self.group.size
            for position, i in enumerate(bucket.indices):
                param = self.params[i]
                param.grad = Tensor._from_array(bucket.slot(position).reshape(param.shape).copy())
        self._arm()  # the same graph may run backward again (retain_graph=True)


def _tensors_in(outputs):
    """The Tensors in a model's output: a Tensor, or tuples/lists/dicts of them."""
    if isinstance(outputs, Tensor):
        return [outputs]
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    if isinstance(outputs, (list, tuple)):
        return [t for item in outputs for t in _tensors_in(item)]
    return []
