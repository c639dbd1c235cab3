"""Joint transforms for segmentation: each takes ``(image, mask)`` and returns ``(image, mask)``.

A geometric change (crop, flip, resize) must move the image and its mask together, or the
labels stop describing the pixels under them; that is why these transforms take both.

Accepted inputs (NumPy arrays or minidl Tensors on the CPU):
  image: (3, H, W) or (H, W, 3), float (values in [0, 1]) or uint8 (0..255);
  mask:  (H, W) integers, -1 = void.
The mask's (H, W) tells the image's layout apart, and every transform returns the layout
and dtype it was given (Normalize returns float32, ToTensor CHW tensors).

Batches: RandomCrop, RandomScaleCrop, RandomHorizontalFlip and ColorJitter also take a whole
batch -- images (N, 3, H, W) or (N, H, W, 3) with masks (N, H, W) -- and give every item its own
window, zoom, coin or colour factors, drawn for the batch at once (as Kornia's batch
augmentations do). That is how examples/train_segnet.py augments the in-memory arrays its
DataLoader batches. One item is a batch of one: the same result from the same random draws.

Randomness: each random transform owns a NumPy ``Generator``, made from ``seed`` (an int,
None for fresh OS entropy, or a Generator to share one between transforms). The same seed
and the same sequence of calls give the same crops and flips.

Typical pipeline for training::

    Compose([Resize((120, 160)), RandomScaleCrop(96, scale=(0.75, 1.25)), RandomHorizontalFlip(),
             ColorJitter(0.2, 0.2, 0.2), Normalize(mean, std)])
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from ..creation import from_numpy
from .palette import VOID


def _as_array(value):
    """A NumPy array from an array or a (CPU) minidl Tensor."""
    return value.detach().numpy() if hasattr(value, "detach") else np.asarray(value)


def _unpack(name, image, mask):
    """Arrays and the image layout, "chw" or "hwc", read off the mask's (H, W)."""
    image, mask = _as_array(image), _as_array(mask)
    if mask.ndim != 2:
        raise ValueError(f"{name}: expected a mask of shape (H, W), got {mask.shape}")
    return image, mask, _layout(name, image.shape, mask.shape)


def _as_batch(name, image, mask):
    """(images, masks, layout, single): a batch (N, ...) of items in ``layout``, "chw" or "hwc".

    One item (mask (H, W)) becomes a batch of one, ``single`` = True; ``_unbatch`` undoes that.
    """
    image, mask = _as_array(image), _as_array(mask)
    if mask.ndim == 2:
        return image[None], mask[None], _layout(name, image.shape, mask.shape), True
    if mask.ndim != 3:
        raise ValueError(f"{name}: expected a mask of shape (H, W), or (N, H, W) for a batch, got {mask.shape}")
    if image.ndim != 4 or len(image) != len(mask):
        raise ValueError(f"{name}: images of shape {image.shape} do not match masks of shape {mask.shape}; "
                         "expected (N, 3, H, W) or (N, H, W, 3) with the masks' (N, H, W)")
    return image, mask, _layout(name, image.shape[1:], mask.shape[1:]), False


def _unbatch(images, masks, single):
    """What ``_as_batch`` was given back: the one item of a batch of one, else the batch."""
    return (images[0], masks[0]) if single else (images, masks)


def _layout(name, image_shape, mask_shape):
    """ "chw" or "hwc": where an image of ``image_shape`` keeps its mask's (H, W) = ``mask_shape``."""
    if len(image_shape) == 3 and image_shape[1:] == mask_shape and image_shape[0] in (1, 3):
        return "chw"
    if len(image_shape) == 3 and image_shape[:2] == mask_shape:
        return "hwc"
    raise ValueError(
        f"{name}: image of shape {image_shape} does not match mask of shape {mask_shape}; "
        "expected the image as (3, H, W) or (H, W, 3) with the mask's (H, W)"
    )


def _hw_axes(layout):
    """The (row, column) axes of an image in ``layout``."""
    return (1, 2) if layout == "chw" else (0, 1)


def _pair_size(size, name):
    """``int`` -> (size, size); ``(h, w)`` -> (h, w); both positive."""
    h, w = (size, size) if np.isscalar(size) else tuple(size)
    if int(h) <= 0 or int(w) <= 0:
        raise ValueError(f"{name}: size must be positive, got {size!r}")
    return int(h), int(w)


class Compose:
    """Apply transforms one after another: ``Compose([t1, t2])(image, mask) == t2(*t1(image, mask))``."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, image, mask):
        for transform in self.transforms:
            image, mask = transform(image, mask)
        return image, mask

    def __repr__(self):
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"


class RandomHorizontalFlip:
    """Mirror image and mask left-right with probability ``p`` (each item of a batch by its own coin)."""

    def __init__(self, p=0.5, seed=None):
        self.p = p
        self.rng = np.random.default_rng(seed)

    def __call__(self, image, mask):
        images, masks, layout, single = _as_batch("RandomHorizontalFlip", image, mask)
        chosen = self.rng.random(len(masks)) < self.p  # one coin per item
        if chosen.any():
            # copies, so that flipping can't reach the dataset's cache
            images, masks = images.copy(), masks.copy()
            images[chosen] = np.flip(images[chosen], axis=1 + _hw_axes(layout)[1])
            masks[chosen] = masks[chosen, :, ::-1]
        return _unbatch(images, masks, single)

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"


class RandomCrop:
    """A random (h, w) window of image and mask, at the same place in both (each item of a batch its own).

    size: int or (h, w).
    pad_if_needed: when the input is smaller than the window, pad it first (evenly on both
        sides): the image with ``fill``, the mask with void (-1), so padding never counts
        in the loss or the metrics. Without it, a too-small input raises ValueError.
    """

    def __init__(self, size, pad_if_needed=False, fill=0.0, seed=None):
        self.size = _pair_size(size, "RandomCrop")
        self.pad_if_needed = pad_if_needed
        self.fill = fill
        self.rng = np.random.default_rng(seed)

    def __call__(self, image, mask):
        images, masks, layout, single = _as_batch("RandomCrop", image, mask)
        (height, width), (crop_h, crop_w) = masks.shape[1:], self.size
        if height < crop_h or width < crop_w:
            if not self.pad_if_needed:
                raise ValueError(
                    f"RandomCrop: crop size {self.size} is larger than the input ({height}, {width}); "
                    "use pad_if_needed=True or Resize first"
                )
            images, masks = _pad_to(images, masks, layout, crop_h, crop_w, self.fill)
            height, width = masks.shape[1:]
        tops = self.rng.integers(0, height - crop_h + 1, len(masks))  # one window per item
        lefts = self.rng.integers(0, width - crop_w + 1, len(masks))
        windows = [(slice(top, top + crop_h), slice(left, left + crop_w)) for top, left in zip(tops, lefts)]
        images = np.stack([im[:, rows, cols] if layout == "chw" else im[rows, cols]
                           for im, (rows, cols) in zip(images, windows)])
        masks = np.stack([m[rows, cols] for m, (rows, cols) in zip(masks, windows)])
        return _unbatch(images, masks, single)

    def __repr__(self):
        return f"RandomCrop(size={self.size}, pad_if_needed={self.pad_if_needed})"


def _pad_to(images, masks, layout, min_h, min_w, fill):
    """Pad a batch's images (with ``fill``) and masks (with void) to at least (min_h, min_w), evenly on both sides."""
    extra_h, extra_w = max(min_h - masks.shape[1], 0), max(min_w - masks.shape[2], 0)
    rows = (extra_h // 2, extra_h - extra_h // 2)
    cols = (extra_w // 2, extra_w - extra_w // 2)
    image_pad = [(0, 0), (0, 0), rows, cols] if layout == "chw" else [(0, 0), rows, cols, (0, 0)]
    images = np.pad(images, image_pad, constant_values=np.asarray(fill).astype(images.dtype))
    masks = np.pad(masks, [(0, 0), rows, cols], constant_values=VOID)
    return images, masks


class RandomScaleCrop:
    """Zoom each item by a random factor, then take a random (h, w) window: scale augmentation.

    Each item of a batch draws its own factor, uniform in ``scale`` = (low, high), and is resized
    by it (image bilinear, mask nearest, as ``Resize``); a ``RandomCrop(size, pad_if_needed=True)``
    then cuts the window, so a zoomed-out item smaller than the window is padded (image with
    ``fill``, mask with void) and every item of the batch comes out (h, w). Objects appear at
    sizes the fixed-size images never show them at, which is what a net with few training
    images needs to recognise a cow near and far.

    size: int or (h, w).
    scale: (low, high), 0 < low <= high; (1, 1) is RandomCrop itself.
    """

    def __init__(self, size, scale=(0.75, 1.25), fill=0.0, seed=None):
        low, high = (float(x) for x in scale)
        if not 0 < low <= high:
            raise ValueError(f"RandomScaleCrop: scale must be (low, high) with 0 < low <= high, got {scale!r}")
        self.scale = (low, high)
        self.rng = np.random.default_rng(seed)
        self.crop = RandomCrop(size, pad_if_needed=True, fill=fill, seed=self.rng)

    def __call__(self, image, mask):
        images, masks, layout, single = _as_batch("RandomScaleCrop", image, mask)
        factors = self.rng.uniform(*self.scale, len(masks))  # one zoom per item, then one window per item
        height, width = masks.shape[1:]
        zoomed = []
        for item_image, item_mask, factor in zip(images, masks, factors):
            out_hw = max(1, round(height * factor)), max(1, round(width * factor))
            zoomed.append(self.crop(resize_image(item_image, out_hw, layout), resize_nearest(item_mask, out_hw)))
        return _unbatch(np.stack([i for i, _ in zoomed]), np.stack([m for _, m in zoomed]), single)

    def __repr__(self):
        return f"RandomScaleCrop(size={self.crop.size}, scale={self.scale})"


class ColorJitter:
    """Random brightness, contrast and saturation, each item of a batch its own; the mask is untouched.

    Each strength x draws a factor uniform in [1 - x, 1 + x] (0 leaves that property alone), applied
    in this order to values in [0, 1], clipped back into [0, 1] after each step (torchvision's formulas):

        brightness  b * image
        contrast    c * image + (1 - c) * mean(gray(image))        gray = 0.299 R + 0.587 G + 0.114 B
        saturation  s * image + (1 - s) * gray(image)              (per pixel)

    Images: float in [0, 1] or uint8 (kept uint8), 3 channels. ``mean`` and ``std`` (per channel):
    the images are normalised ``(x - mean) / std`` (as examples/train_segnet.py keeps them); they are
    brought back to [0, 1] for the jitter and normalised again after it.
    """

    GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)

    def __init__(self, brightness=0.0, contrast=0.0, saturation=0.0, mean=None, std=None, seed=None):
        self.strengths = {"brightness": brightness, "contrast": contrast, "saturation": saturation}
        for name, strength in self.strengths.items():
            if not 0 <= strength <= 1:
                raise ValueError(f"ColorJitter: {name} must be in [0, 1], got {strength!r}")
        if (mean is None) != (std is None):
            raise ValueError("ColorJitter: give both mean and std (the images' normalisation), or neither")
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float32).reshape(-1)
        self.std = None if std is None else np.asarray(std, dtype=np.float32).reshape(-1)
        self.rng = np.random.default_rng(seed)

    def __call__(self, image, mask):
        images, masks, layout, single = _as_batch("ColorJitter", image, mask)
        channels = images.shape[1] if layout == "chw" else images.shape[-1]
        if channels != 3:
            raise ValueError(f"ColorJitter: expected RGB images (3 channels), got shape {images.shape}")
        hwc = np.moveaxis(images, 1, -1) if layout == "chw" else images  # a view: channels last
        unit = _to_unit_float(hwc) if self.mean is None else hwc * self.std + self.mean
        factors = {name: self.rng.uniform(1 - x, 1 + x, len(masks)).astype(np.float32)[:, None, None, None]
                   for name, x in self.strengths.items()}  # (N, 1, 1, 1): one factor per item
        unit = np.clip(unit * factors["brightness"], 0, 1)
        gray_mean = (unit @ self.GRAY_WEIGHTS).mean(axis=(1, 2))[:, None, None, None]
        unit = np.clip(_blend(unit, gray_mean, factors["contrast"]), 0, 1)
        unit = np.clip(_blend(unit, (unit @ self.GRAY_WEIGHTS)[..., None], factors["saturation"]), 0, 1)
        if self.mean is not None:
            out = ((unit - self.mean) / self.std).astype(images.dtype, copy=False)
        elif images.dtype == np.uint8:
            out = np.rint(unit * 255).astype(np.uint8)
        else:
            out = unit.astype(images.dtype, copy=False)
        out = np.ascontiguousarray(np.moveaxis(out, -1, 1)) if layout == "chw" else out
        return _unbatch(out, masks, single)

    def __repr__(self):
        strengths = ", ".join(f"{name}={x}" for name, x in self.strengths.items())
        return f"ColorJitter({strengths}{'' if self.mean is None else ', normalised'})"


def _blend(image, other, factor):
    """factor * image + (1 - factor) * other: factor 1 keeps the image, 0 gives the other."""
    return factor * image + (1 - factor) * other


class Resize:
    """Resize image (bilinear, Pillow's, which also antialiases when shrinking) and mask (nearest).

    size: (h, w), or an int: the shorter side becomes ``size`` and the aspect ratio is kept
    (torchvision's rule). A mask is never interpolated: blending class 3 and class 7 does not
    give a class in between, so each output pixel takes the label of the nearest input pixel.
    """

    def __init__(self, size):
        self.size = size if np.isscalar(size) else _pair_size(size, "Resize")

    def output_size(self, height, width):
        if not np.isscalar(self.size):
            return self.size
        if height <= width:
            return self.size, max(1, round(width * self.size / height))
        return max(1, round(height * self.size / width)), self.size

    def __call__(self, image, mask):
        image, mask, layout = _unpack("Resize", image, mask)
        out_h, out_w = self.output_size(*mask.shape)
        if (out_h, out_w) == mask.shape:
            return image, mask
        return resize_image(image, (out_h, out_w), layout), resize_nearest(mask, (out_h, out_w))

    def __repr__(self):
        return f"Resize(size={self.size})"


def resize_image(image, size, layout="chw"):
    """Bilinear resize of a (3, H, W) or (H, W, 3) image to ``size`` = (h, w); dtype is kept."""
    channel_axis = 0 if layout == "chw" else 2
    out_h, out_w = size
    channels = []
    for channel in np.moveaxis(image, channel_axis, 0):
        # Pillow's "F" mode holds one float32 channel, so floats keep their precision
        resized = Image.fromarray(np.ascontiguousarray(channel, dtype=np.float32)).resize(
            (out_w, out_h), Image.BILINEAR
        )
        channels.append(np.asarray(resized))
    out = np.stack(channels, axis=channel_axis)
    if image.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(image.dtype, copy=False)


def resize_nearest(mask, size):
    """Nearest-neighbour resize of an (H, W) array to ``size`` = (h, w), by index gathering.

    Output pixel i covers input span [i * s, (i + 1) * s) with s = in / out; it takes the
    input pixel under the span's centre, floor((i + 0.5) * s).
    """
    (in_h, in_w), (out_h, out_w) = mask.shape, size
    rows = np.minimum(((np.arange(out_h) + 0.5) * (in_h / out_h)).astype(np.int64), in_h - 1)
    cols = np.minimum(((np.arange(out_w) + 0.5) * (in_w / out_w)).astype(np.int64), in_w - 1)
    return mask[rows[:, None], cols[None, :]]


class Normalize:
    """Per-channel ``(image - mean) / std``; the mask is untouched. Returns a float32 image.

    A uint8 image is first scaled to [0, 1], so mean and std are always given for [0, 1] values
    (as torchvision's ImageNet ``mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)``).
    """

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        self.std = np.asarray(std, dtype=np.float32).reshape(-1)
        if (self.std <= 0).any():
            raise ValueError(f"Normalize: std must be positive, got {std!r}")

    def __call__(self, image, mask):
        image, mask, layout = _unpack("Normalize", image, mask)
        image = _to_unit_float(image)
        # broadcast (C,) over the channel axis: (C, 1, 1) for CHW, (C,) for HWC
        shape = (-1, 1, 1) if layout == "chw" else (-1,)
        return (image - self.mean.reshape(shape)) / self.std.reshape(shape), mask

    def __repr__(self):
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


def _to_unit_float(image):
    """float32 image; uint8 is scaled from 0..255 to [0, 1]."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) * np.float32(1 / 255)
    return image.astype(np.float32, copy=False)


class ToTensor:
    """(image, mask) -> (float32 Tensor (3, H, W), int64 Tensor (H, W)), as torchvision's ToTensor.

    HWC images become CHW, uint8 is scaled to [0, 1]. Put it last: the other transforms work on
    NumPy arrays. (Datasets already give CHW float32 arrays, which the DataLoader's collate
    turns into tensors; ToTensor is for using single items as tensors, e.g. ``model(x.unsqueeze(0))``.)
    """

    def __call__(self, image, mask):
        image, mask, layout = _unpack("ToTensor", image, mask)
        image = _to_unit_float(image)
        if layout == "hwc":
            image = image.transpose(2, 0, 1)
        return from_numpy(np.ascontiguousarray(image)), from_numpy(mask.astype(np.int64, copy=False))

    def __repr__(self):
        return "ToTensor()"
