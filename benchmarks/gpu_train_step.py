"""SegNetSmall's SGD-momentum training step on a GPU: minidl (CuPy) against PyTorch CUDA, same weights, same batch.

    python benchmarks/gpu_train_step.py --out RESULTS/train_step.json     # what benchmarks/gpu_check.sh runs

Both libraries start from the same weights (minidl's, copied into benchmarks/torch_models.py's twin)
and the same random batch; TF32 is off in PyTorch so that both compute in plain float32, and the
first step's losses must agree. Then ``--steps`` steps of each are timed in alternation after
``--warmup`` untimed ones, each step timed to the device's end (synchronised); the medians, their
ratio (the issue's goal: minidl within 1.5x of PyTorch) and each library's peak device memory over
one step (CuPy's memory pool through a memory hook; ``torch.cuda.max_memory_allocated``) go to
``--out`` as JSON and to stdout.

Without a GPU, tests/test_gpu_check.py runs this file's code on the strict CuPy stand-in with
PyTorch on the CPU (``--torch-device cpu``): the code paths, not the figures.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # minidl from this checkout; torch_models beside this file

import minidl  # noqa: E402
import minidl.nn.functional as F  # noqa: E402
from minidl import optim  # noqa: E402
from minidl.models import SegNetSmall  # noqa: E402
from minidl.summary.memory import PeakMeter  # noqa: E402

LR, MOMENTUM, CLASSES = 0.01, 0.9, 23


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=240, help="square images of this side")
    parser.add_argument("--steps", type=int, default=10, help="timed steps of each library")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda", help="minidl's device")
    parser.add_argument("--torch-device", default="cuda", help="PyTorch's device (cpu only to test this file)")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    return parser.parse_args(argv)


def make_batch(batch, size, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((batch, 3, size, size)).astype(np.float32),
            rng.integers(-1, CLASSES, (batch, size, size)).astype(np.int64))


class Step:
    """One training step on a fixed batch: the loss, backward, the optimizer's step, then a wait for the device."""

    def __call__(self):
        loss = self.loss()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.sync()
        return loss


class MinidlStep(Step):
    def __init__(self, model, images, masks, device):
        self.model = model.to(device)
        self.optimizer = optim.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM)
        self.x, self.y = minidl.tensor(images, device=device), minidl.tensor(masks, device=device)
        self.device = minidl.device(device)
        self.sync = minidl.backend.cupy_module().cuda.Device(self.device.index).synchronize \
            if self.device.type == "cuda" else (lambda: None)

    def loss(self):
        return F.cross_entropy(self.model(self.x), self.y, ignore_index=-1)

    def peak_bytes(self):
        with PeakMeter(self.device) as meter:
            self()
        return meter.peak


class TorchStep(Step):
    def __init__(self, minidl_model, images, masks, device):
        import torch
        from torch_models import SegNetSmall as TorchSegNetSmall, copy_weights

        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # plain float32, as CuPy
        self.torch, self.device = torch, torch.device(device)
        model = TorchSegNetSmall(CLASSES)
        copy_weights(minidl_model, model)
        self.model = model.to(self.device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM)
        self.x, self.y = torch.from_numpy(images).to(self.device), torch.from_numpy(masks).to(self.device)
        self.sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)

    def loss(self):
        return self.torch.nn.functional.cross_entropy(self.model(self.x), self.y, ignore_index=-1)

    def peak_bytes(self):
        if self.device.type != "cuda":
            return None
        cuda = self.torch.cuda
        base = cuda.memory_allocated()
        cuda.reset_peak_memory_stats()
        self()
        return cuda.max_memory_allocated() - base


def alternate(steps, count, warmup):
    """Seconds per step of each callable, timed in alternation (A B A B ...) after warm-up: the medians."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    times = {name: [] for name in steps}
    for _ in range(count):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(seconds) for name, seconds in times.items()}


def measure(args):
    images, masks = make_batch(args.batch, args.size)
    minidl.manual_seed(0)
    model = SegNetSmall(CLASSES)
    torch_step = TorchStep(model, images, masks, args.torch_device)  # copies the weights while they are on the CPU
    minidl_step = MinidlStep(model, images, masks, args.device)
    first = {"minidl": float(minidl_step()), "torch": float(torch_step().item())}
    figures = {"batch": args.batch, "size": args.size, "steps": args.steps, "minidl device": str(minidl_step.device),
               "torch device": str(torch_step.device), "first loss minidl": first["minidl"],
               "first loss torch": first["torch"],
               "first loss relative difference": abs(first["minidl"] - first["torch"]) / abs(first["torch"])}
    seconds = alternate({"minidl": minidl_step, "torch": torch_step}, args.steps, args.warmup)
    figures.update({"minidl s/step": seconds["minidl"], "torch s/step": seconds["torch"],
                    "time ratio (minidl/torch)": seconds["minidl"] / seconds["torch"],
                    "minidl img/s": args.batch / seconds["minidl"], "torch img/s": args.batch / seconds["torch"],
                    "minidl peak device bytes": minidl_step.peak_bytes(),
                    "torch peak device bytes": torch_step.peak_bytes()})
    return figures


def main(argv=None):
    args = parse_args(argv)
    figures = measure(args)
    text = json.dumps(figures, indent=2)
    print(text, flush=True)
    if args.out:
        args.out.write_text(text + "\n")
    if figures["first loss relative difference"] > 1e-3:
        raise SystemExit(f"first-step losses disagree: minidl {figures['first loss minidl']}, "
                         f"torch {figures['first loss torch']}")
    return figures


if __name__ == "__main__":
    main()
