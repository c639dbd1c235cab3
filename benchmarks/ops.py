"""Per-op speed: minidl against PyTorch CPU, forward and forward+backward, float32, same shapes.

    python benchmarks/ops.py            # all rows, writes benchmarks/results/ops.md and ops.json
    python benchmarks/ops.py --quick    # fewer repeats and only the first conv rows

Each row times minidl and PyTorch in alternation (medians of >= 5 runs after a
warm-up) and reports the ratio (minidl / torch: below 1 means minidl is
faster) and the achieved GFLOP/s where an op's FLOPs are well defined
(convolutions: 2 * MACs forward, 3x that for forward+backward). The matmul
row is the roofline: no convolution computed as a matrix product beats it.
"""
from __future__ import annotations

import argparse

import numpy as np

from common import alternate, matmul_gflops, torch, write_report

import minidl
import minidl.nn.functional as F

# (name, function name, input shapes and arguments). Conv layers are SegNetSmall's at batch 8, 240x240 input.
CONV_LAYERS = [(3, 32, 240), (32, 32, 240), (32, 64, 120), (64, 64, 120), (64, 128, 60), (128, 128, 60),
               (128, 256, 30), (256, 256, 30)]


def conv_case(c_in, c_out, size, batch=8):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, c_in, size, size)).astype(np.float32)
    w = (rng.standard_normal((c_out, c_in, 3, 3)) * 0.1).astype(np.float32)
    b = np.zeros(c_out, np.float32)
    flops = 2 * batch * c_out * c_in * 9 * size * size
    return f"conv2d 3x3 {c_in}->{c_out} at {size}", (x, w, b), lambda m, x, w, b: m_conv(m)(x, w, b, padding=1), flops


def m_conv(m):
    return m.nn.functional.conv2d


def all_cases():
    rng = np.random.default_rng(1)
    cases = [conv_case(*layer) for layer in CONV_LAYERS]
    x64 = rng.standard_normal((8, 64, 120, 120)).astype(np.float32)
    w_t2 = (rng.standard_normal((64, 32, 2, 2)) * 0.1).astype(np.float32)
    w_t4 = (rng.standard_normal((64, 32, 4, 4)) * 0.1).astype(np.float32)
    cases.append(("conv_transpose2d 64->32 k2 s2, 120->240", (x64, w_t2),
                  lambda m, x, w: m.nn.functional.conv_transpose2d(x, w, stride=2), 2 * 8 * 64 * 32 * 4 * 120 * 120))
    cases.append(("conv_transpose2d 64->32 k4 s2 p1, 120->240", (x64, w_t4),
                  lambda m, x, w: m.nn.functional.conv_transpose2d(x, w, stride=2, padding=1), 2 * 8 * 64 * 32 * 16 * 120 * 120))
    x32 = rng.standard_normal((8, 32, 240, 240)).astype(np.float32)
    cases.append(("max_pool2d 2x2 (indices), 32 ch at 240", (x32,),
                  lambda m, x: m.nn.functional.max_pool2d(x, 2, return_indices=True)[0], None))
    cases.append(("max_pool2d + max_unpool2d, 32 ch at 240", (x32,), lambda m, x: _pool_unpool(m, x), None))
    cases.append(("interpolate nearest x2, 64 ch at 120", (x64,),
                  lambda m, x: m.nn.functional.interpolate(x, scale_factor=2, mode="nearest"), None))
    cases.append(("interpolate bilinear x2, 64 ch at 120", (x64,),
                  lambda m, x: m.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False), None))
    gamma, beta = np.ones(32, np.float32), np.zeros(32, np.float32)
    cases.append(("batch_norm2d training, 32 ch at 240", (x32, gamma, beta),
                  lambda m, x, g, b: m.nn.functional.batch_norm(x, None, None, g, b, training=True), None))
    logits = rng.standard_normal((8, 23, 240, 240)).astype(np.float32)
    target = rng.integers(-1, 23, (8, 240, 240))
    cases.append(("cross_entropy(ignore_index=-1), (8,23,240,240)", (logits,),
                  lambda m, x, t=target: m.nn.functional.cross_entropy(x, m.tensor(t) if m is minidl else torch.from_numpy(t),
                                                                     ignore_index=-1), None))
    return cases


def _pool_unpool(m, x):
    pooled, indices = m.nn.functional.max_pool2d(x, 2, return_indices=True)
    return m.nn.functional.max_unpool2d(pooled, indices, 2)


def runner(library, arrays, op, backward):
    """A zero-argument callable that runs the op (and its backward) once in ``library``."""
    make = torch.from_numpy if library is torch else minidl.tensor
    tensors = [make(a).requires_grad_(backward) for a in arrays]

    def run():
        for t in tensors:
            t.grad = None
        out = op(library, *tensors)
        if backward:
            out.backward(library.ones_like(out))

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cases = all_cases()[:3] if args.quick else all_cases()
    roofline = matmul_gflops()
    print(f"float32 matmul roofline: {roofline:.0f} GFLOP/s", flush=True)
    rows = []
    for name, arrays, op, flops in cases:
        for backward in (False, True):
            candidates = {"minidl": runner(minidl, arrays, op, backward)}
            if torch is not None:
                candidates["torch"] = runner(torch, arrays, op, backward)
            times = alternate(candidates, repeats=args.repeats, warmup=1)
            total_flops = flops * (3 if backward else 1) if flops else None
            row = {"op": name, "pass": "fwd+bwd" if backward else "fwd", "minidl ms": times["minidl"] * 1e3}
            if total_flops:
                row["minidl GFLOP/s"] = total_flops / times["minidl"] / 1e9
            if torch is not None:
                row["torch ms"] = times["torch"] * 1e3
                row["ratio"] = times["minidl"] / times["torch"]
                if total_flops:
                    row["torch GFLOP/s"] = total_flops / times["torch"] / 1e9
            rows.append(row)
            print(row, flush=True)
    columns = ["op", "pass", "minidl ms", "torch ms", "ratio", "minidl GFLOP/s", "torch GFLOP/s"]
    notes = [f"Roofline: NumPy float32 matmul (n=2048) at {roofline:.0f} GFLOP/s on this machine.",
             f"Medians of {args.repeats} alternated runs after a warm-up; ratio = minidl time / torch time. "
             "Command: `python benchmarks/ops.py`."]
    print(write_report("ops", "Ops: minidl vs PyTorch CPU (float32)", columns, rows, notes, {"roofline_gflops": roofline}))


if __name__ == "__main__":
    main()
