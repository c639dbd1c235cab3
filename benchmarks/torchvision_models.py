"""torchvision-compatible models: forward time at 224x224 in minidl and PyTorch, and parity figures.

    python benchmarks/torchvision_models.py                        # writes benchmarks/results/torchvision_models.md
    python benchmarks/torchvision_models.py --timing-only          # the speed columns alone
    python benchmarks/torchvision_models.py --quick --allow-noisy  # smoke run: alexnet only, not for publication

For each model: random weights made in torchvision (BatchNorm statistics randomised), saved
with torch.save, loaded by minidl.load; then

- forward time, batch 1, 224x224, eval mode, no autograd: minidl (fast and reference kernels) and
  PyTorch each in fresh processes of their own (benchmarks/harness.py), rounds alternated, with
  the in-process A/B as a second column;
- eval output relative error (float32, max|ours - theirs| / max|theirs|) at 224x224;
- training step, 64x64, batch 2, cross-entropy, dropout off, as in tests/test_torchvision_models.py:
  in float64, the worst parameter's gradient relative error (is the math the same?); in float32,
  the largest gradient difference over the largest gradient of the model, between the two
  libraries and of each against the float64 gradients (how far float32 rounding alone moves them).

Needs torch and torchvision==0.28.0 (imported with the register_fake workaround, see
tests/torchvision_oracle.py).
"""
from __future__ import annotations

import argparse
import copy
import os

import numpy as np

import harness

MODELS = ["alexnet", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "resnet18", "lraspp_mobilenet_v3_large"]
CANDIDATES = [
    harness.Candidate("minidl fast", {"library": "minidl", "kernels": "fast"}),
    harness.Candidate("minidl reference", {"library": "minidl", "kernels": "reference"}),
    harness.Candidate("PyTorch", {"library": "torch"}),
]


def import_torchvision():
    import torch

    torch.library.register_fake = lambda *args, **kwargs: (lambda function: function)  # benchmark-only workaround
    import torchvision
    import torchvision.models.segmentation  # noqa: F401

    torch.set_num_threads(os.cpu_count() or 1)
    return torch, torchvision


def classes(name):
    return 21 if name.startswith("lraspp") else 1000


def torchvision_constructor(name):
    """(torchvision's constructor of the model, its keyword arguments)."""
    _, torchvision = import_torchvision()
    if name.startswith("lraspp"):
        return torchvision.models.segmentation.lraspp_mobilenet_v3_large, {"weights_backbone": None}
    return getattr(torchvision.models, name), {}


def load_minidl(case):
    """minidl's model from the case's torchvision weights file, in eval mode."""
    import minidl.models

    return getattr(minidl.models, case["name"])(weights=case["weights"], num_classes=classes(case["name"])).eval()


def load_torchvision(case):
    """torchvision's model with the case's weights, in eval mode."""
    import torch

    make, kwargs = torchvision_constructor(case["name"])
    model = make(**kwargs)
    model.load_state_dict(torch.load(case["weights"]))
    return model.eval()


def relative_error(ours, theirs):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


def logits(output):
    return output["out"] if isinstance(output, dict) else output


def randomised(make_theirs, kwargs):
    import torch

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
    dropout = framework.nn.Dropout
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


def prepare(name, folder):
    """In the parent: torchvision's model with random weights, saved for every process to load; the case."""
    import torch

    path = folder / f"{name}.pth"
    torch.save(randomised(*torchvision_constructor(name)).state_dict(), path)
    return {"name": name, "weights": str(path)}


def workload(options, case):
    """The harness's entry: one eval-mode forward of one model, batch 1 at 224x224, no autograd."""
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    if options["library"] == "minidl":
        import minidl

        minidl.set_kernels(options["kernels"])
        model, x, no_grad = load_minidl(case), minidl.tensor(x), minidl.no_grad
    else:
        import torch

        model, x, no_grad = load_torchvision(case), torch.from_numpy(x), torch.no_grad

    def forward():
        with no_grad():
            logits(model(x))

    return forward


def parity(case):
    """The accuracy columns: eval output error at 224, gradient errors at 64x64 (float64 and float32)."""
    import minidl
    import torch

    name, ours, theirs = case["name"], load_minidl(case), load_torchvision(case)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    with minidl.no_grad(), torch.no_grad():
        eval_error = relative_error(logits(ours(minidl.tensor(x))).numpy(), logits(theirs(torch.tensor(x))).numpy())
    small = np.random.default_rng(1).standard_normal((2, 3, 64, 64))
    target = np.random.default_rng(2).integers(0, classes(name), (2, 64, 64) if name.startswith("lraspp") else (2,))
    exact = gradients(copy.deepcopy(theirs).double(), small, target, torch)
    float64_error = worst_gradient_error(gradients(copy.deepcopy(ours).double(), small, target, minidl), exact)
    ours32 = gradients(ours, small.astype(np.float32), target, minidl)
    theirs32 = gradients(theirs, small.astype(np.float32), target, torch)
    return {"eval rel. error (f32, 224)": eval_error, "grad rel. error (f64)": float64_error,
            "grad error (f32)": global_gradient_error(ours32, theirs32),
            "minidl f32 vs exact": global_gradient_error(ours32, exact),
            "torch f32 vs exact": global_gradient_error(theirs32, exact)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timing-only", action="store_true", help="the speed columns alone (no parity figures)")
    args = harness.validate(harness.add_arguments(parser).parse_args())
    names = MODELS[:1] if args.quick else MODELS
    session = harness.Session(args, "torchvision_models_timing" if args.timing_only else "torchvision_models")
    cases = [prepare(name, session.folder) for name in names]
    timings = session.standalone("torchvision_models", CANDIDATES, cases, process_per_case=False)
    in_process = session.in_process("torchvision_models", CANDIDATES, cases)
    rows = []
    for case in cases:
        alone, shared = timings[case["name"]], in_process.get(case["name"], {})
        row = {"model": case["name"], "PyTorch ms": harness.timing_cell(alone["PyTorch"], 1000)}
        for name in ("minidl fast", "minidl reference"):
            row[f"{name} ms"] = harness.timing_cell(alone[name], 1000)
            row[f"{name} / PyTorch"] = harness.ratio_cell(alone[name], alone["PyTorch"])
        if shared:
            row["fast / PyTorch in-process"] = f"{shared['minidl fast'].median / shared['PyTorch'].median:.3g}x"
        if not args.timing_only:
            row.update(parity(case))
        rows.append(row)
        print(rows[-1], flush=True)
    notes = ["Forward: batch 1, 224x224, eval mode, no autograd. Eval error: max|ours - theirs| / max|theirs|. "
             "Gradients (64x64, batch 2, one cross-entropy step in training mode): float64, the worst parameter's "
             "relative error; float32, the largest difference over the largest gradient (see the module docstring). "
             "Command: `python benchmarks/torchvision_models.py`."]
    session.write_report("torchvision-compatible models: speed and parity", list(rows[0]), rows, notes,
                         {"timings": harness.summaries(timings), "in_process": harness.summaries(in_process)})


if __name__ == "__main__":
    main()
