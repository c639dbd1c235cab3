"""Every 2-rank check of tests/test_distributed.py, in one mpiexec run (starting MPI costs seconds).

    mpiexec -n 2 python tests/distributed/checks.py RESULT.json

Each rank runs every check; rank 0 writes {check name: {"rank 0": value, "rank 1": value}}
to RESULT.json, where a value is a number (a largest difference) or a string. The
tests read that file and assert, so a failure names the check and both ranks' values.
The one-process references are computed inside each rank: it has the whole batch.
"""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import minidl  # noqa: E402
import minidl.distributed as dist  # noqa: E402
import minidl.nn as nn  # noqa: E402
import minidl.nn.functional as F  # noqa: E402
from minidl import optim  # noqa: E402
from minidl.nn.parallel import DistributedDataParallel  # noqa: E402

dist.init_process_group()
RANK, WORLD = dist.get_rank(), dist.get_world_size()
results = {}


def record(name, value):
    results[name] = float(value) if isinstance(value, (int, float, np.floating, np.integer)) else str(value)


def largest_difference(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) if np.size(a) else 0.0


# --------------------------------------------------------------------------- collectives against NumPy
def rank_input(rank, dtype):
    """What rank ``rank`` contributes: known values, different on each rank."""
    return (np.arange(12).reshape(3, 4) * (rank + 1) - 5 * rank).astype(dtype)


everyone = {dtype: np.stack([rank_input(r, dtype) for r in range(WORLD)]) for dtype in (np.float64, np.int64)}
for dtype, stacked in everyone.items():
    for op, expected in (("sum", stacked.sum(0)), ("max", stacked.max(0)), ("min", stacked.min(0))):
        t = minidl.tensor(rank_input(RANK, dtype))
        dist.all_reduce(t, op)
        record(f"all_reduce {op} {np.dtype(dtype).name}", largest_difference(t.numpy(), expected))
t = minidl.tensor(rank_input(RANK, np.float64))
dist.all_reduce(t, "mean")
record("all_reduce mean float64", largest_difference(t.numpy(), everyone[np.float64].mean(0)))
t = minidl.tensor(rank_input(RANK, np.float64))
view = t.T  # a non-contiguous view: reduced through a contiguous copy, written back into t
dist.all_reduce(view, "sum")
record("all_reduce of a transposed view", largest_difference(t.numpy(), everyone[np.float64].sum(0)))
t = minidl.tensor(rank_input(RANK, np.float64))
work = dist.all_reduce(t, "sum", async_op=True)
work.wait()
record("all_reduce async_op", largest_difference(t.numpy(), everyone[np.float64].sum(0)))
t = minidl.tensor(rank_input(RANK, np.float32))
dist.broadcast(t, src=WORLD - 1)
record("broadcast from the last rank", largest_difference(t.numpy(), rank_input(WORLD - 1, np.float32)))
gathered = [minidl.zeros(3, 4, dtype=minidl.int64) for _ in range(WORLD)]
dist.all_gather(gathered, minidl.tensor(rank_input(RANK, np.int64)))
record("all_gather", max(largest_difference(g.numpy(), rank_input(r, np.int64)) for r, g in enumerate(gathered)))
names = [None] * WORLD
dist.all_gather_object(names, f"rank{RANK}")
record("all_gather_object", ",".join(names))


# --------------------------------------------------------------------------- models and data
def plain_net():
    """Conv, ReLU, conv: a small segmentation head without BatchNorm. (N, 3, 8, 8) -> (N, 4, 8, 8)."""
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 1)).double()


def batchnorm_net():
    """Conv, BatchNorm, ReLU, conv, BatchNorm: statistics that span the whole batch matter."""
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.Conv2d(6, 4, 1), nn.BatchNorm2d(4)).double()


data = np.random.default_rng(7)
images = data.standard_normal((4, 3, 8, 8))          # the full batch: 4 images
labels = data.integers(0, 4, (4, 8, 8))              # every pixel labelled: equal counts per rank
share = slice(RANK * 4 // WORLD, (RANK + 1) * 4 // WORLD)  # this rank's 4 / W images


def seeded(build, seed):
    minidl.manual_seed(seed)
    return build()


def train(model, x, y, steps=3):
    """3 steps of SGD with momentum on (x, y); returns the model."""
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(steps):
        loss = F.cross_entropy(model(minidl.tensor(x)), minidl.tensor(y))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def compare_states(name, model, reference):
    """Largest difference between a trained model's state and the one-process reference's, and across ranks."""
    mine = {k: v.numpy() for k, v in model.state_dict().items()}
    theirs = {k: v.numpy() for k, v in reference.state_dict().items()}
    record(f"{name}: parameters vs one process", max(largest_difference(mine[k], theirs[k]) for k in theirs))
    flat = np.concatenate([v.reshape(-1).astype(np.float64) for v in mine.values()])
    copies = dist.all_gather_array(flat)
    record(f"{name}: ranks differ by", largest_difference(copies[0], copies[-1]))


# --------------------------------------------------------------------------- equivalence
# Each rank starts from different weights (its own seed): DDP must broadcast rank 0's.
reference = train(seeded(plain_net, 100), images, labels)
ddp = DistributedDataParallel(seeded(plain_net, 100 + RANK))
train(ddp, images[share], labels[share])
compare_states("no BatchNorm", ddp.module, reference)

reference = train(seeded(batchnorm_net, 200), images, labels)
ddp = DistributedDataParallel(nn.SyncBatchNorm.convert_sync_batchnorm(seeded(batchnorm_net, 200 + RANK)))
train(ddp, images[share], labels[share])
compare_states("SyncBatchNorm", ddp.module, reference)
record("SyncBatchNorm: layers converted", sum(isinstance(m, nn.SyncBatchNorm) for m in ddp.modules()))


# --------------------------------------------------------------------------- buckets
def gradients(model):
    return [p.grad.numpy().copy() for p in model.parameters()]


def one_backward(model):
    model.zero_grad()
    F.cross_entropy(model(minidl.tensor(images[share])), minidl.tensor(labels[share])).backward()
    return gradients(model)


local = seeded(plain_net, 300)
by_hand = one_backward(local)           # per-parameter reduction, by hand
for g in by_hand:
    dist.all_reduce(g, "mean")
for label, options in (("one bucket", dict(bucket_cap_mb=4)), ("a bucket per parameter", dict(bucket_cap_mb=0)),
                       ("1 KB buckets", dict(bucket_cap_mb=1 / 1024)),
                       ("1 KB buckets without overlap", dict(bucket_cap_mb=1 / 1024, overlap=False))):
    wrapped = DistributedDataParallel(seeded(plain_net, 300), **options)
    grads = one_backward(wrapped)
    record(f"bucketing, {label}: buckets", len(wrapped.reducer.buckets))
    record(f"bucketing, {label}: vs per-parameter all_reduce", max(largest_difference(a, b) for a, b in zip(grads, by_hand)))

# Gradient accumulation: a no_sync backward, then a synchronised one, average the sum of both.
wrapped = DistributedDataParallel(seeded(plain_net, 300))
wrapped.zero_grad()
with wrapped.no_sync():
    F.cross_entropy(wrapped(minidl.tensor(images[share][:1])), minidl.tensor(labels[share][:1])).backward()
F.cross_entropy(wrapped(minidl.tensor(images[share][1:])), minidl.tensor(labels[share][1:])).backward()
single = seeded(plain_net, 300)
per_image = [F.cross_entropy(single(minidl.tensor(images[i : i + 1])), minidl.tensor(labels[i : i + 1])) for i in range(4)]
(sum(per_image[1:], per_image[0]) / WORLD).backward()
record("no_sync accumulation vs one process", max(largest_difference(a, b) for a, b in zip(gradients(wrapped), gradients(single))))


# --------------------------------------------------------------------------- errors every rank raises alike
def error_of(action):
    try:
        action()
    except RuntimeError as error:
        return str(error)
    return "no error"


record("different models", error_of(lambda: DistributedDataParallel(
    nn.Sequential(nn.Conv2d(3, 6 + RANK, 3), nn.Conv2d(6 + RANK, 4, 1)))))


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.body, self.head, self.spare = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1)

    def forward(self, x):
        return self.head(self.body(x))


record("unused parameter", error_of(lambda: DistributedDataParallel(TwoHeads())(minidl.randn(1, 3, 4, 4))))
wrapped = DistributedDataParallel(TwoHeads(), find_unused_parameters=True)
wrapped(minidl.randn(2, 3, 4, 4)).sum().backward()
record("unused parameter allowed: spare gradient", float(np.abs(wrapped.module.spare.weight.grad.numpy()).max()))

# --------------------------------------------------------------------------- results
collected = [None] * WORLD
dist.all_gather_object(collected, results)
if RANK == 0:
    merged = {name: {f"rank {r}": collected[r].get(name) for r in range(WORLD)} for name in results}
    Path(sys.argv[1]).write_text(json.dumps(merged, indent=1))
