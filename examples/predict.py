"""Segment one image with a trained checkpoint; write the colour-coded mask and an overlay.

    python examples/predict.py photo.png --checkpoint runs/synthetic/checkpoint_best.npz
    # -> photo_mask.png (classes in the palette) and photo_overlay.png (mask blended over the photo)

The checkpoint carries what is needed to rebuild the pipeline: the model name,
the class names and colours, the input size and the normalisation statistics. A bare
state_dict carries none of that: it is refused (train_segnet.py --eval-only --checkpoint
FILE --model NAME evaluates one).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import minidl  # noqa: E402
from data_setup import size_hw  # noqa: E402  (examples/data_setup.py)
from model_setup import labels_at, read_checkpoint, segmentation_logits  # noqa: E402  (examples/model_setup.py)
from minidl.data.transforms import resize_image  # noqa: E402
from minidl.models import build_model  # noqa: E402
from minidl.visualize import colourise, overlay  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", help="an RGB image file (PNG, BMP, JPEG)")
    parser.add_argument("--checkpoint", required=True, help="checkpoint_best.npz or checkpoint_last.npz")
    parser.add_argument("--out", help="folder for the outputs (default: next to the image)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    state = read_checkpoint(args.checkpoint, "--checkpoint", "predict.py rebuilds the network and its input "
                            "pipeline (model, classes and colours, size, normalisation) from a train_segnet.py "
                            "checkpoint_*.npz; train_segnet.py --eval-only --checkpoint FILE --model NAME evaluates "
                            "a bare state_dict")
    config = state["config"]
    model = build_model(config["model"], config["num_classes"]).to(args.device)
    model.load_state_dict(state["model"])
    model.eval()

    try:
        photo = np.asarray(Image.open(args.image).convert("RGB"))
    except OSError as error:
        raise SystemExit(f"cannot read image {args.image}: {error}")
    resized = resize_image(photo, size_hw(config["size"]), layout="hwc").astype(np.float32) / 255.0
    normalised = (resized - np.asarray(config["mean"], np.float32)) / np.asarray(config["std"], np.float32)
    batch = minidl.tensor(normalised.transpose(2, 0, 1)[None].copy(), device=args.device)
    with minidl.no_grad():
        # back to the photo's own size as the evaluation scores: logits upsampled, then the argmax
        labels = labels_at(segmentation_logits(model(batch)), photo.shape[:2])[0]

    palette = np.asarray(config["palette"], np.uint8)
    out = Path(args.out) if args.out else Path(args.image).parent
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(args.image).stem
    Image.fromarray(colourise(labels, palette)).save(out / f"{stem}_mask.png")
    Image.fromarray(overlay(photo, labels, palette)).save(out / f"{stem}_overlay.png")
    names = config["class_names"]
    found, counts = np.unique(labels, return_counts=True)
    share = ", ".join(f"{names[c]} {n / labels.size:.0%}" for c, n in sorted(zip(found, counts), key=lambda p: -p[1]))
    print(f"wrote {out / (stem + '_mask.png')} and {out / (stem + '_overlay.png')}: {share}")


if __name__ == "__main__":
    main()
