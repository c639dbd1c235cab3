"""Shared benchmark machinery: A/B timing with medians, the matmul roofline, machine description, reports."""
from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

try:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
except ImportError:  # minidl alone then
    torch = None


def machine_description():
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
        "torch": torch.__version__ if torch is not None else None, "platform": platform.platform(),
    }


def time_call(function, synchronize=None):
    """Seconds for one call (``synchronize`` waits for a GPU to finish, if given)."""
    start = time.perf_counter()
    function()
    if synchronize:
        synchronize()
    return time.perf_counter() - start


def alternate(candidates, repeats=5, warmup=1):
    """Time several callables in alternation (A B A B ...) after warm-up; return the median seconds of each.

    Alternating spreads the machine's noise (another process, turbo, caches)
    evenly over the candidates, so their ratio is fair even if absolute times drift.
    """
    for _ in range(warmup):
        for function in candidates.values():
            function()
    samples = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, function in candidates.items():
            samples[name].append(time_call(function))
    return {name: statistics.median(times) for name, times in samples.items()}


def matmul_gflops(n=2048, repeats=5):
    """The machine's float32 matmul speed in NumPy: the roofline for any conv computed as a matrix product."""
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    b = np.random.default_rng(1).standard_normal((n, n)).astype(np.float32)
    a @ b
    seconds = statistics.median(time_call(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / seconds / 1e9


def peak_rss_mb():
    """Peak resident memory of this process so far, in MB.

    Reads VmHWM from /proc on Linux: ``getrusage``'s ru_maxrss survives exec, so
    a benchmark subprocess would report its (larger) parent's peak instead of its own.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_report(name, title, columns, rows, notes, extra=None):
    """Write benchmarks/results/<name>.md and .json; return the Markdown text."""
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    machine = machine_description()
    lines = [f"# {title}", "", f"Machine: {machine['cpu']}, {machine['cores']} cores; Python {machine['python']}, "
             f"NumPy {machine['numpy']}, PyTorch {machine['torch']}.", ""]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in columns) + " |")
    lines += [""] + notes
    text = "\n".join(lines) + "\n"
    (out / f"{name}.md").write_text(text)
    (out / f"{name}.json").write_text(json.dumps({"machine": machine, "rows": rows, "notes": notes, **(extra or {})}, indent=2))
    return text


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def sgd_step(model, optimizer, x, y):
    """A function that runs one training step (cross-entropy, ignore_index=-1) on the fixed batch (x, y)."""
    import minidl.nn.functional as F

    def step():
        loss = F.cross_entropy(model(x), y, ignore_index=-1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    return step
