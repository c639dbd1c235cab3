"""Class names and colours of the label sets minidl knows, and mask <-> colour conversion.

A segmentation *mask* is an integer array (H, W): one class index per pixel, ``-1`` for
void (unlabelled) pixels, which the loss (``ignore_index=-1``) and the metrics skip.
A *colour-coded* label image is the same information drawn with a palette, one RGB
colour per class and black for void -- the way MSRC-v2 ships its ground truth, and the
way you look at a prediction. An *index* label image stores a number per pixel instead
(CamVid's annotations, MSRC's cleaned labels): ``encode_indices`` maps those numbers to a mask.

MSRC-v2's colours are not arbitrary: each class has the colour that the PASCAL VOC colour
map (see ``voc_colour``: the bits of a number spread over the high bits of R, G and B) gives
to its number in the database -- 1..18 for building..chair, 21..25 for road..boat (19 and 20
are not used). Writing the table out keeps it readable; a test checks it against the rule.
"""
from __future__ import annotations

import numpy as np

VOID = -1
VOID_COLOUR = (0, 0, 0)

# index: name, (R, G, B) -- the seed's table, in MSRC order
MSRC_CLASSES = (
    "building", "grass", "tree", "cow", "horse", "sheep", "sky", "mountain", "aeroplane", "water", "face",
    "car", "bicycle", "flower", "sign", "bird", "book", "chair", "road", "cat", "dog", "body", "boat",
)
MSRC_PALETTE = np.array(
    [
        (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128), (0, 128, 128),
        (128, 128, 128), (64, 0, 0), (192, 0, 0), (64, 128, 0), (192, 128, 0), (64, 0, 128),
        (192, 0, 128), (64, 128, 128), (192, 128, 128), (0, 64, 0), (128, 64, 0), (0, 192, 0),
        (128, 64, 128), (0, 192, 128), (128, 192, 128), (64, 64, 0), (192, 64, 0),
    ],
    dtype=np.uint8,
)  # (23, 3)

# CamVid, 11 classes as the SegNet tutorial ships it (label 11 = unlabelled = void)
CAMVID_UNLABELLED = 11
CAMVID_CLASSES = (
    "sky", "building", "pole", "road", "pavement", "tree", "sign_symbol", "fence", "car", "pedestrian", "bicyclist",
)
CAMVID_PALETTE = np.array(
    [
        (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
        (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
    ],
    dtype=np.uint8,
)  # (11, 3)


def voc_colour(index: int) -> tuple:
    """The PASCAL VOC colour-map entry for ``index``: bit 3j+c of the index -> bit 7-j of channel c."""
    rgb = [0, 0, 0]
    for j in range(8):
        for c in range(3):
            rgb[c] |= ((index >> (3 * j + c)) & 1) << (7 - j)
    return tuple(rgb)


def decode_mask(mask, palette=MSRC_PALETTE) -> np.ndarray:
    """Colour a mask for viewing.

    mask: integer (H, W) (or any shape) of class indices, void = -1.
    Returns uint8 (H, W, 3): ``palette[class]``, black for void and for any index outside the palette.
    Accepts NumPy arrays and minidl Tensors (e.g. ``logits.argmax(1)[0]``).
    """
    mask = np.asarray(mask)
    palette = np.asarray(palette, dtype=np.uint8)
    # one extra row at the end holds the void colour, so a single fancy-index colours everything
    table = np.concatenate([palette, np.array([VOID_COLOUR], dtype=np.uint8)])
    index = np.where((mask >= 0) & (mask < len(palette)), mask, len(palette))
    return table[index]


def _pack(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 colours -> (...) int64 ``0xRRGGBB`` keys, so colours compare as single numbers."""
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def encode_colours(rgb, palette=MSRC_PALETTE, source="label image") -> np.ndarray:
    """The inverse of ``decode_mask``: a colour-coded label image -> int64 mask.

    rgb: uint8 (H, W, 3). Black becomes void (-1), palette colours their class index.
    Any other colour raises ValueError naming ``source`` (a file name), the colour and its pixel count.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"{source}: expected an RGB label image (H, W, 3), got shape {rgb.shape}")
    keys = _pack(np.asarray(palette, dtype=np.uint8))  # (C,)
    order = np.argsort(keys)
    sorted_keys = keys[order]
    pixels = _pack(rgb)  # (H, W)
    # searchsorted finds where each pixel's key would sit among the palette keys; a hit is a class
    slot = np.clip(np.searchsorted(sorted_keys, pixels), 0, len(keys) - 1)
    known = sorted_keys[slot] == pixels
    void = pixels == _pack(np.array(VOID_COLOUR, dtype=np.uint8))
    bad = ~(known | void)
    if bad.any():
        colours, counts = np.unique(pixels[bad], return_counts=True)
        listed = ", ".join(
            f"({c >> 16}, {(c >> 8) & 255}, {c & 255}): {n} px" for c, n in zip(colours[:5].tolist(), counts[:5].tolist())
        )
        more = f" and {len(colours) - 5} more" if len(colours) > 5 else ""
        raise ValueError(
            f"{source}: {int(bad.sum())} pixels have colours that are not in the palette: {listed}{more} "
            "(void must be pure black (0, 0, 0))"
        )
    return np.where(known, order[slot], VOID).astype(np.int64)


def encode_indices(values, num_classes, void, first=0, source="label image") -> np.ndarray:
    """Stored class numbers -> int64 mask: ``first + c`` -> class c (0 <= c < num_classes), ``void`` -> -1.

    CamVid stores 0..10 and 11 for unlabelled (first=0, void=11); MSRC's cleaned labels 1..23 and
    0 for void (first=1, void=0). Any other value (or a fraction) raises ValueError naming ``source``,
    the values found and their pixel count.
    """
    values = np.asarray(values)
    classes = values.astype(np.int64) - first  # a fraction truncates, and then differs from its value
    bad = (values != void) & ((classes < 0) | (classes >= num_classes) | (classes + first != values))
    if bad.any():
        found = np.unique(values[bad]).tolist()
        raise ValueError(
            f"{source} has values {found[:10]} ({int(bad.sum())} pixels); expected "
            f"{first}..{first + num_classes - 1} for the classes and {void} for void"
        )
    return np.where(values == void, VOID, classes)
