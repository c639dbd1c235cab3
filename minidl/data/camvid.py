"""CamVid as the SegNet tutorial ships it: 11 classes at 480x360, index-valued label PNGs.

    root/train/NAME.png  root/trainannot/NAME.png    (and val/, valannot/, test/, testannot/)
    root/train.txt       "IMAGE ANNOTATION" per line, absolute paths of the authors' machine
                         (/SegNet/CamVid/train/NAME.png ...): only the last two parts count.

Label values 0..10 are the classes of ``CAMVID_CLASSES``; 11 (Unlabelled) becomes void (-1).
Without a list file the image folder is listed, and each image's annotation has its name.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .dataset import SegmentationDataset
from .files import read_index_labels, read_split_file
from .palette import CAMVID_CLASSES, CAMVID_PALETTE, VOID


class CamVid(SegmentationDataset):
    """CamVid road scenes: 11 classes (``CAMVID_CLASSES``), unlabelled (11) -> void (-1).

    root: folder holding train/, trainannot/, ... and optionally train.txt, ...
    split: "train", "val" or "test". transform: optional joint transform.
    """

    classes = CAMVID_CLASSES
    palette = CAMVID_PALETTE
    unlabelled = 11

    def __init__(self, root, split="train", transform=None):
        super().__init__(transform)
        self.root, self.split = Path(root), split
        self._load_files(self._pairs(), self._labels)

    def _pairs(self):
        """(image path, annotation path) for every item of the split."""
        list_file = self.root / f"{self.split}.txt"
        if list_file.is_file():
            pairs = []
            for number, line in enumerate(read_split_file(list_file, "CamVid"), start=1):
                fields = line.split()
                if len(fields) != 2:
                    raise ValueError(f"CamVid: {list_file} line {number}: expected 'IMAGE ANNOTATION', got {line!r}")
                # "/SegNet/CamVid/train/x.png" -> root/train/x.png
                pairs.append(tuple(self.root.joinpath(*Path(f).parts[-2:]) for f in fields))
            return pairs
        image_dir, label_dir = self.root / self.split, self.root / f"{self.split}annot"
        if not image_dir.is_dir():
            raise FileNotFoundError(f"CamVid: neither list file {list_file} nor image folder {image_dir} exists")
        images = sorted(image_dir.glob("*.png"))
        if not images:
            raise ValueError(f"CamVid: no .png images in {image_dir}")
        return [(path, label_dir / path.name) for path in images]

    def _labels(self, path):
        """int8 mask: 0..10 kept, 11 -> void; anything else is an error naming the file."""
        labels = read_index_labels(path)
        bad = labels > self.unlabelled
        if bad.any():
            values = np.unique(labels[bad]).tolist()
            raise ValueError(
                f"CamVid: label image {path} has values {values[:10]} ({int(bad.sum())} pixels); "
                f"expected 0..{self.unlabelled - 1} and {self.unlabelled} for unlabelled"
            )
        mask = labels.astype(np.int8)
        mask[labels == self.unlabelled] = VOID
        return mask
