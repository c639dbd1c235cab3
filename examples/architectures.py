"""The tutorial's architecture lesson, measured: why segmentation nets downsample, then upsample.

    python examples/architectures.py --out docs            # about 8 minutes on a 2-core CPU
    python examples/architectures.py --budget 300          # train each net for 300 CPU seconds instead of 60

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
classes need context to tell apart) after the same training-time ``--budget``.
Times are CPU seconds of this process (see ``clock``), so that other programs
sharing the machine do not change the outcome much; on an idle 2-core machine
a CPU second is a little over half a wall-clock second.

Writes ``architectures.md`` (the table) and ``architectures.png`` (memory against
receptive field, one labelled point per net) into ``--out``.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

import minidl  # noqa: E402
import minidl.nn.functional as F  # noqa: E402
from minidl import nn, optim  # noqa: E402
from minidl.models import FCN, SegNetSmall, UNet  # noqa: E402
from minidl.models.blocks import conv_bn_relu  # noqa: E402
from minidl.summary import human_bytes  # noqa: E402
from minidl.visualize import SERIES_COLOURS  # noqa: E402
from data_setup import datasets_for  # noqa: E402  (examples/data_setup.py)
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
    parser.add_argument("--budget", type=float, default=60.0, help="training CPU seconds per net (the same for all)")
    parser.add_argument("--train-size", type=int, default=64, help="image side used for training and evaluation")
    parser.add_argument("--train-images", type=int, default=400, help="synthetic training scenes")
    parser.add_argument("--val-images", type=int, default=64, help="synthetic held-out scenes")
    parser.add_argument("--batch-size", type=int, default=4, help="training batch size")
    parser.add_argument("--lr", type=float, default=2e-3, help="AdamW learning rate, cosine-decayed over the budget")
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


def train_for(model, train_set, val_set, args):
    """AdamW for ``args.budget`` CPU seconds of training steps (cosine lr over that time); returns (metrics, steps)."""
    optimizer = optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    spent, steps, epoch = 0.0, 0, 0
    while spent < args.budget:
        rng = np.random.default_rng([args.seed, epoch])
        model.train()
        flip = T.RandomHorizontalFlip(seed=rng)
        for images, masks in DataLoader(train_set, args.batch_size, shuffle=True, drop_last=True, seed=rng, prefetch=0):
            started = clock()
            for group in optimizer.param_groups:  # cosine decay over the time budget
                group["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * min(spent / args.budget, 1.0)))
            images, masks = flip(images.numpy(), masks.numpy())
            loss = F.cross_entropy(model(minidl.tensor(images)), minidl.tensor(masks), ignore_index=VOID)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            spent += clock() - started
            steps += 1
            if spent >= args.budget:
                break
        epoch += 1
    return evaluate(model, val_set, args.batch_size), steps


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
    metrics, steps = train_for(model, train_set, val_set, args)
    if args.save_weights:
        Path(args.save_weights).mkdir(parents=True, exist_ok=True)
        minidl.save(model.state_dict(), Path(args.save_weights) / f"{key}.npz")
    row = dict(key=key, title=title, params=s.total_params, kept=s.activation_bytes, peak=s.peak_bytes,
               rf=s.receptive_field[0], macs=s.macs, step=seconds, steps=steps,
               accuracy=metrics["pixel_accuracy"], miou=metrics["mean_iou"])
    print(f"{key:>13}: {row['params']:>10,} params | kept {human_bytes(row['kept']):>10} | peak "
          f"{human_bytes(row['peak']):>10} | RF {row['rf']:>4} | step {seconds:.2f}s | {steps} steps -> "
          f"accuracy {row['accuracy']:.3f}, mIoU {row['miou']:.3f}", flush=True)
    return row


# =========================================================================== outputs
def markdown_table(rows, args):
    lines = [
        f"Measured by `examples/architectures.py` (memory, receptive field and step time at {args.size}x{args.size}, "
        f"batch 1; accuracy on {args.val_images} held-out synthetic scenes at {args.train_size}x{args.train_size} "
        f"after {args.budget:g} CPU seconds of training each, batch {args.batch_size}). Times are CPU seconds.",
        "",
        "| net | parameters | kept for backward | peak (forward + backward) | receptive field | MACs | "
        "training step | steps in budget | pixel accuracy | mean IoU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['title']} | {r['params']:,} | {human_bytes(r['kept'])} | {human_bytes(r['peak'])} | "
                     f"{r['rf']} px | {r['macs'] / 1e9:.1f} G | {r['step']:.2f} s | {r['steps']} | "
                     f"{r['accuracy']:.3f} | {r['miou']:.3f} |")
    return "\n".join(lines) + "\n"


def _font(size):
    try:
        return ImageFont.load_default(size=size)  # a scalable font (Pillow >= 10.1 with FreeType)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def nice_step(span, ticks=5):
    """A round grid step (1, 2 or 5 times a power of ten) giving about ``ticks`` steps over ``span``."""
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def plot(rows, image_side, path):
    """Memory (MiB, y) against receptive field (pixels, x): a dot per net for what the graph keeps, a ring for the peak."""
    width, height, left, right, top, bottom = 760, 480, 70, 30, 50, 60
    image = Image.new("RGB", (width, height), "white")
    draw, font, small = ImageDraw.Draw(image), _font(15), _font(12)
    mib = 1024 * 1024
    x_step = nice_step(max(max(r["rf"] for r in rows), image_side))
    y_step = nice_step(max(r["peak"] for r in rows) / mib)
    x_max = x_step * math.ceil(max(max(r["rf"] for r in rows), image_side) * 1.08 / x_step)
    y_max = y_step * math.ceil(max(r["peak"] for r in rows) / mib * 1.08 / y_step)
    to_x = lambda v: left + (width - left - right) * v / x_max  # noqa: E731
    to_y = lambda v: height - bottom - (height - top - bottom) * v / y_max  # noqa: E731
    for k in range(round(x_max / x_step) + 1):  # vertical grid lines, with values below
        x = to_x(k * x_step)
        draw.line([(x, top), (x, height - bottom)], fill=(228, 228, 228))
        value = f"{k * x_step:g}"
        draw.text((x - draw.textlength(value, font=small) / 2, height - bottom + 6), value, fill="black", font=small)
    for k in range(round(y_max / y_step) + 1):  # horizontal grid lines, with values left
        y = to_y(k * y_step)
        draw.line([(left, y), (width - right, y)], fill=(228, 228, 228))
        value = f"{k * y_step:g}"
        draw.text((left - 8 - draw.textlength(value, font=small), y - 7), value, fill="black", font=small)
    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    edge = to_x(image_side)  # beyond the image side, a pixel's field covers the whole image
    for y in range(top, height - bottom, 8):
        draw.line([(edge, y), (edge, y + 4)], fill=(120, 120, 120))
    draw.text((edge + 4, height - bottom - 18), f"image side ({image_side} px)", fill=(90, 90, 90), font=small)
    draw.text((left, 14), f"Memory against receptive field at {image_side}x{image_side}, batch 1", fill="black", font=font)
    draw.text(((width - 200) // 2, height - 30), "receptive field (input pixels)", fill="black", font=font)
    draw.text((12, top - 24), "MiB", fill="black", font=font)
    labels = []  # (x, y, text, colour): boxes first, then the points on top, then the texts
    for i, r in enumerate(rows):
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        x, y = to_x(r["rf"]), to_y(r["kept"] / mib)
        text = f"{r['key']} (accuracy {r['accuracy']:.2f})"
        text_width = draw.textlength(text, font=small)
        text_x = x + 10 if x + 10 + text_width < width - right - 4 else x - 10 - text_width  # keep it inside
        draw.rectangle([text_x - 2, y - 8, text_x + text_width + 2, y + 8], fill="white")
        labels.append((text_x, y, text, colour))
    for i, r in enumerate(rows):
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        x, kept, peak = to_x(r["rf"]), to_y(r["kept"] / mib), to_y(r["peak"] / mib)
        draw.line([(x, kept), (x, peak)], fill=colour, width=2)
        draw.ellipse([x - 6, kept - 6, x + 6, kept + 6], fill=colour)
        draw.ellipse([x - 5, peak - 5, x + 5, peak + 5], fill="white", outline=colour, width=2)
    for text_x, y, text, colour in labels:
        draw.text((text_x, y - 7), text, fill=colour, font=small)
    legend_x, legend_y = width - right - 215, top + 10
    draw.rectangle([legend_x - 6, legend_y - 6, width - right - 4, legend_y + 34], fill="white", outline=(200, 200, 200))
    draw.ellipse([legend_x, legend_y, legend_x + 10, legend_y + 10], fill="black")
    draw.text((legend_x + 16, legend_y - 3), "kept for backward", fill="black", font=small)
    draw.ellipse([legend_x, legend_y + 18, legend_x + 10, legend_y + 28], outline="black", width=2)
    draw.text((legend_x + 16, legend_y + 15), "peak over forward + backward", fill="black", font=small)
    image.save(path, optimize=True)
    return image


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
    print(f"{len(keys)} nets | figures at {args.size}x{args.size} | training {args.budget:g} CPU s each at "
          f"{args.train_size}x{args.train_size} on {len(train_set)} synthetic scenes", flush=True)
    rows = [measure(key, args, train_set, val_set) for key in keys]
    (out / "architectures.md").write_text(markdown_table(rows, args))
    plot(rows, args.size, out / "architectures.png")
    print(f"wrote {out / 'architectures.md'} and {out / 'architectures.png'}")
    return rows


if __name__ == "__main__":
    main()
