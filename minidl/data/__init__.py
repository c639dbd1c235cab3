"""Data for segmentation: datasets, a DataLoader, joint transforms, palettes.

    from minidl.data import SyntheticScenes, DataLoader, transforms as T
    train = SyntheticScenes(400, seed=0, transform=T.RandomHorizontalFlip(seed=0))
    loader = DataLoader(train, batch_size=8, shuffle=True, seed=0)
    for images, masks in loader:     # float32 (8, 3, 96, 96), int64 (8, 96, 96), -1 = void
        ...

VOID (-1) is the label of unlabelled pixels in every mask: pass ``ignore_index=VOID`` to the loss
(``cross_entropy`` keeps PyTorch's default, -100) and the metrics skip it too. Why -1 rather than
-100: ``mask >= 0`` is then the labelled pixels, and a palette with the void colour appended as
its last row colours a whole mask with one lookup, ``table[mask]``.

Files, one concept each:
  dataset.py      Dataset, TensorDataset, Subset, SegmentationDataset (decode once, cache)
  dataloader.py   DataLoader (seeded shuffling, background prefetch), default_collate
  transforms.py   Compose, RandomCrop, RandomScaleCrop, RandomHorizontalFlip, ColorJitter, Resize,
                  Normalize, ToTensor
  palette.py      MSRC-v2 and CamVid class names and colours, decode_mask / encode_colours
  synthetic/      SyntheticScenes: the embedded default dataset, painted procedurally
  msrc.py         MSRC-v2 in its own folder layout
  camvid.py       CamVid as SegNet's tutorial ships it
  stats.py        median_frequency_weights
  files.py        image and label file reading with errors that name the file
"""
from . import transforms
from .camvid import CamVid
from .dataloader import DataLoader, default_collate
from .dataset import Dataset, SegmentationDataset, Subset, TensorDataset
from .msrc import MSRC
from .palette import (
    CAMVID_CLASSES, CAMVID_PALETTE, MSRC_CLASSES, MSRC_PALETTE, VOID, decode_mask, encode_colours,
)
from .stats import median_frequency_weights
from .synthetic import SyntheticScenes, generate_scene

__all__ = [
    "CAMVID_CLASSES", "CAMVID_PALETTE", "CamVid", "DataLoader", "Dataset", "MSRC", "MSRC_CLASSES", "MSRC_PALETTE",
    "SegmentationDataset", "Subset", "SyntheticScenes", "TensorDataset", "VOID", "decode_mask", "default_collate",
    "encode_colours", "generate_scene", "median_frequency_weights", "transforms",
]
