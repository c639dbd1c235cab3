"""The tutorial's architecture lesson, measured: why segmentation nets downsample, then upsample.

    python examples/architectures.py --out docs            # 6 epochs per net: about 25 CPU minutes on 2 cores
    python examples/architectures.py --epochs 2            # a quicker look
    python examples/architectures.py --budget 60           # 60 CPU seconds of training per net instead

The tutorial argues: a net that keeps full resolution everywhere costs too much
memory (every activation is kept for backward) and still sees little (a 3x3 conv
adds 2 pixels of context); pooling grows the receptive field cheaply; so
downsample slowly and upsample slowly. This script checks each claim on five
nets, all for 23 classes:

- ``naive``: the constant-resolution net, a stack of same-size 3x3 convs (64 filters);
- ``fcn32s``: pool to 1/32, classify, then ONE bilinear upsampling back (FCN-32s style);
- ``segnet_small``, ``unet``, ``fcn``: the encoder-decoders of ``minidl.models``.

For each, at ``--size`` (default 240x240, batch 1): parameters, what the autograd
graph keeps for backward, the measured peak memory of forward + backward, the
receptive field (all from ``minidl.summary``) and the time of one training step;
then the pixel accuracy each reaches on the embedded synthetic scenes (whose
classes need context to tell apart) after the same training: ``--epochs`` passes
over the training scenes (the default), or ``--budget`` CPU seconds. The same
number of epochs shows what each architecture can learn from the same data; a
short time budget mostly shows which net is cheapest per step. Times are CPU
seconds of this process (see ``clock``), so that other programs sharing the
machine change them less; on an idle 2-core machine a CPU second is a little
over half a wall-clock second.

Writes ``architectures.md`` (the table) and ``architectures.png`` (memory against
receptive field, and held-out accuracy by epoch) into ``--out``; the charts need
matplotlib (``pip install 'minidl[examples]'``).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

import minidl  # noqa: E402
import minidl.nn.functional as F  # noqa: E402
from minidl import nn, optim  # noqa: E402
from minidl.models import FCN, SegNetSmall, UNet  # noqa: E402
from minidl.models.blocks import conv_bn_relu  # noqa: E402
from minidl.summary import human_bytes  # noqa: E402
from data_setup import datasets_for  # noqa: E402  (examples/data_setup.py)
from plots import new_figure  # noqa: E402  (examples/plots.py)
from minidl.metrics import SegmentationMetrics  # noqa: E402
from minidl.data import VOID, DataLoader, transforms as T  # noqa: E402

NUM_CLASSES = 23


# =========================================================================== the two nets the library lacks
class ConstantResolution(nn.Module):
    """The tutorial's naive net: ``depth`` conv-bn-relu units, all at full resolution, then a 1x1 classifier.

    (N, 3, H, W) -> (N, classes, H, W). Every unit keeps ~2 full-size maps of
    ``width`` channels for backward, and adds only 2 pixels to the receptive field.
    """

    def __init__(self, num_classes=NUM_CLASSES, width=64, depth=8):
        super().__init__()
        self.features = nn.Sequential(conv_bn_relu(3, width), *(conv_bn_relu(width, width) for _ in range(depth - 1)))
        self.classifier = nn.Conv2d(width, num_classes, kernel_size=1)

    def forward(self, x):
        return self.classifier(self.features(x))


class PoolThenUpsample(nn.Module):
    """FCN-32s style: [conv-bn-relu, 2x2 max pool] x 5 to 1/32 of the size, a 1x1 classifier, one bilinear upsampling.

    (N, 3, H, W) -> (N, classes, H, W). Cheap and far-sighted, but every output
    pixel is interpolated from a 32x coarser grid: boundaries come out blurred.
    """

    def __init__(self, num_classes=NUM_CLASSES, widths=(32, 64, 128, 256, 256)):
        super().__init__()
        stages, channels = [], 3
        for width in widths:
            stages += [conv_bn_relu(channels, width), nn.MaxPool2d(2)]
            channels = width
        self.features = nn.Sequential(*stages)
        self.classifier = nn.Conv2d(channels, num_classes, kernel_size=1)

    def forward(self, x):
        scores = self.classifier(self.features(x))
        return F.interpolate(scores, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)


NETS = {
    "naive": ("constant resolution (8 convs, 64 filters)", ConstantResolution),
    "fcn32s": ("pool to 1/32, upsample once (FCN-32s style)", PoolThenUpsample),
    "segnet_small": ("SegNetSmall (unpooling with indices)", SegNetSmall),
    "unet": ("U-Net (concatenated skips)", UNet),
    "fcn": ("FCN (transposed convs, added skips)", FCN),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--size", type=int, default=240, help="image side for memory, receptive field and step time")
    parser.add_argument("--epochs", type=int, default=6, help="training epochs per net (the same for all)")
    parser.add_argument("--budget", type=float, help="train each net for this many CPU seconds instead of --epochs")
    parser.add_argument("--train-size", type=int, default=64, help="image side used for training and evaluation")
    parser.add_argument("--train-images", type=int, default=400, help="synthetic training scenes")
    parser.add_argument("--val-images", type=int, default=64, help="synthetic held-out scenes")
    parser.add_argument("--batch-size", type=int, default=4, help="training batch size")
    parser.add_argument("--lr", type=float, default=2e-3, help="AdamW learning rate, cosine-decayed over the training")
    parser.add_argument("--nets", default=",".join(NETS), help="comma-separated subset of " + ", ".join(NETS))
    parser.add_argument("--seed", type=int, default=0, help="seeds the data, the weights and the batch order")
    parser.add_argument("--out", default="runs/architectures", help="folder for architectures.md and architectures.png")
    parser.add_argument("--save-weights", metavar="DIR", help="also save each trained net's weights as DIR/<net>.npz "
                                                                 "(examples/receptive_field.py --weights DIR reads them)")
    return parser.parse_args(argv)


# =========================================================================== measuring one net
# Time is CPU time of this process (all its threads), not wall-clock time: on a machine shared with
# other programs the wall clock runs on while we wait for a core, the CPU clock does not.
clock = time.process_time


def step_seconds(model, size, repeats=2):
    """CPU seconds of one training step (forward, loss, backward, AdamW update) at batch 1, the best of ``repeats``."""
    optimizer = optim.AdamW(model.parameters(), lr=1e-4)
    x = minidl.randn(1, 3, size, size)
    target = minidl.randint(0, NUM_CLASSES, (1, size, size))
    best = math.inf
    for _ in range(repeats + 1):  # the first step is a warm-up (buffers, optimizer state)
        started = clock()
        loss = F.cross_entropy(model(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        best = min(best, clock() - started)
    return best


def training_done(args, epoch, spent):
    """The stopping rule, the same for every net: ``--epochs`` whole epochs, or ``--budget`` CPU seconds."""
    return spent >= args.budget if args.budget is not None else epoch >= args.epochs


def progress(args, steps, spent, steps_per_epoch):
    """How far training has come, from 0 to 1: the cosine schedule's clock."""
    if args.budget is not None:
        return min(spent / args.budget, 1.0)
    return min(steps / (args.epochs * steps_per_epoch), 1.0)


def train(model, train_set, val_set, args):
    """AdamW with a cosine-decayed lr until ``training_done``; the held-out accuracy after every epoch.

    Returns (final metrics, steps, CPU seconds of training steps, history): history
    holds one (epoch, CPU seconds so far, held-out pixel accuracy) per epoch.
    Evaluation is not counted in the CPU seconds.
    """
    optimizer = optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = len(train_set) // args.batch_size
    spent, steps, epoch, history = 0.0, 0, 0, []
    while not training_done(args, epoch, spent):
        rng = np.random.default_rng([args.seed, epoch])
        model.train()
        flip = T.RandomHorizontalFlip(seed=rng)
        for images, masks in DataLoader(train_set, args.batch_size, shuffle=True, drop_last=True, seed=rng, prefetch=0):
            started = clock()
            for group in optimizer.param_groups:
                group["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * progress(args, steps, spent, steps_per_epoch)))
            images, masks = flip(images.numpy(), masks.numpy())
            loss = F.cross_entropy(model(minidl.tensor(images)), minidl.tensor(masks), ignore_index=VOID)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            spent += clock() - started
            steps += 1
            if args.budget is not None and spent >= args.budget:
                break
        epoch += 1
        metrics = evaluate(model, val_set, args.batch_size)
        history.append((epoch, spent, metrics["pixel_accuracy"]))
    return metrics, steps, spent, history


@minidl.no_grad()
def evaluate(model, dataset, batch_size):
    """{"pixel_accuracy", "mean_iou", ...} over a whole split, the model in eval mode."""
    model.eval()
    metrics = SegmentationMetrics(NUM_CLASSES)
    for images, masks in DataLoader(dataset, batch_size, prefetch=0):
        metrics.update(model(images).argmax(1).numpy(), masks.numpy())
    return metrics.as_dict()


def measure(key, args, train_set, val_set):
    title, make = NETS[key]
    minidl.manual_seed(args.seed)
    model = make(NUM_CLASSES)
    s = minidl.summary(model, (1, 3, args.size, args.size))
    seconds = step_seconds(model, args.size)
    minidl.manual_seed(args.seed)
    model = make(NUM_CLASSES)  # training starts from fresh weights
    metrics, steps, spent, history = train(model, train_set, val_set, args)
    if args.save_weights:
        Path(args.save_weights).mkdir(parents=True, exist_ok=True)
        minidl.save(model.state_dict(), Path(args.save_weights) / f"{key}.npz")
    row = dict(key=key, title=title, params=s.total_params, kept=s.activation_bytes, peak=s.peak_bytes,
               rf=s.receptive_field[0], macs=s.macs, step=seconds, steps=steps,
               train_seconds=spent, history=history, accuracy=metrics["pixel_accuracy"], miou=metrics["mean_iou"])
    print(f"{key:>13}: {row['params']:>10,} params | kept {human_bytes(row['kept']):>10} | peak "
          f"{human_bytes(row['peak']):>10} | RF {row['rf']:>4} | step {seconds:.2f}s | {steps} steps in "
          f"{spent / 60:.1f} CPU min -> "
          f"accuracy {row['accuracy']:.3f}, mIoU {row['miou']:.3f}", flush=True)
    return row


# =========================================================================== outputs
def training_words(args):
    """'6 epochs' or '60 CPU seconds': how long every net trained."""
    return f"{args.budget:g} CPU seconds" if args.budget is not None else f"{args.epochs} epochs"


def markdown_table(rows, args):
    lines = [
        f"Measured by `examples/architectures.py` (memory, receptive field and step time at {args.size}x{args.size}, "
        f"batch 1; accuracy on {args.val_images} held-out synthetic scenes at {args.train_size}x{args.train_size} "
        f"after {training_words(args)} of training each on {args.train_images} scenes, batch {args.batch_size}, "
        f"AdamW lr {args.lr:g}). Times are CPU seconds of one process.",
        "",
        "| net | parameters | kept for backward | peak (forward + backward) | receptive field | MACs | "
        "training step | training (steps, CPU min) | pixel accuracy | mean IoU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['title']} | {r['params']:,} | {human_bytes(r['kept'])} | {human_bytes(r['peak'])} | "
                     f"{r['rf']} px | {r['macs'] / 1e9:.1f} G | {r['step']:.2f} s | {r['steps']}, "
                     f"{r['train_seconds'] / 60:.1f} | {r['accuracy']:.3f} | {r['miou']:.3f} |")
    return "\n".join(lines) + "\n"


def _font(size):  # examples/receptive_field.py draws its labels with it
    try:
        return ImageFont.load_default(size=size)  # a scalable font (Pillow >= 10.1 with FreeType)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def plot(rows, image_side, path):
    """Two panels: memory (MiB) against receptive field, one point per net; held-out accuracy by epoch."""
    figure, (memory, accuracy) = new_figure(2, width=5.0, height=3.8)
    mib = 1024 * 1024
    for r in rows:
        line, = memory.plot([r["rf"], r["rf"]], [r["kept"] / mib, r["peak"] / mib], linewidth=1.5)
        colour = line.get_color()
        memory.plot(r["rf"], r["kept"] / mib, "o", color=colour)
        memory.plot(r["rf"], r["peak"] / mib, "o", markerfacecolor="white", color=colour)
        memory.annotate(r["key"], (r["rf"], r["kept"] / mib), xytext=(6, -4), textcoords="offset points",
                        color=colour, fontsize="small")
        epochs, _, accuracies = zip(*r["history"]) if r["history"] else ((), (), ())
        accuracy.plot(epochs, accuracies, marker=".", color=colour, label=r["key"])
    memory.axvline(image_side, color="0.5", linestyle=":", linewidth=1)
    memory.annotate(f"image side ({image_side} px)", (image_side, 0), xytext=(-4, 4), textcoords="offset points",
                    ha="right", color="0.4", fontsize="small")
    memory.plot([], [], "ko", label="kept for backward")
    memory.plot([], [], "o", color="k", markerfacecolor="white", label="peak over forward + backward")
    memory.set(title=f"memory against receptive field ({image_side}x{image_side}, batch 1)",
               xlabel="receptive field (input pixels)", ylabel="MiB", ylim=(0, None),
               xlim=(0, 1.3 * max([image_side] + [r["rf"] for r in rows])))  # room for the labels
    memory.legend(loc="best", fontsize="small")
    accuracy.set(title="held-out pixel accuracy (non-void) by epoch", xlabel="epoch")
    accuracy.yaxis.set_major_formatter("{x:.0%}")
    accuracy.xaxis.get_major_locator().set_params(integer=True)
    accuracy.legend(loc="lower right", fontsize="small")
    figure.savefig(path, dpi=90)
    return figure


def main(argv=None):
    args = parse_args(argv)
    keys = [k.strip() for k in args.nets.split(",") if k.strip()]
    unknown = set(keys) - set(NETS)
    if unknown:
        raise SystemExit(f"unknown nets {sorted(unknown)}; choose from {list(NETS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data_args = SimpleNamespace(data="synthetic", size=args.train_size, train_images=args.train_images,
                                val_images=args.val_images, seed=args.seed)
    train_set, val_set = datasets_for(data_args)
    print(f"{len(keys)} nets | figures at {args.size}x{args.size} | training {training_words(args)} each at "
          f"{args.train_size}x{args.train_size} on {len(train_set)} synthetic scenes", flush=True)
    rows = [measure(key, args, train_set, val_set) for key in keys]
    (out / "architectures.md").write_text(markdown_table(rows, args))
    plot(rows, args.size, out / "architectures.png")
    print(f"wrote {out / 'architectures.md'} and {out / 'architectures.png'}")
    return rows


if __name__ == "__main__":
    main()
