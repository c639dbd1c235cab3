"""The example's data pipeline: which dataset ``--data`` names, and its splits as ready-made arrays.

Every split is resized once to ``--size`` (bilinear for images, nearest for
masks; an int S means S x S, "WxH" e.g. 240x180 keeps CamVid's 4:3),
normalised with the training split's per-channel mean and std (or with the
statistics pretrained weights expect), and kept in memory as two arrays, so a
training step only slices them:

    images  float32 (N, 3, H, W), normalised
    masks   int64   (N, H, W), class index per pixel, minidl.data.VOID (-1) = void

A PreparedSplit is also a dataset (item i = (images[i], masks[i])) for minidl.data.DataLoader.
It also keeps each mask at its original resolution (``native_masks``) when resizing changed it,
for scoring the way the papers do (examples/train_segnet.py, ``evaluate``).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minidl.data import MSRC, CamVid, SyntheticScenes
from minidl.data.transforms import resize_image, resize_nearest


@dataclass
class PreparedSplit:
    images: np.ndarray
    masks: np.ndarray
    class_names: tuple
    palette: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    split: str
    native_masks: list | None = None  # int8 (H_i, W_i) per image as the files hold it; None if all are (H, W)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        """(image (3, H, W), mask (H, W)) of item ``index``: views into the arrays, not copies."""
        return self.images[index], self.masks[index]


def parse_size(text):
    """``--size`` text -> an int (square) or "WxH" (e.g. "240x180"); errors say what was wrong."""
    text = str(text).strip().lower()
    parts = text.split("x")
    if len(parts) not in (1, 2) or not all(part.isdigit() and int(part) > 0 for part in parts):
        raise argparse.ArgumentTypeError(f"size must be a positive int (square) or WxH such as 240x180, got {text!r}")
    return int(text) if len(parts) == 1 else f"{int(parts[0])}x{int(parts[1])}"


def size_hw(size):
    """(height, width) of a size as ``parse_size`` returns it (an int S -> (S, S); "WxH" -> (H, W))."""
    if isinstance(size, str):
        width, height = map(int, size.split("x"))
        return height, width
    return int(size), int(size)


def describe_data(data):
    """What ``--data`` names: {"kind": synthetic|msrc|camvid, "root": Path or None, "name": text}."""
    if data == "synthetic":
        return {"kind": "synthetic", "root": None, "name": "embedded synthetic scenes"}
    kind, _, path = str(data).partition(":") if str(data).startswith(("msrc:", "camvid:")) else ("", "", str(data))
    root = Path(path)
    if not root.is_dir():
        raise SystemExit(f"--data {data!r}: no such folder (use 'synthetic' or a dataset folder)")
    if not kind:
        if (root / "Images").is_dir() and (root / "GroundTruth").is_dir():
            kind = "msrc"
        elif (root / "trainannot").is_dir() or (root / "valannot").is_dir():
            kind = "camvid"
        else:
            raise SystemExit(f"--data {data!r}: neither MSRC-v2 (Images/, GroundTruth/) nor CamVid "
                             f"(train/, trainannot/, ...) layout")
    return {"kind": kind, "root": root, "name": f"{'MSRC-v2' if kind == 'msrc' else 'CamVid'} at {root}"}


def _raw_split(args, split):
    """The dataset object for one split (uint8 images and int8 masks, decoded once)."""
    info = describe_data(args.data)
    if info["kind"] == "synthetic":
        count = args.train_images if split == "train" else args.val_images
        return SyntheticScenes(count, size=size_hw(args.size), seed=args.seed, split=split)
    loader = MSRC if info["kind"] == "msrc" else CamVid
    return loader(info["root"], split=split)


def _stack_resized(dataset, size):
    """All (image, mask) pairs resized to size (H, W): uint8 (N, H, W, 3) and int64 (N, H, W)."""
    images = np.empty((len(dataset), *size, 3), np.uint8)
    masks = np.empty((len(dataset), *size), np.int64)
    for i, (image, mask) in enumerate(zip(dataset.images, dataset.masks)):
        images[i] = resize_image(image, size, layout="hwc") if image.shape[:2] != size else image
        masks[i] = resize_nearest(mask, size) if mask.shape != size else mask
    return images, masks


def _prepare(dataset, size, mean, std, split):
    images, masks = _stack_resized(dataset, size_hw(size))
    scaled = images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    if mean is None:  # statistics of the training split, per channel
        mean, std = scaled.mean(axis=(0, 2, 3)), scaled.std(axis=(0, 2, 3)) + 1e-6
    normalised = (scaled - mean[None, :, None, None]) / std[None, :, None, None]
    resized = any(mask.shape != masks.shape[1:] for mask in dataset.masks)
    return PreparedSplit(normalised.astype(np.float32), masks, tuple(dataset.classes), np.asarray(dataset.palette),
                         mean.astype(np.float32), std.astype(np.float32), split,
                         native_masks=list(dataset.masks) if resized else None)


def datasets_for(args, eval_split=None, normalisation=None):
    """(train, held-out) PreparedSplits; with ``eval_split`` the held-out one is that split.

    ``normalisation``: (mean, std) per channel to use instead of the training split's own,
    e.g. ImageNet's for torchvision's pretrained weights, or those a checkpoint was trained with.
    """
    mean, std = (None, None) if normalisation is None else map(np.asarray, normalisation)
    train = _prepare(_raw_split(args, "train"), args.size, mean, std, "train")
    held_out = eval_split or "val"
    other = _prepare(_raw_split(args, held_out), args.size, train.mean, train.std, held_out)
    return train, other
