"""SegNetSmall SGD-momentum training steps: minidl against PyTorch CPU, same weights, same data.

    python benchmarks/train_step.py                  # both configurations, writes benchmarks/results/train_step.md
    python benchmarks/train_step.py --quick          # batch 4 at 128x128 only

Timing alternates minidl and PyTorch steps in one process (medians after
warm-up). Peak memory is measured in a fresh subprocess per library, since a
process's peak RSS cannot be split between two libraries living in it.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np

from common import ROOT, alternate, peak_rss_mb, sgd_step, torch, write_report

import minidl
from minidl import optim
from minidl.models import SegNetSmall

CONFIGS = {"b4_128": (4, 128), "b8_240": (8, 240)}
LR, MOMENTUM = 0.01, 0.9


def make_batch(batch, size, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
    masks = rng.integers(-1, 23, (batch, size, size)).astype(np.int64)
    return images, masks


def minidl_step_factory(batch, size):
    minidl.manual_seed(0)
    model = SegNetSmall(23)
    optimizer = optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    images, masks = make_batch(batch, size)
    x, y = minidl.tensor(images), minidl.tensor(masks)

    return model, sgd_step(model, optimizer, x, y)


def torch_step_factory(batch, size, minidl_model=None):
    from torch_models import SegNetSmall as TorchSegNetSmall, copy_weights

    model = TorchSegNetSmall(23)
    if minidl_model is not None:
        copy_weights(minidl_model, model)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    images, masks = make_batch(batch, size)
    x, y = torch.from_numpy(images), torch.from_numpy(masks)

    def step():
        loss = torch.nn.functional.cross_entropy(model(x), y, ignore_index=-1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    return model, step


def memory_only(library, config):
    """Run in a subprocess: two steps, then print the peak RSS as JSON."""
    batch, size = CONFIGS[config]
    step = minidl_step_factory(batch, size)[1] if library == "minidl" else torch_step_factory(batch, size)[1]
    step()
    step()
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}))


def measure_peak(library, config):
    result = subprocess.run([sys.executable, __file__, "--memory-only", library, "--config", config],
                            capture_output=True, text=True, cwd=ROOT / "benchmarks", check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="only batch 4 at 128x128")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-only", choices=["minidl", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--config", default="b4_128", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_only:
        return memory_only(args.memory_only, args.config)

    rows = []
    for name in (["b4_128"] if args.quick else list(CONFIGS)):
        batch, size = CONFIGS[name]
        model, minidl_step = minidl_step_factory(batch, size)
        row = {"configuration": f"batch {batch}, {size}x{size}"}
        if torch is not None:
            _, torch_step = torch_step_factory(batch, size, model)
            first_minidl, first_torch = minidl_step(), torch_step()
            row["first loss minidl"], row["first loss torch"] = first_minidl, first_torch
            if abs(first_minidl - first_torch) > 1e-4 * abs(first_torch):
                raise SystemExit(f"first-step losses disagree: minidl {first_minidl} vs torch {first_torch}")
            times = alternate({"minidl": minidl_step, "torch": torch_step}, repeats=args.repeats, warmup=1)
        else:
            minidl_step()
            times = alternate({"minidl": minidl_step}, repeats=args.repeats, warmup=1)
        row["minidl s/step"] = times["minidl"]
        row["minidl img/s"] = batch / times["minidl"]
        row["minidl peak RSS MB"] = measure_peak("minidl", name)
        if torch is not None:
            row["torch s/step"] = times["torch"]
            row["torch img/s"] = batch / times["torch"]
            row["time ratio (minidl/torch)"] = times["minidl"] / times["torch"]
            row["torch peak RSS MB"] = measure_peak("torch", name)
            row["memory ratio"] = row["minidl peak RSS MB"] / row["torch peak RSS MB"]
        rows.append(row)
        print(row, flush=True)
    columns = ["configuration", "minidl s/step", "torch s/step", "time ratio (minidl/torch)", "minidl img/s",
               "torch img/s", "minidl peak RSS MB", "torch peak RSS MB", "memory ratio", "first loss minidl",
               "first loss torch"]
    notes = [f"SegNetSmall (2,356,791 parameters), SGD lr {LR} momentum {MOMENTUM}, random images and labels "
             "(-1 = ignored), identical initial weights; medians of "
             f"{args.repeats} alternated steps after one warm-up. Command: `python benchmarks/train_step.py`."]
    print(write_report("train_step", "SegNetSmall training step: minidl vs PyTorch CPU", columns, rows, notes))


if __name__ == "__main__":
    main()
