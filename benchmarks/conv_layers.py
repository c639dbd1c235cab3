"""Where a small-image training step's time goes: SegNetSmall's 3x3 convolutions at batch 4, 128x128.

    python benchmarks/conv_layers.py                          # writes benchmarks/results/conv_layers.md and .json
    python benchmarks/conv_layers.py --quick --allow-noisy    # smoke run: three layers, not for publication

For every convolution of SegNetSmall on a 128x128 input (batch 4: 32 channels at 128x128 down to
256 at 16x16 and back up), forward and backward together, in fresh processes per library
(benchmarks/harness.py): minidl's fast and reference kernels, PyTorch, and the **matmul floor**:
the three products of that convolution as bare NumPy matmuls over the whole batch (BLAS's own
threads, no im2col, no col2im, no Python): ``W (O, 9C) @ columns (9C, N*H*W)`` forward, the
flipped-kernel product ``(C, 9O) @ (9O, N*H*W)`` for the input gradient and ``dy (O, N*H*W) @
columns^T`` for the weight gradient. The floor is what any im2col + BLAS convolution must at least
spend; what minidl spends above it is column copies, thread hand-offs and per-call overhead.
"""
from __future__ import annotations

import argparse

import numpy as np

import harness

# (in channels, out channels, size, how many such convolutions SegNetSmall has at a 128x128 input)
LAYERS = [(3, 32, 128, 1), (32, 32, 128, 2), (32, 64, 64, 1), (64, 64, 64, 2), (64, 128, 32, 1), (128, 128, 32, 2),
          (128, 256, 16, 1), (256, 256, 16, 2), (256, 128, 16, 1), (128, 64, 32, 1), (64, 32, 64, 1), (32, 23, 128, 1)]
BATCH = 4
CANDIDATES = [
    harness.Candidate("minidl fast", {"library": "minidl", "kernels": "fast"}),
    harness.Candidate("minidl reference", {"library": "minidl", "kernels": "reference"}),
    harness.Candidate("PyTorch", {"library": "torch"}),
    harness.Candidate("matmul floor", {"library": "numpy"}),
]


def arrays(c_in, c_out, size, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((BATCH, c_in, size, size)).astype(np.float32)
    w = (rng.standard_normal((c_out, c_in, 3, 3)) * 0.1).astype(np.float32)
    dy = rng.standard_normal((BATCH, c_out, size, size)).astype(np.float32)
    return x, w, dy


def matmul_floor(c_in, c_out, size):
    """The three products of the layer as bare matmuls over the whole batch (operands made once)."""
    rng = np.random.default_rng(0)
    pixels = BATCH * size * size
    forward = rng.standard_normal((c_out, 9 * c_in), dtype=np.float32), rng.standard_normal((9 * c_in, pixels), dtype=np.float32)
    flipped = rng.standard_normal((c_in, 9 * c_out), dtype=np.float32), rng.standard_normal((9 * c_out, pixels), dtype=np.float32)
    weight = rng.standard_normal((c_out, pixels), dtype=np.float32), rng.standard_normal((pixels, 9 * c_in), dtype=np.float32)
    return lambda: [a @ b for a, b in (forward, flipped, weight)]


def workload(options, case):
    """The harness's entry: one convolution's forward and backward in one library (or its matmul floor)."""
    layer = case["layer"][:3]
    if options["library"] == "numpy":
        return matmul_floor(*layer)
    x, w, dy = arrays(*layer)
    if options["library"] == "minidl":
        import minidl as module

        module.set_kernels(options["kernels"])
        make = module.tensor
    else:
        import os

        import torch as module

        module.set_num_threads(os.cpu_count() or 1)
        make = module.from_numpy
    x, w, dy = make(x).requires_grad_(True), make(w).requires_grad_(True), make(dy)

    def run():
        x.grad = w.grad = None
        module.nn.functional.conv2d(x, w, padding=1).backward(dy)

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    args = harness.validate(harness.add_arguments(parser).parse_args())
    layers = LAYERS[:3] if args.quick else LAYERS
    cases = [{"name": f"{c_in}->{c_out} at {size}", "layer": (c_in, c_out, size, count)}
             for c_in, c_out, size, count in layers]
    session = harness.Session(args, "conv_layers")
    timings = session.standalone("conv_layers", CANDIDATES, cases, process_per_case=False)
    totals = {candidate.name: 0.0 for candidate in CANDIDATES}
    rows = []
    for case in cases:
        alone, count = timings[case["name"]], case["layer"][3]
        torch_time = alone["PyTorch"]
        row = {"layer (batch 4)": case["name"], "in SegNetSmall": count}
        for candidate in CANDIDATES:
            row[f"{candidate.name} ms"] = harness.timing_cell(alone[candidate.name], 1000)
            totals[candidate.name] += alone[candidate.name].median * count
        for name in ("minidl fast", "minidl reference", "matmul floor"):
            row[f"{name} / PyTorch"] = harness.ratio_cell(alone[name], torch_time)
        rows.append(row)
    rows.append({"layer (batch 4)": "all, weighted by count", "in SegNetSmall": sum(case["layer"][3] for case in cases),
                 **{f"{name} ms": f"{seconds * 1000:.0f}" for name, seconds in totals.items()},
                 **{f"{name} / PyTorch": f"{totals[name] / totals['PyTorch']:.2f}x"
                    for name in ("minidl fast", "minidl reference", "matmul floor")}})
    columns = ["layer (batch 4)", "in SegNetSmall", "PyTorch ms", "minidl fast ms", "minidl fast / PyTorch",
               "minidl reference ms", "minidl reference / PyTorch", "matmul floor ms", "matmul floor / PyTorch"]
    notes = ["Forward and backward of one 3x3 convolution (padding 1), float32, from a fixed random gradient. "
             "Matmul floor: the layer's three products as bare NumPy matmuls over the whole batch (see the module "
             "docstring). Command: `python benchmarks/conv_layers.py`."]
    session.write_report("SegNetSmall's convolutions at batch 4, 128x128: minidl vs PyTorch vs the matmul floor",
                         columns, rows, notes, {"timings": harness.summaries(timings)})


if __name__ == "__main__":
    main()
