"""MSRC-v2 (Microsoft Research Cambridge, 591 photographs, 23 classes + void), in its own layout.

    root/Images/<name>.bmp|.png|.jpg        the photographs
    root/GroundTruth/<name>_GT.bmp|.png     labels, colour-coded with MSRC_PALETTE, black = void
    root/train.txt, val.txt, test.txt       one <name> per line, no extension

    train = MSRC("../shared/data/msrc_v2", "train")
    image, mask = train[0]      # float32 (3, H, W) in [0, 1], int64 (H, W) with -1 = void

Images come in several sizes (320x213, 213x320, ...), so batching needs a transform that
makes them equal (Resize, RandomCrop). All files are decoded when the dataset is built.
"""
from __future__ import annotations

from pathlib import Path

from .dataset import SegmentationDataset
from .files import read_colour_labels, read_split_file
from .palette import MSRC_CLASSES, MSRC_PALETTE


def _find_file(folder, stem, extensions, what, name):
    """``folder/stem.ext`` for the first extension that exists, else FileNotFoundError naming the candidates."""
    for extension in extensions:
        path = folder / (stem + extension)
        if path.is_file():
            return path
    tried = ", ".join(str(folder / (stem + e)) for e in extensions)
    raise FileNotFoundError(f"MSRC: no {what} for {name!r}: none of {tried} exists")


class MSRC(SegmentationDataset):
    """MSRC-v2 semantic segmentation: 23 classes (``MSRC_CLASSES``), void = -1.

    root: folder with Images/, GroundTruth/ and the split files.
    split: "train", "val" or "test" (reads ``root/<split>.txt``).
    transform: optional joint transform ``(image, mask) -> (image, mask)``.
    """

    classes = MSRC_CLASSES
    palette = MSRC_PALETTE
    image_extensions = (".bmp", ".png", ".jpg", ".jpeg")
    label_extensions = (".bmp", ".png")

    def __init__(self, root, split="train", transform=None):
        super().__init__(transform)
        self.root, self.split = Path(root), split
        pairs = []
        for line in read_split_file(self.root / f"{split}.txt", "MSRC"):
            name = Path(line).stem if Path(line).suffix.lower() in self.image_extensions else line
            pairs.append((
                _find_file(self.root / "Images", name, self.image_extensions, "image", name),
                _find_file(self.root / "GroundTruth", name + "_GT", self.label_extensions, "ground truth", name),
            ))
        self._load_files(pairs, lambda path: read_colour_labels(path, self.palette))
