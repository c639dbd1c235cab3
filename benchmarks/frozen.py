"""Training steps of an old-school net with its encoder frozen vs trained: time and peak memory.

    python benchmarks/frozen.py                          # resnet18 encoder, batch 4 at 128x128; writes results/frozen.md
    python benchmarks/frozen.py --backbone segnet_small  # any of minidl.models.OLD_SCHOOL_BACKBONES
    python benchmarks/frozen.py --quick --allow-noisy    # smoke run: batch 2 at 64x64, not for publication

A frozen encoder (``nn.freeze``) leaves no graph behind: backward computes no weight gradients
for it and no input gradients below the first trainable layer, and the forward keeps no
activations for a backward that will not come. Both variants start from the same weights and
run the same SGD-momentum steps, each in fresh processes of its own (benchmarks/harness.py),
rounds alternated, with the in-process A/B as a second column; the peak RSS is each process's own.
"""
from __future__ import annotations

import argparse

import numpy as np

import harness

NUM_CLASSES, LR, MOMENTUM = 23, 0.01, 0.9
CANDIDATES = [harness.Candidate(variant, {"library": "minidl", "frozen": variant == "frozen"})
              for variant in ("frozen", "unfrozen")]


def workload(options, case):
    """The harness's entry: one SGD step per call on a fixed random batch; the encoder frozen or not."""
    import minidl
    import minidl.nn as nn
    import minidl.nn.functional as F
    from minidl import optim
    from minidl.models import old_school

    minidl.manual_seed(0)  # the same weights for both variants
    model = old_school(case["backbone"], NUM_CLASSES)
    if options["frozen"]:
        nn.freeze(model.encoder)
    optimizer = optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    rng = np.random.default_rng(0)
    batch, size = case["batch"], case["size"]
    x = minidl.tensor(rng.standard_normal((batch, 3, size, size)).astype(np.float32))
    y = minidl.tensor(rng.integers(-1, NUM_CLASSES, (batch, size, size)))
    model.train()

    def step():
        loss = F.cross_entropy(model(x), y, ignore_index=-1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    def describe():
        return {"parameters": sum(p.numel() for p in model.parameters()),
                "trainable parameters": nn.trainable_parameter_count(model),
                "parameters with a gradient": sum(p.numel() for p in model.parameters() if p.grad is not None)}

    return harness.Job(step, describe=describe)


def main():
    from minidl.models import OLD_SCHOOL_BACKBONES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet18", choices=OLD_SCHOOL_BACKBONES, help="the encoder")
    parser.add_argument("--batch", type=int, default=4, help="images per step")
    parser.add_argument("--size", type=int, default=128, help="images are size x size")
    args = harness.validate(harness.add_arguments(parser).parse_args())
    if args.quick:
        args.batch, args.size = 2, 64
    case = {"name": f"{args.backbone} b{args.batch}@{args.size}", "backbone": args.backbone, "batch": args.batch,
            "size": args.size}
    session = harness.Session(args, "frozen")
    timings = session.standalone("frozen", CANDIDATES, [case])[case["name"]]
    in_process = session.in_process("frozen", CANDIDATES, [case]).get(case["name"])
    # (their first losses differ: the frozen encoder's BatchNorm normalises with running statistics)
    rows = []
    unfrozen = timings["unfrozen"]
    for variant, timing in timings.items():
        peak = timing.summary()["peak_rss_mb"]
        rows.append({"encoder": variant, "s/step": harness.timing_cell(timing),
                     "img/s": args.batch / timing.median, "speed-up": harness.ratio_cell(unfrozen, timing),
                     "speed-up in-process": f"{in_process['unfrozen'].median / in_process[variant].median:.3g}x"
                     if in_process else None,
                     "peak RSS MB": peak, "memory ratio": peak / unfrozen.summary()["peak_rss_mb"],
                     **{k: v for k, v in timing.facts.items() if k != "steps"}})
    columns = ["encoder", "s/step", "img/s", "speed-up", "speed-up in-process", "peak RSS MB", "memory ratio",
               "trainable parameters", "parameters with a gradient"]
    notes = [f"`oldschool_{args.backbone}` ({rows[0]['parameters']:,} parameters, {NUM_CLASSES} classes), batch "
             f"{args.batch} at {args.size}x{args.size}, SGD lr {LR} momentum {MOMENTUM}, random images and labels "
             "(-1 = ignored), the same initial weights. Frozen = `nn.freeze(model.encoder)`: no weight gradients "
             "there, no input gradient below the first decoder layer, BatchNorm in eval mode. "
             f"Command: `python benchmarks/frozen.py --backbone {args.backbone}`."]
    session.write_report(f"Frozen vs trained encoder: oldschool_{args.backbone} training steps", columns, rows, notes,
                         {"timings": harness.summaries({case["name"]: timings})})


if __name__ == "__main__":
    main()
