"""What does one output pixel see? Its theoretical and its effective receptive field, drawn over the image.

    python examples/receptive_field.py                          # fresh nets, a synthetic scene, the centre pixel
    python examples/receptive_field.py --weights runs/architectures/weights    # the nets architectures.py trained
    python examples/receptive_field.py --checkpoint runs/synthetic/checkpoint_best.npz --image photo.png --pixel 40 60

One panel per net:

- the **theoretical** receptive field of the chosen output pixel, as a rectangle:
  every input pixel that can change it, from the rules of
  ``minidl/summary/receptive_field.py`` run over the autograd graph. It may reach
  beyond the image (into the zero padding): the grey margin shows how far;
- the **effective** receptive field, as a heat map: how much each input pixel does
  change it -- the magnitude of the gradient of that pixel's class score with
  respect to the input, summed over the colour channels. It fills only the middle of
  the rectangle (paths through the centre of a window are far more numerous than
  paths through its edge; Luo et al., 2016), and max pooling makes it speckled
  (its gradient reaches one pixel per window).

The nets run in eval mode: in training mode batch norm's batch statistics would
let every pixel touch every other one.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

import minidl  # noqa: E402
from architectures import NETS, NUM_CLASSES, _font  # noqa: E402  (examples/architectures.py)
from minidl.data import SyntheticScenes  # noqa: E402
from minidl.data.transforms import resize_image  # noqa: E402
from minidl.models import MODELS, build_model  # noqa: E402
from minidl.summary import receptive_window  # noqa: E402
from model_setup import segmentation_logits  # noqa: E402  (LR-ASPP returns {"out": logits})

CHOICES = list(NETS) + [name for name in MODELS if name not in NETS]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--models", default="naive,fcn32s,segnet_small,unet", help="comma-separated: " + ", ".join(CHOICES))
    parser.add_argument("--weights", metavar="DIR",
                        help="load DIR/<net>.npz (from architectures.py --save-weights) where present")
    parser.add_argument("--checkpoint",
                        help="a train_segnet.py checkpoint: its model, size and normalisation (replaces --models)")
    parser.add_argument("--image", help="an RGB image file (default: a synthetic scene)")
    parser.add_argument("--scene", type=int, default=3, help="which held-out synthetic scene, without --image")
    parser.add_argument("--size", type=int, default=96, help="image side the nets see (a checkpoint sets its own)")
    parser.add_argument("--pixel", type=int, nargs=2, metavar=("ROW", "COL"), help="output pixel (default: the centre)")
    parser.add_argument("--scale", type=int, default=2, help="display pixels per image pixel")
    parser.add_argument("--out", default="runs/receptive_field.png", help="the PNG to write")
    return parser.parse_args(argv)


# =========================================================================== the two fields of one net
def effective_field(model, x, pixel):
    """|d score / d input| summed over channels, (H, W), for the class the net predicts at ``pixel``; and that class."""
    x = minidl.tensor(x, requires_grad=True)
    scores = segmentation_logits(model(x))
    row, col = pixel
    chosen = int(scores.detach().numpy()[0, :, row, col].argmax())
    seed = np.zeros(scores.shape, np.float32)
    seed[0, chosen, row, col] = 1.0
    scores.backward(minidl.tensor(seed))
    return np.abs(x.grad.numpy()[0]).sum(axis=0), chosen


def central_extent(magnitude, pixel, share=0.9):
    """Side of the smallest square around ``pixel`` that holds ``share`` of the gradient's total magnitude."""
    total, (row, col) = magnitude.sum(), pixel
    for radius in range(max(magnitude.shape)):
        inside = magnitude[max(row - radius, 0) : row + radius + 1, max(col - radius, 0) : col + radius + 1].sum()
        if inside >= share * total:
            return 2 * radius + 1
    return max(magnitude.shape)


# =========================================================================== drawing
def heat_over(image, magnitude):
    """The image, greyed and darkened, with the magnitude (normalised, square-rooted to show the tails) in red-yellow."""
    grey = image.astype(np.float32).mean(axis=2, keepdims=True) * 0.55
    heat = np.sqrt(magnitude / max(magnitude.max(), 1e-30))[..., None]
    colour = np.concatenate([np.full_like(heat, 255), 40 + 215 * heat, np.zeros_like(heat)], axis=2)  # red -> yellow
    return (grey * (1 - heat) + colour * heat).clip(0, 255).astype(np.uint8)


def panel(image, magnitude, window, pixel, title, scale, margin):
    """One net's picture: heat map on the image, inside a grey margin; the theoretical window as a rectangle."""
    h, w = magnitude.shape
    canvas = Image.new("RGB", ((w + 2 * margin) * scale, (h + 2 * margin) * scale + 40), (205, 205, 205))
    picture = Image.fromarray(heat_over(image, magnitude)).resize((w * scale, h * scale), Image.NEAREST)
    canvas.paste(picture, (margin * scale, 40 + margin * scale))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle([0, 0, canvas.width, 39], fill="white")
    for k, line in enumerate(title):
        draw.text((6, 3 + 18 * k), line, fill="black", font=_font(14))
    to_canvas = lambda r, c: ((c + margin) * scale, 40 + (r + margin) * scale)  # noqa: E731  image (row, col) -> canvas (x, y)
    (top, bottom), (left, right) = window
    x0, y0 = to_canvas(top, left)
    x1, y1 = to_canvas(bottom + 1, right + 1)
    box = [max(x0, 0), max(y0, 40), min(x1, canvas.width) - 1, min(y1, canvas.height) - 1]  # clipped to the panel
    draw.rectangle(box, outline=(0, 170, 255), width=2)
    cx, cy = to_canvas(pixel[0] + 0.5, pixel[1] + 0.5)
    draw.line([(cx - 6, cy), (cx + 6, cy)], fill="white", width=2)
    draw.line([(cx, cy - 6), (cx, cy + 6)], fill="white", width=2)
    return canvas


def legend(width):
    strip = Image.new("RGB", (width, 26), "white")
    draw = ImageDraw.Draw(strip)
    draw.rectangle([6, 7, 24, 19], outline=(0, 170, 255), width=2)
    draw.text((30, 5), "theoretical receptive field", fill="black", font=_font(13))
    draw.rectangle([230, 7, 248, 19], fill=(255, 200, 0))
    draw.text((254, 5), "effective: |d score / d input pixel| (square root)", fill="black", font=_font(13))
    draw.text((600, 5), "+ the output pixel", fill="black", font=_font(13))
    return strip


# =========================================================================== inputs
def load_image(args, size, mean=None, std=None):
    """(uint8 (H, W, 3) for display, float32 (1, 3, H, W) normalised for the net)."""
    if args.image:
        try:
            photo = np.asarray(Image.open(args.image).convert("RGB"))
        except OSError as error:
            raise SystemExit(f"cannot read image {args.image}: {error}")
        image = resize_image(photo, (size, size), layout="hwc").astype(np.uint8)
    else:
        scenes = SyntheticScenes(args.scene + 1, size=(size, size), seed=0, split="val")
        image = scenes.images[args.scene]
    scaled = image.astype(np.float32) / 255.0
    mean = scaled.mean(axis=(0, 1)) if mean is None else np.asarray(mean, np.float32)
    std = scaled.std(axis=(0, 1)) + 1e-6 if std is None else np.asarray(std, np.float32)
    return image, ((scaled - mean) / std).transpose(2, 0, 1)[None].astype(np.float32).copy()


def models_to_draw(args):
    """[(name, model, class names or None)] in eval mode, and the (image, input) to show them."""
    if args.checkpoint:
        state = minidl.load(args.checkpoint)
        config = json.loads(state["config"])
        if not isinstance(config["size"], int):  # train_segnet.py --size WxH
            raise SystemExit(f"--checkpoint {args.checkpoint} was trained at {config['size']}; this lesson needs square images")
        model = build_model(config["model"], config["num_classes"])
        model.load_state_dict(state["model"])
        image = load_image(args, config["size"], config["mean"], config["std"])
        return [(config["model"], model.eval(), config["class_names"])], image
    chosen = []
    for name in (n.strip() for n in args.models.split(",") if n.strip()):
        if name not in CHOICES:
            raise SystemExit(f"unknown net {name!r}; choose from {CHOICES}")
        minidl.manual_seed(0)
        model = NETS[name][1](NUM_CLASSES) if name in NETS else build_model(name, NUM_CLASSES)
        weights = Path(args.weights or "") / f"{name}.npz"
        if args.weights and weights.exists():
            model.load_state_dict(minidl.load(weights))
            name += " (trained)"
        chosen.append((name, model.eval(), minidl.data.MSRC_CLASSES))
    return chosen, load_image(args, args.size)


def main(argv=None):
    args = parse_args(argv)
    chosen, (image, x) = models_to_draw(args)
    size = image.shape[0]
    pixel = tuple(args.pixel) if args.pixel else (size // 2, size // 2)
    if not all(0 <= p < size for p in pixel):
        raise SystemExit(f"--pixel {pixel} is outside the {size}x{size} output")
    margin = size // 4
    panels = []
    for name, model, class_names in chosen:
        magnitude, chosen_class = effective_field(model, x, pixel)
        window = receptive_window(model, x, pixel, clip=False)
        rf = max(window[0][1] - window[0][0], window[1][1] - window[1][0]) + 1
        extent = central_extent(magnitude, pixel)
        inside = np.zeros(magnitude.shape, bool)
        inside[max(window[0][0], 0) : window[0][1] + 1, max(window[1][0], 0) : window[1][1] + 1] = True
        assert not magnitude[~inside].any(), "a gradient outside the theoretical receptive field"  # what theory promises
        print(f"{name:>22}: theoretical field {rf} px; 90% of the gradient within {extent} px; "
              f"class '{class_names[chosen_class]}' at {pixel}")
        title = [f"{name}", f"theory {rf} px | 90% of |grad| in {extent} px"]
        panels.append(panel(image, magnitude, window, pixel, title, args.scale, margin))
    width = sum(p.width for p in panels) + 8 * (len(panels) + 1)
    sheet = Image.new("RGB", (max(width, 760), panels[0].height + 16 + 26), "white")
    for k, picture in enumerate(panels):
        sheet.paste(picture, (8 + k * (picture.width + 8), 8))
    sheet.paste(legend(sheet.width), (0, panels[0].height + 12))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, optimize=True)
    print(f"wrote {out}")
    return sheet


if __name__ == "__main__":
    main()
