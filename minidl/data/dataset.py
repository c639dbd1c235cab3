"""Datasets: anything with ``__len__`` and ``__getitem__``, as in PyTorch.

- ``Dataset``: the base class to subclass (optional: any object with those two methods works).
- ``TensorDataset(*arrays)``: item ``i`` is ``(a[i] for a in arrays)``.
- ``Subset(dataset, indices)``: a view of some items.
- ``SegmentationDataset``: what the synthetic scenes, MSRC-v2 and CamVid share -- a cache of
  decoded (image, mask) pairs and one ``__getitem__`` that converts and transforms them.

Loading cost. A segmentation dataset decodes every file once, when it is built, and keeps
the pixels in memory (uint8 images, int8 masks: 4x and 8x smaller than float32 / int64).
``dataset[i]`` then only converts one pair to float32 / int64 and runs the transform, which is
cheap next to a training step; the ``DataLoader`` also prepares the next batch in a background
thread (see dataloader.py). Building also finds every bad file up front, not in epoch 3.
"""
from __future__ import annotations

import operator
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .files import check_same_size, read_rgb
from .palette import decode_mask


class Dataset:
    """Base class: subclasses define ``__getitem__(index)`` and ``__len__()``."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__")


def _check_index(index, length, owner):
    """A valid non-negative position for ``owner[index]`` (negative indices count from the end)."""
    index = operator.index(index)
    if index < 0:
        index += length
    if not 0 <= index < length:
        raise IndexError(f"{owner}: index {index} out of range for a dataset of {length} items")
    return index


class TensorDataset(Dataset):
    """Item ``i`` is the tuple ``(arrays[0][i], arrays[1][i], ...)``.

    arrays: NumPy arrays or minidl Tensors that all have the same first dimension N.
    """

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("TensorDataset needs at least one array")
        sizes = [len(a) for a in arrays]
        if len(set(sizes)) != 1:
            raise ValueError(f"TensorDataset: all arrays need the same first dimension, got sizes {sizes}")
        self.arrays = arrays

    def __getitem__(self, index):
        index = _check_index(index, len(self), "TensorDataset")
        return tuple(a[index] for a in self.arrays)

    def __len__(self):
        return len(self.arrays[0])


class Subset(Dataset):
    """The items of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = [operator.index(i) for i in indices]

    def __getitem__(self, index):
        return self.dataset[self.indices[_check_index(index, len(self), "Subset")]]

    def __len__(self):
        return len(self.indices)


class SegmentationDataset(Dataset):
    """(image, mask) pairs decoded once and cached; the shared base of SyntheticScenes, MSRC and CamVid.

    Subclasses fill, in ``__init__``:
      ``self.images``: uint8 (H, W, 3) arrays, a list (or one stacked array when all share a size);
      ``self.masks``:  int8 (H, W) arrays, class index per pixel, -1 = void, likewise;
      ``self.names``:  list of str, one per item;
    and set the class attributes ``classes`` (names) and ``palette`` (uint8 (C, 3)).

    ``dataset[i]`` returns ``(image, mask)``:
      image float32 (3, H, W) in [0, 1]  -- channels first, as the networks take it;
      mask  int64 (H, W), -1 = void;
    after ``transform(image, mask)`` when a transform is given (see transforms.py).
    ``dataset[a:b]`` returns a list of such pairs.
    """

    classes: tuple = ()
    palette: np.ndarray = np.zeros((0, 3), np.uint8)

    def __init__(self, transform=None):
        self.transform = transform
        self.images, self.masks, self.names = [], [], []

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def class_names(self) -> tuple:
        """The same as ``classes``."""
        return self.classes

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = _check_index(index, len(self), type(self).__name__)
        # uint8 HWC -> float32 CHW in [0, 1]; astype copies, so the cache is never modified
        image = self.images[index].transpose(2, 0, 1).astype(np.float32)
        image *= np.float32(1 / 255)
        mask = self.masks[index].astype(np.int64)
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image, mask

    def _load_files(self, pairs, read_labels):
        """Decode (image path, label path) pairs into the cache, checking that sizes match.

        ``read_labels(path)`` gives the (H, W) mask. Files are decoded by a few threads at once
        (Pillow releases the GIL while it decompresses), in order; the first bad file raises.
        """

        def load(pair):
            image_path, label_path = pair
            image, mask = read_rgb(image_path), read_labels(label_path)
            check_same_size(image, mask, image_path, label_path)
            return image, mask.astype(np.int8)

        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            for (image_path, _), (image, mask) in zip(pairs, pool.map(load, pairs)):
                self.images.append(image)
                self.masks.append(mask)
                self.names.append(image_path.stem)

    def decode_mask(self, mask) -> np.ndarray:
        """Colour a mask (H, W) with this dataset's palette: uint8 (H, W, 3), void black."""
        return decode_mask(mask, self.palette)

    def class_pixel_counts(self) -> np.ndarray:
        """int64 (C,): labelled pixels per class over the whole (untransformed) dataset."""
        counts = np.zeros(self.num_classes, np.int64)
        for mask in self.masks:
            counts += np.bincount(mask[mask >= 0].ravel(), minlength=self.num_classes)[: self.num_classes]
        return counts

    def __repr__(self):
        return f"{type(self).__name__}({len(self)} items, {self.num_classes} classes)"
