"""Reading image and label files with Pillow, with errors that name the file.

Every reader returns plain NumPy arrays:
  read_rgb(path)                    -> uint8 (H, W, 3)
  read_colour_labels(path, palette) -> int64 (H, W), colour-coded labels (MSRC), black = void = -1
  read_index_labels(path)           -> uint8 (H, W), single-channel labels (CamVid), values as stored
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .palette import encode_colours


def _decode(path, what, to_array):
    """Open ``path`` with Pillow and return ``to_array(image)``; a missing or undecodable file raises naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found")
    try:
        with Image.open(path) as image:
            return to_array(image)
    except (OSError, SyntaxError) as error:  # Pillow's UnidentifiedImageError and truncated files are OSErrors
        raise ValueError(f"cannot read {what} {path}: {error}") from error


def read_split_file(path, dataset_name):
    """Non-empty, non-comment lines of a split/list file; FileNotFoundError naming it when absent."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{dataset_name}: split file {path} not found")
    lines = [line.strip() for line in path.read_text().splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines:
        raise ValueError(f"{dataset_name}: split file {path} lists no images")
    return lines


def read_rgb(path) -> np.ndarray:
    """An image file as uint8 (H, W, 3) RGB (grey, palette and RGBA images are converted)."""
    return _decode(path, "image", lambda image: np.asarray(image.convert("RGB")))


def read_colour_labels(path, palette) -> np.ndarray:
    """A colour-coded label image as an int64 mask; unknown colours raise ValueError naming the file."""
    rgb = _decode(path, "label image", lambda image: np.asarray(image.convert("RGB")))
    return encode_colours(rgb, palette, source=str(path))


def read_index_labels(path) -> np.ndarray:
    """A single-channel label image (mode L or P: one class index per pixel) as uint8 (H, W)."""

    def indices(image):
        if image.mode not in ("L", "P"):
            raise ValueError(
                f"label image {path} has mode {image.mode}; expected a single-channel image "
                "(mode L or P) holding one class index per pixel"
            )
        return np.asarray(image)

    return _decode(path, "label image", indices)


def check_same_size(image, mask, image_path, label_path):
    """Raise ValueError naming both files when image (H, W, 3) and mask (H, W) differ in size."""
    if image.shape[:2] != mask.shape:
        raise ValueError(
            f"image {image_path} is {image.shape[1]}x{image.shape[0]} (WxH) but its labels "
            f"{label_path} are {mask.shape[1]}x{mask.shape[0]}"
        )
