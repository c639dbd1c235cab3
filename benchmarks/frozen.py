"""Training steps of an old-school net with its encoder frozen vs trained: time and peak memory.

    python benchmarks/frozen.py                          # resnet18 encoder, batch 4 at 128x128; writes results/frozen.md
    python benchmarks/frozen.py --backbone segnet_small  # any of minidl.models.OLD_SCHOOL_BACKBONES
    python benchmarks/frozen.py --quick                  # batch 2 at 64x64, 3 repeats; prints, writes nothing

A frozen encoder (``nn.freeze``) leaves no graph behind: backward computes no weight gradients
for it and no input gradients below the first trainable layer, and the forward keeps no
activations for a backward that will not come. Both variants start from the same weights and
run the same SGD-momentum steps; timing alternates them in one process (medians after
warm-up). Peak memory is measured in a fresh subprocess per variant, since a process's peak
cannot be split between two models living in it.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np

from common import ROOT, alternate, peak_rss_mb, sgd_step, write_report

import minidl
import minidl.nn as nn
from minidl import optim
from minidl.models import OLD_SCHOOL_BACKBONES, old_school

NUM_CLASSES, LR, MOMENTUM = 23, 0.01, 0.9
VARIANTS = ("frozen", "unfrozen")


def step_factory(backbone, frozen, batch, size):
    """(model, step): one SGD step per call on a fixed random batch; the encoder frozen or not."""
    minidl.manual_seed(0)  # the same weights for both variants
    model = old_school(backbone, NUM_CLASSES)
    if frozen:
        nn.freeze(model.encoder)
    optimizer = optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    rng = np.random.default_rng(0)
    x = minidl.tensor(rng.standard_normal((batch, 3, size, size)).astype(np.float32))
    y = minidl.tensor(rng.integers(-1, NUM_CLASSES, (batch, size, size)))
    model.train()

    return model, sgd_step(model, optimizer, x, y)


def memory_only(backbone, variant, batch, size):
    """Run in a subprocess: two steps, then print the peak RSS as JSON."""
    step = step_factory(backbone, variant == "frozen", batch, size)[1]
    step()
    step()
    print(json.dumps({"peak_rss_mb": peak_rss_mb()}))


def measure_peak(backbone, variant, batch, size):
    result = subprocess.run([sys.executable, __file__, "--memory-only", variant, "--backbone", backbone,
                             "--batch", str(batch), "--size", str(size)],
                            capture_output=True, text=True, cwd=ROOT / "benchmarks", check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet18", choices=OLD_SCHOOL_BACKBONES, help="the encoder")
    parser.add_argument("--batch", type=int, default=4, help="images per step")
    parser.add_argument("--size", type=int, default=128, help="images are size x size")
    parser.add_argument("--repeats", type=int, default=5, help="alternated timed steps per variant (median)")
    parser.add_argument("--quick", action="store_true", help="smoke test: batch 2 at 64x64, 3 repeats, no report")
    parser.add_argument("--memory-only", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.batch, args.size, args.repeats = 2, 64, 3
    if args.memory_only:
        return memory_only(args.backbone, args.memory_only, args.batch, args.size)

    models, steps = {}, {}
    for variant in VARIANTS:
        models[variant], steps[variant] = step_factory(args.backbone, variant == "frozen", args.batch, args.size)
    # (their first losses differ: the frozen encoder's BatchNorm normalises with running statistics)
    times = alternate(steps, repeats=args.repeats, warmup=1)
    rows = []
    for variant in VARIANTS:
        model = models[variant]
        rows.append({
            "encoder": variant,
            "s/step": times[variant],
            "img/s": args.batch / times[variant],
            "speed-up": times["unfrozen"] / times[variant],
            "peak RSS MB": measure_peak(args.backbone, variant, args.batch, args.size),
            "trainable parameters": nn.trainable_parameter_count(model),
            "parameters with a gradient": sum(p.numel() for p in model.parameters() if p.grad is not None),
        })
        print(rows[-1], flush=True)
    for row in rows:
        row["memory ratio"] = row["peak RSS MB"] / rows[-1]["peak RSS MB"]
    columns = ["encoder", "s/step", "img/s", "speed-up", "peak RSS MB", "memory ratio", "trainable parameters",
               "parameters with a gradient"]
    total = sum(p.numel() for p in models["unfrozen"].parameters())
    notes = [f"`oldschool_{args.backbone}` ({total:,} parameters, {NUM_CLASSES} classes), batch {args.batch} at "
             f"{args.size}x{args.size}, SGD lr {LR} momentum {MOMENTUM}, random images and labels (-1 = ignored), "
             f"the same initial weights; medians of {args.repeats} alternated steps after one warm-up; peak RSS of a "
             f"fresh process running two steps. Frozen = `nn.freeze(model.encoder)`: no weight gradients there, no "
             f"input gradient below the first decoder layer, BatchNorm in eval mode. "
             f"Command: `python benchmarks/frozen.py --backbone {args.backbone}`."]
    if args.quick:
        print("--quick: nothing written")
        return
    print(write_report("frozen", f"Frozen vs trained encoder: oldschool_{args.backbone} training steps",
                       columns, rows, notes))


if __name__ == "__main__":
    main()
