"""minidl beside its NumPy peers, MyGrad and Chainer, and PyTorch: conv 3x3 and a SegNetSmall step, in one run.

    python benchmarks/peers.py --setup                    # once: the peers' own venvs under benchmarks/.local/envs/
    python benchmarks/peers.py                            # writes benchmarks/results/peers.md and .json
    python benchmarks/peers.py --quick --allow-noisy      # smoke run, not for publication

The peers live in virtual environments of their own, never in the project's (the tests' one):

- MyGrad 2.5.0 with the project's NumPy version (``benchmarks/.local/envs/mygrad``);
- Chainer 7.8.1, which needs ``numpy<2`` and ``setuptools<70`` and installs with
  ``pip install --no-build-isolation chainer==7.8.1`` (``benchmarks/.local/envs/chainer``).

``--setup`` makes both (about two minutes; the same commands by hand are in docs/performance.md).
Each library runs alone in fresh processes (benchmarks/harness.py), in its own Python; the times
are reported as ratios to PyTorch's. The cases:

- conv2d 3x3, padding 1, with bias, forward + backward (a gradient of ones), batch 4, at SegNetSmall's
  layer sizes: 32, 64, 128 and 256 channels at 128, 64, 32 and 16 pixels;
- one SegNetSmall SGD-momentum step, batch 4 at 128x128, from the same weights and batch in every
  library. Chainer has every layer (max-pooling indices, ``upsampling_2d`` as the unpooling, BatchNorm
  with running statistics, ``softmax_cross_entropy(ignore_label=-1)``, ``MomentumSGD``), so its first
  loss equals PyTorch's. MyGrad lacks max-unpooling: its decoder upsamples with nearest-neighbour
  repetition instead (``mygrad.repeat``, same shapes, not the same numbers, so its loss differs); its
  batchnorm keeps no running statistics, its cross-entropy has no ignore_index (built here from
  ``logsoftmax`` and indexing), and it has no optimizer (momentum SGD written out on its arrays).
"""
from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np

import harness
import train_step

ENVS = harness.LOCAL / "envs"
CONV_LAYERS = [(32, 128), (64, 64), (128, 32), (256, 16)]  # (channels, pixels): SegNetSmall's stages at 128x128
BATCH = 4
STEP_CASE = {"name": "segnet_small b4_128", "batch": 4, "size": 128}
PEER_SETUP = {  # venv name -> pip install commands, in order
    "mygrad": [["mygrad==2.5.0", f"numpy=={np.__version__}"]],
    "chainer": [["numpy<2", "setuptools<70", "wheel"], ["--no-build-isolation", "chainer==7.8.1"]],
}


def peer_python(name):
    return ENVS / name / "bin" / "python"


def setup():
    """Make the peers' venvs under benchmarks/.local/envs/ (their own, not the project's)."""
    for name, installs in PEER_SETUP.items():
        folder = ENVS / name
        print(f"{folder}: python -m venv, then pip install", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(folder)], check=True)
        for packages in installs:
            subprocess.run([str(peer_python(name)), "-m", "pip", "install", "--quiet", *packages], check=True)


def candidates():
    missing = [name for name in PEER_SETUP if not peer_python(name).exists()]
    if missing:
        raise SystemExit(f"no venv for {', '.join(missing)} under {ENVS}: run `python benchmarks/peers.py --setup`")
    return [
        harness.Candidate("PyTorch", {"library": "torch"}),
        harness.Candidate("minidl fast", {"library": "minidl", "kernels": "fast"}),
        harness.Candidate("minidl reference", {"library": "minidl", "kernels": "reference"}),
        harness.Candidate("MyGrad", {"library": "mygrad"}, python=str(peer_python("mygrad")), in_process=False),
        harness.Candidate("Chainer", {"library": "chainer"}, python=str(peer_python("chainer")), in_process=False),
    ]


# --------------------------------------------------------------------------- conv 3x3 forward + backward
def conv_arrays(case):
    rng = np.random.default_rng(0)
    c, size = case["channels"], case["size"]
    x = rng.standard_normal((BATCH, c, size, size)).astype(np.float32)
    w = (rng.standard_normal((c, c, 3, 3)) * 0.05).astype(np.float32)
    return x, w, np.zeros(c, np.float32)


def conv_minidl(x, w, b, kernels):
    import minidl
    import minidl.nn.functional as F

    minidl.set_kernels(kernels)
    x, w, b = (minidl.tensor(a).requires_grad_() for a in (x, w, b))

    def step():
        x.grad = w.grad = b.grad = None
        y = F.conv2d(x, w, b, padding=1)
        y.backward(minidl.ones_like(y))

    return step


def conv_torch(x, w, b):
    import os

    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    x, w, b = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))

    def step():
        x.grad = w.grad = b.grad = None
        y = torch.nn.functional.conv2d(x, w, b, padding=1)
        y.backward(torch.ones_like(y))

    return step


def conv_mygrad(x, w, b):
    import mygrad
    from mygrad.nnet import conv_nd

    x, w, b = mygrad.tensor(x), mygrad.tensor(w), mygrad.tensor(b.reshape(1, -1, 1, 1))

    def step():
        y = conv_nd(x, w, stride=1, padding=1) + b
        y.backward(np.ones(y.shape, np.float32))

    return step


def conv_chainer(x, w, b):
    import chainer
    import chainer.functions as F

    x, w, b = chainer.Variable(x), chainer.Variable(w), chainer.Variable(b)

    def step():
        for variable in (x, w, b):
            variable.cleargrad()
        y = F.convolution_2d(x, w, b, pad=1)
        y.grad = np.ones_like(y.array)
        y.backward()

    return step


# --------------------------------------------------------------------------- the SegNetSmall step, per peer
def segnet_forward(layers, x):
    """SegNetSmall's forward (minidl.models.SegNetSmall) over a peer's ``layers``: conv_bn_relu, pool, unpool, conv."""
    remembered = []
    for stage in range(4):
        for block in range(2):
            x = layers.conv_bn_relu(x, f"encoders.{stage}.{block}")
        size = x.shape[-2:]
        x, indices = layers.pool(x)
        remembered.append((indices, size))
    for stage in range(4):
        indices, size = remembered.pop()
        x = layers.unpool(x, indices, size)
        for block in range(2):
            x = layers.conv_bn_relu(x, f"decoders.{stage}.{block}")
    return layers.conv(x, "classifier", padding=0)


class ChainerLayers:
    """SegNetSmall's layers in Chainer, on parameters named as minidl's state_dict (a Link holds them)."""

    def __init__(self, weights):
        import chainer

        self.F = chainer.functions
        self.link = chainer.Link()
        self.buffers = {}
        with self.link.init_scope():
            for key, value in weights.items():
                if key.endswith(("weight", "bias")):
                    setattr(self.link, key.replace(".", "_"), chainer.Parameter(value.copy()))
                elif not key.endswith("num_batches_tracked"):
                    self.buffers[key] = value.copy()

    def param(self, key):
        return getattr(self.link, key.replace(".", "_"))

    def conv(self, x, name, padding=1):
        return self.F.convolution_2d(x, self.param(f"{name}.weight"), self.param(f"{name}.bias"), pad=padding)

    def conv_bn_relu(self, x, name):
        x = self.conv(x, f"{name}.0")
        bn = f"{name}.1"
        x = self.F.batch_normalization(x, self.param(f"{bn}.weight"), self.param(f"{bn}.bias"), eps=1e-5,
                                       running_mean=self.buffers[f"{bn}.running_mean"],
                                       running_var=self.buffers[f"{bn}.running_var"], decay=0.9)
        return self.F.relu(x)

    def pool(self, x):
        return self.F.max_pooling_2d(x, 2, stride=2, cover_all=False, return_indices=True)

    def unpool(self, x, indices, size):
        return self.F.upsampling_2d(x, indices, ksize=2, stride=2, outsize=tuple(size), cover_all=False)


def step_chainer(case):
    import chainer

    weights, images, masks = train_step.load_case(case)
    layers = ChainerLayers(weights)
    optimizer = chainer.optimizers.MomentumSGD(lr=train_step.LR, momentum=train_step.MOMENTUM)
    optimizer.setup(layers.link)

    def step():
        loss = chainer.functions.softmax_cross_entropy(segnet_forward(layers, images), masks, ignore_label=-1)
        layers.link.cleargrads()
        loss.backward()
        optimizer.update()
        return float(loss.array)

    return step


class MyGradLayers:
    """SegNetSmall's layers in MyGrad; nearest-neighbour upsampling stands in for the max-unpooling it lacks."""

    def __init__(self, weights):
        import mygrad
        import mygrad.nnet

        self.mygrad, self.nnet = mygrad, mygrad.nnet
        self.params = {key: mygrad.tensor(value.reshape(1, -1, 1, 1) if self.is_conv_bias(key) else value)
                       for key, value in weights.items() if key.endswith(("weight", "bias"))}

    def is_conv_bias(self, key):
        return key.endswith("bias") and (key.startswith("classifier") or key.endswith(".0.bias"))

    def conv(self, x, name, padding=1):
        return self.nnet.conv_nd(x, self.params[f"{name}.weight"], stride=1, padding=padding) + self.params[f"{name}.bias"]

    def conv_bn_relu(self, x, name):
        x = self.conv(x, f"{name}.0")
        x = self.nnet.batchnorm(x, gamma=self.params[f"{name}.1.weight"], beta=self.params[f"{name}.1.bias"], eps=1e-5)
        return self.nnet.relu(x)

    def pool(self, x):
        return self.nnet.max_pool(x, (2, 2), 2), None

    def unpool(self, x, indices, size):
        return self.mygrad.repeat(self.mygrad.repeat(x, 2, axis=2), 2, axis=3)


def step_mygrad(case):
    from mygrad.nnet import logsoftmax

    weights, images, masks = train_step.load_case(case)
    layers = MyGradLayers(weights)
    n, h, w = np.nonzero(masks >= 0)  # the pixels that count (-1 = ignored)
    targets = masks[n, h, w]
    velocity = {key: np.zeros_like(p.data) for key, p in layers.params.items()}

    def step():
        loss = -logsoftmax(segnet_forward(layers, images), axis=1)[n, targets, h, w].mean()
        loss.backward()
        for key, p in layers.params.items():  # SGD with momentum, as PyTorch's: v = m v + g; p -= lr v
            velocity[key] *= train_step.MOMENTUM
            velocity[key] += p.grad
            p.data -= train_step.LR * velocity[key]
        return float(loss.item())

    return step


CONV = {"minidl": conv_minidl, "torch": conv_torch, "mygrad": conv_mygrad, "chainer": conv_chainer}
STEP = {"mygrad": step_mygrad, "chainer": step_chainer}


def workload(options, case):
    """The harness's entry: one library's conv or SegNetSmall step."""
    library = options["library"]
    extra = [options["kernels"]] if library == "minidl" else []
    if case["kind"] == "conv":
        return CONV[library](*conv_arrays(case), *extra)
    if library in STEP:
        return STEP[library](case)
    return train_step.workload(options, case)


# --------------------------------------------------------------------------- the report
def report_rows(cases, timings, names):
    rows = []
    for case in cases:
        by_name = timings[case["name"]]
        base = by_name["PyTorch"]
        row = {"case": case["label"], "PyTorch ms": harness.timing_cell(base, 1000)}
        for name in names[1:]:
            row[f"{name} / PyTorch"] = harness.ratio_cell(by_name[name], base)
        for name in names[1:]:
            row[f"{name} ms"] = harness.timing_cell(by_name[name], 1000)
        rows.append(row)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setup", action="store_true", help="make the peers' venvs under benchmarks/.local/envs/, then stop")
    args = harness.add_arguments(parser).parse_args()
    if args.setup:
        return setup()
    harness.validate(args)
    contenders = candidates()
    names = [c.name for c in contenders]
    layers = CONV_LAYERS[:1] if args.quick else CONV_LAYERS
    conv_cases = [{"name": f"conv {c}@{s}", "kind": "conv", "channels": c, "size": s,
                   "label": f"conv2d 3x3 {c}->{c} at {s}x{s}, fwd+bwd"} for c, s in layers]
    session = harness.Session(args, "peers")
    step_case = {**train_step.prepare(STEP_CASE, session.folder), "kind": "step",
                 "label": "SegNetSmall SGD step, batch 4 at 128x128"}
    timings = session.standalone("peers", contenders, conv_cases, process_per_case=False)
    timings.update(session.standalone("peers", contenders, [step_case]))
    step_timings = timings[step_case["name"]]
    train_step.check_first_losses({step_case["name"]: {k: v for k, v in step_timings.items() if k != "MyGrad"}})
    rows = report_rows(conv_cases + [step_case], timings, names)
    peaks = ", ".join(f"{name} {step_timings[name].summary()['peak_rss_mb']:.0f} MB" for name in names)
    losses = ", ".join(f"{name} {step_timings[name].first[0]:.4f}" for name in names)
    notes = [f"Batch {BATCH}, float32. Convolutions: padding 1, with bias, forward and backward from a gradient of "
             "ones; all four sizes run in one process per library per round. The step: SGD lr 0.01 momentum 0.9 "
             "from the same initial weights and batch (labels -1 ignored), a process of its own per library per "
             f"round; peak RSS {peaks}; first losses {losses}.",
             "",
             "MyGrad's step is not the same network: it has no max-unpooling, so its decoder upsamples by "
             "nearest-neighbour repetition (`mygrad.repeat`); its batchnorm keeps no running statistics; its "
             "cross-entropy with ignored labels is built from `logsoftmax` and indexing; momentum SGD is written out "
             "on its arrays. Chainer runs every layer of the step (max-pooling indices and `upsampling_2d`), with "
             "its default configuration (type checks on).",
             "",
             "Peers: `python benchmarks/peers.py --setup` (venvs under benchmarks/.local/envs/: MyGrad with the "
             "project's NumPy; Chainer 7.8.1 with numpy<2). Command: `python benchmarks/peers.py`."]
    session.write_report("minidl and its NumPy peers (MyGrad, Chainer) against PyTorch CPU",
                         ["case", "PyTorch ms", *[f"{n} / PyTorch" for n in names[1:]], *[f"{n} ms" for n in names[1:]]],
                         rows, notes, {"timings": harness.summaries(timings)})


if __name__ == "__main__":
    main()
