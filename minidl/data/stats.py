"""Label statistics: class pixel counts and median-frequency class weights."""
from __future__ import annotations

import numpy as np


def _masks_of(dataset_or_masks):
    """Masks from a SegmentationDataset (its cached ``masks``), a dataset of (image, mask) items,
    an (N, H, W) array, or any iterable of (H, W) masks."""
    if hasattr(dataset_or_masks, "masks"):
        return dataset_or_masks.masks
    if isinstance(dataset_or_masks, np.ndarray):
        return dataset_or_masks
    return (item[1] if isinstance(item, (tuple, list)) else item for item in dataset_or_masks)


def median_frequency_weights(dataset_or_masks, num_classes) -> np.ndarray:
    """Class weights for the loss by median frequency balancing (Eigen & Fergus 2015, used by SegNet).

        freq_c   = (pixels of class c) / (total pixels of the images where c appears)
        weight_c = median over present classes of freq / freq_c

    A class that is rare where it appears gets a weight above 1, a common one below 1. Void
    pixels (< 0) count in the images' totals, never as a class. A class that never appears gets weight 0 and stays out of the
    median. Returns float32 (num_classes,), e.g. for ``CrossEntropyLoss(weight=minidl.tensor(w))``.
    """
    pixels = np.zeros(num_classes, np.int64)        # pixels of class c
    image_pixels = np.zeros(num_classes, np.int64)  # all pixels of the images containing c
    for mask in _masks_of(dataset_or_masks):
        mask = np.asarray(mask)
        labelled = mask[mask >= 0]
        if labelled.size and labelled.max() >= num_classes:
            raise ValueError(f"median_frequency_weights: label {int(labelled.max())} >= num_classes ({num_classes})")
        counts = np.bincount(labelled.ravel(), minlength=num_classes)
        pixels += counts
        image_pixels[counts > 0] += mask.size
    present = pixels > 0
    if not present.any():
        raise ValueError("median_frequency_weights: no labelled pixels")
    freq = pixels[present] / image_pixels[present]
    weights = np.zeros(num_classes, np.float64)
    weights[present] = np.median(freq) / freq
    return weights.astype(np.float32)
