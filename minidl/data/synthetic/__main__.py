"""Look at the synthetic scenes: ``python -m minidl.data.synthetic [--out scenes.png]``.

Generates a training set, reports how long it took and each class's share of pixels, and
writes a picture: rows of scenes with their colour-coded masks (void black) underneath.
"""
import argparse
import time

import numpy as np
from PIL import Image

from ..palette import MSRC_CLASSES
from . import SyntheticScenes


def preview(dataset, columns=8, rows=3, scale=2):
    """uint8 picture: ``rows`` x ``columns`` tiles, each an image above its decoded mask."""
    height, width = dataset.size
    gap = 2
    tiles = [np.concatenate([dataset.images[i], dataset.decode_mask(dataset.masks[i])], 0) for i in range(rows * columns)]
    canvas = np.full((rows * (2 * height + gap), columns * (width + gap), 3), 255, np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, columns)
        canvas[r * (2 * height + gap):r * (2 * height + gap) + 2 * height, c * (width + gap):c * (width + gap) + width] = tile
    return np.kron(canvas, np.ones((scale, scale, 1), np.uint8))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="synthetic_scenes.png")
    args = parser.parse_args()

    start = time.perf_counter()
    dataset = SyntheticScenes(args.images, size=(args.size, args.size), seed=args.seed)
    seconds = time.perf_counter() - start
    print(f"{args.images} scenes of {args.size}x{args.size} in {seconds:.2f} s ({1000 * seconds / args.images:.1f} ms each)")
    counts = dataset.class_pixel_counts()
    shown = np.stack([(dataset.masks == c).any(axis=(1, 2)) for c in range(len(MSRC_CLASSES))], 1).mean(0)
    print(f"void: {(dataset.masks < 0).mean():.1%} of pixels")
    for name, share, images in zip(MSRC_CLASSES, counts / dataset.masks.size, shown):
        print(f"  {name:<10} {share:6.2%} of pixels, in {images:5.1%} of images")
    Image.fromarray(preview(dataset, rows=min(3, max(1, args.images // 8)))).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
