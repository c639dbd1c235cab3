"""Per-op speed: minidl (fast and reference kernels) against PyTorch CPU, forward and forward+backward, float32.

    python benchmarks/ops.py                          # all rows, writes benchmarks/results/ops.md and ops.json
    python benchmarks/ops.py --quick --allow-noisy    # smoke run: the first three ops, not for publication

Each library runs all the ops in a fresh process of its own per round (benchmarks/harness.py),
rounds alternated; the in-process A/B is a second column. A ratio is minidl time / torch time
(below 1: minidl is faster); GFLOP/s where an op's FLOPs are well defined (convolutions:
2 * MACs forward, 3x that for forward+backward), against the roofline: the harness's calibration
matmul (no convolution computed as a matrix product beats it).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable

import numpy as np

import harness

# Conv layers: SegNetSmall's at batch 8, 240x240 input
CONV_LAYERS = [(3, 32, 240), (32, 32, 240), (32, 64, 120), (64, 64, 120), (64, 128, 60), (128, 128, 60),
               (128, 256, 30), (256, 256, 30)]
CANDIDATES = [
    harness.Candidate("minidl fast", {"library": "minidl", "kernels": "fast"}),
    harness.Candidate("minidl reference", {"library": "minidl", "kernels": "reference"}),
    harness.Candidate("PyTorch", {"library": "torch"}),
]


@dataclass
class Op:
    """One row: ``make()`` -> the input arrays, ``run(library, *tensors)`` -> the output; FLOPs if well defined."""

    name: str
    make: Callable[[], tuple]
    run: Callable
    flops: int | None = None


def normal(*shape, scale=1.0, seed=0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def conv_op(c_in, c_out, size, batch=8):
    return Op(f"conv2d 3x3 {c_in}->{c_out} at {size}",
              lambda: (normal(batch, c_in, size, size), normal(c_out, c_in, 3, 3, scale=0.1), np.zeros(c_out, np.float32)),
              lambda m, x, w, b: m.nn.functional.conv2d(x, w, b, padding=1), 2 * batch * c_out * c_in * 9 * size * size)


def pool_unpool(m, x):
    pooled, indices = m.nn.functional.max_pool2d(x, 2, return_indices=True)
    return m.nn.functional.max_unpool2d(pooled, indices, 2)


OPS = {op.name: op for op in [
    *(conv_op(*layer) for layer in CONV_LAYERS),
    Op("conv_transpose2d 64->32 k2 s2, 120->240", lambda: (normal(8, 64, 120, 120), normal(64, 32, 2, 2, scale=0.1)),
       lambda m, x, w: m.nn.functional.conv_transpose2d(x, w, stride=2), 2 * 8 * 64 * 32 * 4 * 120 * 120),
    Op("conv_transpose2d 64->32 k4 s2 p1, 120->240", lambda: (normal(8, 64, 120, 120), normal(64, 32, 4, 4, scale=0.1)),
       lambda m, x, w: m.nn.functional.conv_transpose2d(x, w, stride=2, padding=1), 2 * 8 * 64 * 32 * 16 * 120 * 120),
    Op("max_pool2d 2x2 (indices), 32 ch at 240", lambda: (normal(8, 32, 240, 240),),
       lambda m, x: m.nn.functional.max_pool2d(x, 2, return_indices=True)[0]),
    Op("max_pool2d + max_unpool2d, 32 ch at 240", lambda: (normal(8, 32, 240, 240),), pool_unpool),
    Op("interpolate nearest x2, 64 ch at 120", lambda: (normal(8, 64, 120, 120),),
       lambda m, x: m.nn.functional.interpolate(x, scale_factor=2, mode="nearest")),
    Op("interpolate bilinear x2, 64 ch at 120", lambda: (normal(8, 64, 120, 120),),
       lambda m, x: m.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)),
    Op("batch_norm2d training, 32 ch at 240",
       lambda: (normal(8, 32, 240, 240), np.ones(32, np.float32), np.zeros(32, np.float32)),
       lambda m, x, g, b: m.nn.functional.batch_norm(x, None, None, g, b, training=True)),
    Op("cross_entropy(ignore_index=-1), (8,23,240,240)",
       lambda: (normal(8, 23, 240, 240), np.random.default_rng(1).integers(-1, 23, (8, 240, 240))),
       lambda m, x, target: m.nn.functional.cross_entropy(x, target, ignore_index=-1)),
]}


def workload(options, case):
    """The harness's entry: one op (forward, or forward and backward) in one library."""
    library = options["library"]
    if library == "minidl":
        import minidl as module

        module.set_kernels(options["kernels"])
        make = module.tensor
    else:
        import os

        import torch as module

        module.set_num_threads(os.cpu_count() or 1)
        make = module.from_numpy
    op = OPS[case["op"]]
    arrays = op.make()
    tensors = [make(a).requires_grad_(case["backward"]) if a.dtype.kind == "f" else make(a) for a in arrays]

    def run():
        for t in tensors:
            t.grad = None
        out = op.run(module, *tensors)
        if case["backward"]:
            out.backward(module.ones_like(out))

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    args = harness.validate(harness.add_arguments(parser).parse_args())
    names = list(OPS)[:3] if args.quick else list(OPS)
    cases = [{"name": f"{name}, {'fwd+bwd' if backward else 'fwd'}", "op": name, "backward": backward}
             for name in names for backward in (False, True)]
    session = harness.Session(args, "ops")
    timings = session.standalone("ops", CANDIDATES, cases, process_per_case=False)
    in_process = session.in_process("ops", CANDIDATES, cases)
    rows = []
    for case in cases:
        alone, shared = timings[case["name"]], in_process.get(case["name"], {})
        torch_time, flops = alone["PyTorch"], OPS[case["op"]].flops
        row = {"op": case["op"], "pass": "fwd+bwd" if case["backward"] else "fwd",
               "PyTorch ms": harness.timing_cell(torch_time, 1000)}
        for name in ("minidl fast", "minidl reference"):
            row[f"{name} ms"] = harness.timing_cell(alone[name], 1000)
            row[f"{name} / PyTorch"] = harness.ratio_cell(alone[name], torch_time)
        if shared:
            row["fast / PyTorch in-process"] = f"{shared['minidl fast'].median / shared['PyTorch'].median:.3g}x"
        if flops:
            total = flops * (3 if case["backward"] else 1)
            row["minidl fast GFLOP/s"] = total / alone["minidl fast"].median / 1e9
            row["PyTorch GFLOP/s"] = total / torch_time.median / 1e9
        rows.append(row)
    columns = ["op", "pass", "PyTorch ms", "minidl fast ms", "minidl fast / PyTorch", "fast / PyTorch in-process",
               "minidl reference ms", "minidl reference / PyTorch", "minidl fast GFLOP/s", "PyTorch GFLOP/s"]
    notes = [f"Roofline: the calibration matmul (NumPy float32, n={harness.CALIBRATION_N}) ran at "
             f"{session.stamp.gflops_before:.0f} GFLOP/s before the run. Batch 8, float32; backward from a gradient "
             "of ones. Command: `python benchmarks/ops.py`."]
    session.write_report("Ops: minidl (fast and reference kernels) vs PyTorch CPU (float32)", columns, rows, notes,
                         {"timings": harness.summaries(timings), "in_process": harness.summaries(in_process)})


if __name__ == "__main__":
    main()
