"""MSRC-v2 (Microsoft Research Cambridge, 591 photographs, 23 classes + void), in its own layout.

    root/Images/<name>.bmp|.png|.jpg        the photographs
    root/GroundTruth/<name>_GT.bmp|.png     labels, colour-coded with MSRC_PALETTE, black = void
    root/train.txt, val.txt, test.txt       one <name> per line, no extension (optional: see below)

    train = MSRC("PATH/TO/MSRC_v2", "train")
    image, mask = train[0]      # float32 (3, H, W) in [0, 1], int64 (H, W) with -1 = void

Where it comes from. The photographs are Microsoft Research Cambridge's object class recognition
database, version 2 (msrc_objcategimagedatabase_v2.zip, see ``prepare.SOURCES``), for research
use. The labels minidl's README figures use are the cleaned-up ones of Malisiewicz and Efros
("Improving Spatial Support for Objects via Multiple Segmentations", BMVC 2007), distributed on
their project page as MATLAB files: the same images and 23 classes, with the objects outlined
more accurately than in Microsoft's original, coarser labels. With the original labels (what the
archive holds, and what ``download=True`` gives) the pixels along object boundaries are labelled
differently, so accuracy and IoU are not comparable with figures made on the cleaned labels.
``python -m minidl.data.prepare msrc ARCHIVE ROOT --labels CLEANED`` builds this layout from the
archive and the cleaned labels and checks it; both kinds end up colour-coded with MSRC_PALETTE.

The split. Without ``root/<split>.txt`` the lists that ship with minidl are used
(minidl/data/splits/msrc_*.txt: 295 train, 58 val, 238 test, stratified by category), so
``split="test"`` names the same images for everyone.

Images come in several sizes (320x213, 213x320, ...), so batching needs a transform that
makes them equal (Resize, RandomCrop). All files are decoded when the dataset is built.
"""
from __future__ import annotations

from pathlib import Path

from .dataset import SegmentationDataset
from .files import read_colour_labels, read_split_file, shipped_split_file
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

    root: folder with Images/, GroundTruth/ and optionally the split files.
    split: "train", "val" or "test": ``root/<split>.txt``, else the list minidl ships.
    transform: optional joint transform ``(image, mask) -> (image, mask)``.
    download: if ``root`` holds no PREPARED.txt, download Microsoft's archive into root/downloads/
        and prepare it there first. That gives Microsoft's original labels; for the cleaned labels
        of the README's figures run ``python -m minidl.data.prepare msrc`` with ``--labels``.
    """

    classes = MSRC_CLASSES
    palette = MSRC_PALETTE
    image_extensions = (".bmp", ".png", ".jpg", ".jpeg")
    label_extensions = (".bmp", ".png")

    def __init__(self, root, split="train", transform=None, download=False):
        super().__init__(transform)
        self.root, self.split = Path(root), split
        if download:
            from .prepare import ensure_prepared  # on use: `python -m minidl.data.prepare` must find it unimported

            ensure_prepared("msrc", self.root)
        if not (self.root / "Images").is_dir():
            raise FileNotFoundError(
                f"MSRC: {self.root} has no Images/ folder; prepare MSRC-v2 there with "
                f"`python -m minidl.data.prepare msrc ARCHIVE {self.root}` (see minidl/data/prepare.py)"
            )
        pairs = []
        for line in read_split_file(self._split_file(), "MSRC"):
            name = Path(line).stem if Path(line).suffix.lower() in self.image_extensions else line
            pairs.append((
                _find_file(self.root / "Images", name, self.image_extensions, "image", name),
                _find_file(self.root / "GroundTruth", name + "_GT", self.label_extensions, "ground truth", name),
            ))
        self._load_files(pairs, lambda path: read_colour_labels(path, self.palette))

    def _split_file(self):
        """``root/<split>.txt`` when the folder has it, else the shipped list of that split."""
        own = self.root / f"{self.split}.txt"
        return own if own.is_file() else shipped_split_file("msrc", self.split)
