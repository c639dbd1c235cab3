"""``SyntheticScenes``: the embedded default dataset -- procedural outdoor scenes in MSRC-v2's classes.

Nothing to download: every image is painted from a seed in a few milliseconds with NumPy
(see scenes.py for what a scene contains, textures.py for why it needs context).

    train = SyntheticScenes(400, seed=0)               # split="train"
    val = SyntheticScenes(100, seed=0, split="val")    # other images, same kind of scenes
    image, mask = train[0]     # float32 (3, 96, 96) in [0, 1], int64 (96, 96): 0..22, -1 = void
"""
from __future__ import annotations

import numpy as np

from ..dataset import SegmentationDataset
from ..palette import MSRC_CLASSES, MSRC_PALETTE
from .scenes import generate_scene

SPLITS = {"train": 0, "val": 1, "test": 2}


class SyntheticScenes(SegmentationDataset):
    """``num_images`` seeded synthetic scenes of ``size`` = (H, W) pixels, in the 23 MSRC classes.

    Image ``i`` depends only on (seed, split, i), so it is the same whatever ``num_images`` is,
    and "train", "val" and "test" never share an image. All images are generated when the
    dataset is built (a few milliseconds each at 96x96) and kept as ``images`` uint8
    (N, H, W, 3) and ``masks`` int8 (N, H, W).
    ``transform``: optional joint transform (image, mask) -> (image, mask).
    """

    classes = MSRC_CLASSES
    palette = MSRC_PALETTE

    def __init__(self, num_images=400, size=(96, 96), seed=0, split="train", transform=None):
        super().__init__(transform)
        if split not in SPLITS:
            raise ValueError(f"SyntheticScenes: split must be one of {list(SPLITS)}, got {split!r}")
        height, width = (size, size) if np.isscalar(size) else size
        if min(height, width) < 16:
            raise ValueError(f"SyntheticScenes: size must be at least 16x16, got {size!r}")
        self.size, self.seed, self.split = (int(height), int(width)), seed, split
        # all scenes have one size, so the cache is two stacked arrays instead of lists
        self.images = np.empty((int(num_images), *self.size, 3), np.uint8)
        self.masks = np.empty((int(num_images), *self.size), np.int8)
        self.names = [f"{split}_{index:05d}" for index in range(int(num_images))]
        for index in range(int(num_images)):
            # one independent generator per image, keyed by (seed, split, index)
            rng = np.random.default_rng([int(seed), SPLITS[split], index])
            self.images[index], self.masks[index] = generate_scene(rng, *self.size)


__all__ = ["SyntheticScenes", "generate_scene"]
