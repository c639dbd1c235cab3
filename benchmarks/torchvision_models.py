"""torchvision-compatible models: forward time at 224x224 in minidl and PyTorch, and parity figures.

    .venv/bin/python benchmarks/torchvision_models.py            # writes benchmarks/results/torchvision_models.md

For each model: random weights made in torchvision (BatchNorm statistics randomised), saved
with torch.save, loaded by minidl.load; then

- forward time, batch 1, 224x224, eval mode, no autograd: median of 5 (alternating A/B after a warm-up);
- eval output relative error (float32, max|ours - theirs| / max|theirs|) at 224x224;
- training step, 64x64, batch 2, cross-entropy, dropout off, as in tests/test_torchvision_models.py:
  in float64, the worst parameter's gradient relative error (is the math the same?); in float32,
  the largest gradient difference over the largest gradient of the model, between the two
  libraries and of each against the float64 gradients (how far float32 rounding alone moves them).

Needs torch and torchvision==0.28.0 (imported with the register_fake workaround, see
tests/torchvision_oracle.py).
"""
from __future__ import annotations

import copy
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import alternate, torch, write_report  # noqa: E402  (sets sys.path, torch threads)

import minidl  # noqa: E402
import minidl.models as models  # noqa: E402
import minidl.nn as nn  # noqa: E402

torch.library.register_fake = lambda *args, **kwargs: (lambda function: function)  # benchmark-only workaround
import torchvision  # noqa: E402
import torchvision.models.segmentation  # noqa: E402,F401

NAMES = {  # name -> (minidl constructor, torchvision constructor, kwargs)
    "alexnet": (models.alexnet, torchvision.models.alexnet, {}),
    "mobilenet_v2": (models.mobilenet_v2, torchvision.models.mobilenet_v2, {}),
    "mobilenet_v3_large": (models.mobilenet_v3_large, torchvision.models.mobilenet_v3_large, {}),
    "mobilenet_v3_small": (models.mobilenet_v3_small, torchvision.models.mobilenet_v3_small, {}),
    "resnet18": (models.resnet18, torchvision.models.resnet18, {}),
    "lraspp_mobilenet_v3_large": (models.lraspp_mobilenet_v3_large,
                                  torchvision.models.segmentation.lraspp_mobilenet_v3_large,
                                  {"weights_backbone": None}),
}


def relative_error(ours, theirs):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


def logits(output):
    return output["out"] if isinstance(output, dict) else output


def randomised(make_theirs, kwargs):
    torch.manual_seed(0)
    model = make_theirs(**kwargs)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.2, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
                module.weight.uniform_(0.5, 1.5, generator=generator)
            if getattr(module, "bias", None) is not None:
                module.bias.normal_(0, 0.1, generator=generator)
    return model


def gradients(model, x, target, framework):
    """name -> gradient array after one cross-entropy backward pass in training mode, dropout off."""
    dropout = torch.nn.Dropout if framework is torch else nn.Dropout
    model.train()
    for module in model.modules():
        if isinstance(module, dropout):
            module.eval()
    loss = framework.nn.functional.cross_entropy(logits(model(framework.tensor(x))), framework.tensor(target))
    loss.backward()
    return {k: p.grad.detach().cpu().numpy().astype(np.float64) for k, p in model.named_parameters()}


def worst_gradient_error(ours, theirs):
    """Largest per-parameter relative error, denominators at least 1e-6 of the largest gradient
    (gradients that are exactly zero in exact arithmetic are pure rounding noise)."""
    floor = 1e-6 * max(np.abs(g).max() for g in theirs.values())
    return max(float(np.abs(ours[k] - theirs[k]).max() / max(np.abs(theirs[k]).max(), floor)) for k in theirs)


def global_gradient_error(ours, theirs):
    """max over parameters of max|ours - theirs|, over the model's largest gradient."""
    return max(np.abs(ours[k] - theirs[k]).max() for k in theirs) / max(np.abs(g).max() for g in theirs.values())


def measure(name, folder, timing_only=False):
    make, make_theirs, kwargs = NAMES[name]
    theirs = randomised(make_theirs, kwargs).eval()
    path = folder / f"{name}.pth"
    torch.save(theirs.state_dict(), path)
    ours = make(weights=path, num_classes=21 if name.startswith("lraspp") else 1000).eval()

    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    x_ours, x_theirs = minidl.tensor(x), torch.tensor(x)

    def run_ours():
        with minidl.no_grad():
            return logits(ours(x_ours))

    def run_theirs():
        with torch.no_grad():
            return logits(theirs(x_theirs))

    times = alternate({"minidl": run_ours, "torch": run_theirs}, repeats=5, warmup=1)
    eval_error = relative_error(run_ours().numpy(), run_theirs().numpy())
    row = {"model": name, "minidl ms": 1000 * times["minidl"], "torch ms": 1000 * times["torch"],
           "ratio": times["minidl"] / times["torch"], "eval rel. error (f32, 224)": eval_error}
    if timing_only:
        return row

    small = np.random.default_rng(1).standard_normal((2, 3, 64, 64))
    classes = 21 if name.startswith("lraspp") else 1000
    target = np.random.default_rng(2).integers(0, classes, (2, 64, 64) if name.startswith("lraspp") else (2,))
    exact = gradients(copy.deepcopy(theirs).double(), small, target, torch)
    float64_error = worst_gradient_error(gradients(copy.deepcopy(ours).double(), small, target, minidl), exact)
    ours32 = gradients(ours, small.astype(np.float32), target, minidl)
    theirs32 = gradients(theirs, small.astype(np.float32), target, torch)
    return {
        **row, "grad rel. error (f64)": float64_error, "grad error (f32)": global_gradient_error(ours32, theirs32),
        "minidl f32 vs exact": global_gradient_error(ours32, exact), "torch f32 vs exact": global_gradient_error(theirs32, exact),
    }


def main():
    timing_only = "--timing-only" in sys.argv  # a quick re-run of the speed columns
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in NAMES:
            rows.append(measure(name, Path(folder), timing_only))
            print(rows[-1], flush=True)
    columns = list(rows[0])
    notes = ["Forward: batch 1, 224x224, eval mode, no autograd; median of 5 alternating runs after one warm-up, "
             "same process. Eval error: max|ours - theirs| / max|theirs|. Gradients (64x64, batch 2, one "
             "cross-entropy step in training mode): float64, the worst parameter's relative error; float32, the "
             "largest difference over the largest gradient (see the module docstring)."]
    report = "torchvision_models_timing" if timing_only else "torchvision_models"
    print(write_report(report, "torchvision-compatible models: speed and parity", columns, rows, notes))


if __name__ == "__main__":
    main()
