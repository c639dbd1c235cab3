"""SegNetSmall SGD-momentum training steps: minidl's fast and reference kernels against PyTorch CPU.

    python benchmarks/train_step.py                        # b4@128 and b8@240; writes benchmarks/results/train_step.md
    python benchmarks/train_step.py --quick --allow-noisy  # smoke run (b4@128, 1 round, 2 steps; not for publication)

Each library alone in fresh processes, rounds alternated (benchmarks/harness.py), then the
in-process A/B as a second column. Every process loads the same initial weights and batch (written
once by the parent), so the first losses must agree; the report says "reference N x, fast M x PyTorch".
"""
from __future__ import annotations

import argparse

import numpy as np

import harness

NUM_CLASSES, LR, MOMENTUM = 23, 0.01, 0.9
CASES = [{"name": "b4_128", "batch": 4, "size": 128}, {"name": "b8_240", "batch": 8, "size": 240}]
CANDIDATES = [
    harness.Candidate("minidl fast", {"library": "minidl", "kernels": "fast"}),
    harness.Candidate("minidl reference", {"library": "minidl", "kernels": "reference"}),
    harness.Candidate("PyTorch", {"library": "torch"}),
]
BASELINE = "PyTorch"


def prepare(case, folder):
    """In the parent: minidl's SegNetSmall (seed 0), a random batch (-1 = ignored) -> an .npz every library loads."""
    import minidl
    from minidl.models import SegNetSmall

    minidl.manual_seed(0)
    model = SegNetSmall(NUM_CLASSES)
    rng = np.random.default_rng(0)
    arrays = {f"weights/{k}": v.numpy() for k, v in model.state_dict().items()}
    arrays["images"] = rng.standard_normal((case["batch"], 3, case["size"], case["size"])).astype(np.float32)
    arrays["masks"] = rng.integers(-1, NUM_CLASSES, (case["batch"], case["size"], case["size"])).astype(np.int64)
    path = folder / f"segnet_small_{case['name']}.npz"
    np.savez(path, **arrays)
    return {**case, "data": str(path)}


def load_case(case):
    """(weights {name: array}, images, masks) from the case's .npz."""
    with np.load(case["data"]) as data:
        weights = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith("weights/")}
        return weights, data["images"], data["masks"]


def minidl_step(case, kernels):
    """One minidl SGD step per call on the case's batch, with the ``kernels`` set ("fast" or "reference")."""
    import minidl
    import minidl.nn.functional as F
    from minidl import optim
    from minidl.models import SegNetSmall

    weights, images, masks = load_case(case)
    model = SegNetSmall(NUM_CLASSES)
    model.load_state_dict({k: minidl.tensor(v) for k, v in weights.items()})
    optimizer = optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    x, y = minidl.tensor(images), minidl.tensor(masks)

    def step():
        minidl.set_kernels(kernels)  # per call: both kernel sets may share a process (the in-process A/B)
        loss = F.cross_entropy(model(x), y, ignore_index=-1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def torch_step(case):
    """The same step in PyTorch (benchmarks/torch_models.py's twin of SegNetSmall), all cores."""
    import os

    import torch
    from torch_models import SegNetSmall

    torch.set_num_threads(os.cpu_count() or 1)
    weights, images, masks = load_case(case)
    model = SegNetSmall(NUM_CLASSES)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    x, y = torch.from_numpy(images), torch.from_numpy(masks)

    def step():
        loss = torch.nn.functional.cross_entropy(model(x), y, ignore_index=-1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def workload(options, case):
    """The harness's entry: the step of one candidate on one case."""
    if options["library"] == "minidl":
        return minidl_step(case, options["kernels"])
    return torch_step(case)


def check_first_losses(timings, tolerance=1e-4):
    """Every candidate's first loss (same weights, same batch) must agree with the baseline's."""
    for case, by_candidate in timings.items():
        expected = by_candidate[BASELINE].first[0]
        for name, timing in by_candidate.items():
            for loss in timing.first:
                if abs(loss - expected) > tolerance * abs(expected):
                    raise SystemExit(f"{case}: first losses disagree: {name} {loss} vs {BASELINE} {expected}")


def report_rows(cases, timings, in_process):
    rows = []
    for case in cases:
        alone, shared = timings[case["name"]], in_process.get(case["name"], {})
        base = alone[BASELINE]
        row = {"configuration": f"batch {case['batch']}, {case['size']}x{case['size']}"}
        for name, timing in alone.items():
            row[f"{name} s/step"] = harness.timing_cell(timing)
            row[f"{name} peak RSS MB"] = timing.summary()["peak_rss_mb"]
            if name != BASELINE:
                row[f"{name} / PyTorch"] = harness.ratio_cell(timing, base)
                if name in shared:
                    row[f"{name} / PyTorch in-process"] = f"{shared[name].median / shared[BASELINE].median:.3g}x"
        row["first loss"] = base.first[0]
        rows.append(row)
        summary = ", ".join(f"{name.split()[-1]} {row[f'{name} / PyTorch']}" for name in alone if name != BASELINE)
        print(f"{row['configuration']}: {summary} PyTorch (standalone medians)", flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    args = harness.validate(harness.add_arguments(parser).parse_args())
    cases = CASES[:1] if args.quick else CASES
    session = harness.Session(args, "train_step")
    cases = [prepare(case, session.folder) for case in cases]
    timings = session.standalone("train_step", CANDIDATES, cases)
    in_process = session.in_process("train_step", CANDIDATES, cases)
    check_first_losses(timings)
    rows = report_rows(cases, timings, in_process)
    columns = ["configuration", *[f"{c.name} s/step" for c in CANDIDATES],
               *[f"{c.name} / PyTorch{where}" for where in ("", " in-process") for c in CANDIDATES[:2]],
               *[f"{c.name} peak RSS MB" for c in CANDIDATES], "first loss"]
    notes = [f"SegNetSmall (2,356,791 parameters, {NUM_CLASSES} classes), SGD lr {LR} momentum {MOMENTUM}, random "
             "images and labels (-1 = ignored); every process loads the same initial weights and batch, and the "
             "first losses agree. Peak RSS: the median over the rounds of each process's own peak. "
             "Command: `python benchmarks/train_step.py`."]
    session.write_report("SegNetSmall training step: minidl (fast and reference kernels) vs PyTorch CPU",
                         columns, rows, notes, {"timings": harness.summaries(timings),
                                                "in_process": harness.summaries(in_process)})


if __name__ == "__main__":
    main()
