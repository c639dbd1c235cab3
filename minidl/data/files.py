"""Reading image, label and list files, with errors that name the file.

Every reader returns plain NumPy arrays or lists:
  read_rgb(path)                    -> uint8 (H, W, 3)
  read_colour_labels(path, palette) -> int64 (H, W), colour-coded labels (MSRC), black = void = -1
  read_index_labels(path)           -> uint8 (H, W), single-channel labels (CamVid), values as stored
  read_mat_variable(path, name)     -> one numeric matrix of a MATLAB MAT-file (MSRC's cleaned labels)
  read_split_file(path, dataset)    -> the names a split list holds
  read_pair_list(path, dataset)     -> "IMAGE ANNOTATION" lines as pairs of relative paths (CamVid)
  shipped_split_file(dataset, split) -> the path of a split list that ships with minidl (minidl/data/splits/)
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from .palette import encode_colours

SPLITS = Path(__file__).parent / "splits"  # <dataset>_<split>.txt: the standard splits, shipped as package data


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


def shipped_split_file(dataset, split):
    """``minidl/data/splits/<dataset>_<split>.txt``; FileNotFoundError listing the shipped splits when absent."""
    path = SPLITS / f"{dataset}_{split}.txt"
    if not path.is_file():
        shipped = sorted(p.stem.split("_", 1)[1] for p in SPLITS.glob(f"{dataset}_*.txt"))
        raise FileNotFoundError(f"{dataset}: minidl ships no {split!r} split (it ships {', '.join(shipped)})")
    return path


def read_pair_list(path, dataset_name):
    """"IMAGE ANNOTATION" lines as (image, annotation) relative paths, each reduced to its last two parts.

    The SegNet authors' lists hold their machine's absolute paths (``/SegNet/CamVid/train/x.png``):
    only ``train/x.png`` is meaningful, relative to the dataset folder.
    """
    pairs = []
    for number, line in enumerate(read_split_file(path, dataset_name), start=1):
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"{dataset_name}: {path} line {number}: expected 'IMAGE ANNOTATION', got {line!r}")
        pairs.append(tuple("/".join(Path(field).parts[-2:]) for field in fields))
    return pairs


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


# MATLAB level-5 MAT-files (versions 5 to 7): a 128-byte header, then data elements, each a tag
# (type, byte count) and its bytes. A matrix element holds sub-elements: flags (with the class),
# dimensions, name, real part -- column-major. Version 7 zlib-compresses each top-level element.
_MAT_NUMBERS = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}
_MAT_MATRIX, _MAT_COMPRESSED = 14, 15
_MAT_NUMERIC_CLASSES = range(6, 16)  # mxDOUBLE_CLASS .. mxUINT64_CLASS (not cells, structs, chars, sparse)


def _mat_tag(data, offset, order, padded):
    """(type, data start, data end, next element's offset) of the data element at ``offset``."""
    kind, size = struct.unpack_from(order + "II", data, offset)
    if kind >> 16:  # small element: type and size share 4 bytes, up to 4 data bytes follow, 8 bytes in all
        return kind & 0xFFFF, offset + 4, offset + 4 + (kind >> 16), offset + 8
    end = offset + 8 + size
    return kind, offset + 8, end, end + (-size % 8 if padded else 0)


def _mat_matrix(body, order):
    """(name, array) of a matrix element's bytes; array None for anything but a numeric matrix."""
    fields, offset = [], 0
    while offset < len(body):
        kind, start, end, offset = _mat_tag(body, offset, order, padded=True)
        fields.append((kind, body[start:end]))
    (_, flags), (_, dims), (_, name), *parts = fields
    name = name.decode("latin-1")
    if struct.unpack_from(order + "I", flags)[0] & 0xFF not in _MAT_NUMERIC_CLASSES or not parts:
        return name, None
    kind, real = parts[0]  # a complex matrix's imaginary part, if any, is parts[1]
    shape = np.frombuffer(dims, order + "i4")
    return name, np.frombuffer(real, order + _MAT_NUMBERS[kind]).reshape(shape, order="F")


def _mat_matrices(data, order):
    """(name, array or None) for each matrix element after the 128-byte header, decompressing as needed."""
    offset = 128
    while offset + 8 <= len(data):
        kind, start, end, offset = _mat_tag(data, offset, order, padded=False)
        body = data[start:end]
        if kind == _MAT_COMPRESSED:
            body = zlib.decompress(body)
            kind, start, end, _ = _mat_tag(body, 0, order, padded=False)
            body = body[start:end]
        if kind == _MAT_MATRIX:
            yield _mat_matrix(body, order)


def read_mat_variable(path, variable) -> np.ndarray:
    """The numeric matrix ``variable`` of a MATLAB MAT-file (level 5: versions 5 to 7, compressed or not).

    Errors name the file: not a level-5 MAT-file (a version 7.3 file is HDF5: re-save it with
    ``save(..., '-v7')``), damaged, or without a numeric matrix of that name (the message lists the names it holds).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MAT-file {path} not found")
    data = path.read_bytes()
    order = {b"IM": "<", b"MI": ">"}.get(data[126:128])
    if not data.startswith(b"MATLAB 5.0 MAT-file") or order is None:
        raise ValueError(f"{path} is not a MATLAB 5.0 MAT-file (versions 5-7; a 7.3 file is HDF5: re-save it with -v7)")
    names = []
    try:
        for name, array in _mat_matrices(data, order):
            if name == variable and array is not None:
                return array
            names.append(name)
    except (struct.error, zlib.error, ValueError, KeyError) as error:  # truncated, or a type this reader does not know
        raise ValueError(f"cannot read MAT-file {path}: {error!r}") from error
    raise ValueError(f"{path} holds no numeric matrix {variable!r} (it holds {names})")
