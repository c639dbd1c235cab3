"""Joint transforms keep image and mask aligned, and are reproducible from their seeds."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import minidl
from minidl.data import transforms as T


def coordinate_pair(height, width, layout="hwc", dtype=np.float32):
    """An image whose pixels encode their own coordinates, and a mask naming each source pixel.

    image channel 0 = row + 1, channel 1 = column + 1, channel 2 = 1 (so 0 only appears as padding);
    mask = row * width + column: every source pixel has its own label.
    """
    rows, cols = np.mgrid[0:height, 0:width]
    image = np.stack([rows + 1, cols + 1, np.ones_like(rows)], axis=-1).astype(dtype)
    if layout == "chw":
        image = image.transpose(2, 0, 1).copy()
    return image, (rows * width + cols).astype(np.int64)


def as_hwc(image, mask):
    image = np.asarray(image)
    return image.transpose(1, 2, 0) if image.shape[1:] == np.asarray(mask).shape else image


geometric_step = st.one_of(
    st.builds(lambda s, p: ("crop", s, p), st.tuples(st.integers(1, 48), st.integers(1, 48)), st.integers(0, 2**16)),
    st.builds(lambda p, s: ("flip", p, s), st.sampled_from([0.0, 0.5, 1.0]), st.integers(0, 2**16)),
)


@given(
    height=st.integers(2, 40),
    width=st.integers(2, 40),
    layout=st.sampled_from(["hwc", "chw"]),
    dtype=st.sampled_from([np.float32, np.uint8]),
    resize=st.none() | st.tuples(st.integers(2, 48), st.integers(2, 48)),
    steps=st.lists(geometric_step, max_size=4),
    to_tensor=st.booleans(),
)
def test_any_chain_keeps_mask_aligned_with_image(height, width, layout, dtype, resize, steps, to_tensor):
    image, mask = coordinate_pair(height, width, layout, dtype)
    original = image.copy(), mask.copy()
    chain = [T.Resize(resize)] if resize else []
    for kind, a, b in steps:
        chain.append(T.RandomCrop(a, pad_if_needed=True, seed=b) if kind == "crop" else T.RandomHorizontalFlip(a, seed=b))
    if to_tensor:
        chain.append(T.ToTensor())
    out_image, out_mask = T.Compose(chain)(image, mask)
    out_image, out_mask = as_hwc(out_image, out_mask), np.asarray(out_mask)
    if to_tensor and dtype == np.uint8:
        out_image = np.rint(out_image * 255)

    # inputs untouched (a dataset's cache must survive its transforms)
    np.testing.assert_array_equal(image, original[0])
    np.testing.assert_array_equal(mask, original[1])
    assert out_image.shape[:2] == out_mask.shape

    padding = out_mask == -1
    # padding is void in the mask and the fill value (0) in every channel of the image
    np.testing.assert_array_equal(padding, np.all(out_image == 0, axis=-1))
    source_row, source_col = np.divmod(out_mask[~padding], width)
    seen_row, seen_col = out_image[~padding][:, 0] - 1, out_image[~padding][:, 1] - 1
    if resize is None:  # crops and flips move pixels exactly
        np.testing.assert_array_equal(seen_row, source_row)
        np.testing.assert_array_equal(seen_col, source_col)
    else:  # bilinear image vs nearest mask: within the interpolation kernel's reach
        tol_row = 1.0 + max(1.0, height / resize[0]) / 2 + (dtype == np.uint8) * 0.5
        tol_col = 1.0 + max(1.0, width / resize[1]) / 2 + (dtype == np.uint8) * 0.5
        assert np.abs(seen_row - source_row).max(initial=0) <= tol_row
        assert np.abs(seen_col - source_col).max(initial=0) <= tol_col


def test_random_crop_pads_mask_with_void_and_image_with_fill():
    image, mask = coordinate_pair(3, 4, "chw")
    out_image, out_mask = T.RandomCrop((5, 6), pad_if_needed=True, fill=0.0, seed=0)(image, mask)
    assert out_image.shape == (3, 5, 6) and out_mask.shape == (5, 6)
    assert (out_mask == -1).sum() == 5 * 6 - 3 * 4
    assert sorted(out_mask[out_mask >= 0].tolist()) == list(range(12))


def test_random_crop_without_padding_rejects_small_inputs():
    image, mask = coordinate_pair(3, 4)
    with pytest.raises(ValueError, match=r"RandomCrop: crop size \(5, 5\) is larger than the input \(3, 4\)"):
        T.RandomCrop(5)(image, mask)


def test_random_transforms_repeat_with_the_same_seed_and_differ_with_another():
    image, mask = coordinate_pair(20, 20)

    def run(seed):
        chain = T.Compose([T.RandomCrop(8, seed=seed), T.RandomHorizontalFlip(seed=seed + 1)])
        return [chain(image, mask)[1] for _ in range(5)]

    assert all(np.array_equal(a, b) for a, b in zip(run(3), run(3)))
    assert not all(np.array_equal(a, b) for a, b in zip(run(3), run(4)))


def test_a_shared_generator_can_drive_several_transforms():
    rng = np.random.default_rng(0)
    flip, crop = T.RandomHorizontalFlip(seed=rng), T.RandomCrop(4, seed=rng)
    assert flip.rng is rng and crop.rng is rng


def test_flip_probability_one_and_zero():
    image, mask = coordinate_pair(2, 3, "chw")
    flipped_image, flipped_mask = T.RandomHorizontalFlip(p=1.0)(image, mask)
    np.testing.assert_array_equal(flipped_mask, mask[:, ::-1])
    np.testing.assert_array_equal(flipped_image, image[:, :, ::-1])
    same_image, same_mask = T.RandomHorizontalFlip(p=0.0)(image, mask)
    np.testing.assert_array_equal(same_mask, mask)


def test_resize_sizes_and_label_values():
    image, mask = coordinate_pair(30, 60, "chw")
    mask = mask % 5 - 1  # labels -1..3
    out_image, out_mask = T.Resize((15, 20))(image, mask)
    assert out_image.shape == (3, 15, 20) and out_image.dtype == np.float32
    assert out_mask.shape == (15, 20) and out_mask.dtype == np.int64
    assert set(np.unique(out_mask)) <= set(range(-1, 4))  # nearest never invents labels
    # an int is the shorter side, aspect ratio kept (torchvision's rule)
    assert T.Resize(10)(image, mask)[1].shape == (10, 20)
    assert T.Resize(10)(image.transpose(0, 2, 1), mask.T)[1].shape == (20, 10)


def test_resize_keeps_uint8_hwc_images_uint8():
    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3)).astype(np.uint8)
    out, _ = T.Resize((4, 4))(image, np.zeros((8, 8), np.int64))
    assert out.shape == (4, 4, 3) and out.dtype == np.uint8


def test_normalize_per_channel_in_both_layouts():
    image, mask = np.ones((3, 2, 2), np.float32) * np.array([0.5, 0.25, 1.0], np.float32)[:, None, None], np.zeros((2, 2))
    out, out_mask = T.Normalize(mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 0.5))(image, mask)
    np.testing.assert_allclose(out[:, 0, 0], [0.0, -1.0, 1.0])
    out_hwc, _ = T.Normalize(mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 0.5))(image.transpose(1, 2, 0), mask)
    np.testing.assert_allclose(out_hwc[0, 0], [0.0, -1.0, 1.0])
    out_uint8, _ = T.Normalize((0, 0, 0), (1, 1, 1))(np.full((2, 2, 3), 255, np.uint8), mask)
    np.testing.assert_allclose(out_uint8, 1.0)
    with pytest.raises(ValueError, match="std must be positive"):
        T.Normalize((0,), (0,))


def test_to_tensor_gives_chw_float32_and_int64_tensors():
    image = np.full((4, 5, 3), 255, np.uint8)
    x, y = T.ToTensor()(image, np.zeros((4, 5), np.int32))
    assert isinstance(x, minidl.Tensor) and isinstance(y, minidl.Tensor)
    assert x.shape == (3, 4, 5) and x.dtype == minidl.float32 and float(x.max().item()) == 1.0
    assert y.shape == (4, 5) and y.dtype == minidl.int64


def test_mismatched_image_and_mask_are_rejected_with_the_shapes():
    with pytest.raises(ValueError, match=r"RandomHorizontalFlip: image of shape \(3, 4, 5\) does not match mask of shape \(4, 4\)"):
        T.RandomHorizontalFlip()(np.zeros((3, 4, 5)), np.zeros((4, 4)))


# --------------------------------------------------------------------------- batches
def coordinate_batch(count, height, width, layout="chw"):
    """``count`` coordinate pairs, item i's labels offset by i * height * width (every pixel of the batch its own)."""
    image, mask = coordinate_pair(height, width, layout)
    return np.stack([image + i for i in range(count)]), np.stack([mask + i * height * width for i in range(count)])


@pytest.mark.parametrize("layout", ["chw", "hwc"])
def test_a_batch_gets_one_window_per_item_from_the_draws_of_the_whole_batch(layout):
    images, masks = coordinate_batch(6, 9, 11, layout)
    out_images, out_masks = T.RandomCrop((4, 5), seed=7)(images, masks)
    assert out_masks.shape == (6, 4, 5) and out_images.shape == ((6, 3, 4, 5) if layout == "chw" else (6, 4, 5, 3))
    rng = np.random.default_rng(7)
    tops, lefts = rng.integers(0, 9 - 4 + 1, 6), rng.integers(0, 11 - 5 + 1, 6)  # all tops, then all lefts
    for i, (top, left) in enumerate(zip(tops, lefts)):
        np.testing.assert_array_equal(out_masks[i], masks[i, top:top + 4, left:left + 5])
        expected = images[i, :, top:top + 4, left:left + 5] if layout == "chw" else images[i, top:top + 4, left:left + 5]
        np.testing.assert_array_equal(out_images[i], expected)
    assert len({(t, l) for t, l in zip(tops, lefts)}) > 1  # each item its own window


def test_a_batch_gets_one_coin_per_item_and_its_inputs_stay_untouched():
    images, masks = coordinate_batch(8, 3, 4)
    original = images.copy(), masks.copy()
    out_images, out_masks = T.RandomHorizontalFlip(seed=2)(images, masks)
    flipped = np.random.default_rng(2).random(8) < 0.5
    assert 0 < flipped.sum() < 8
    for i in range(8):
        np.testing.assert_array_equal(out_masks[i], masks[i, :, ::-1] if flipped[i] else masks[i])
        np.testing.assert_array_equal(out_images[i], images[i, :, :, ::-1] if flipped[i] else images[i])
    np.testing.assert_array_equal(images, original[0])
    np.testing.assert_array_equal(masks, original[1])


@pytest.mark.parametrize("seed", range(5))
def test_one_item_is_a_batch_of_one_with_the_same_random_draws(seed):
    image, mask = coordinate_pair(7, 9, "chw")
    chain = lambda: T.Compose([T.RandomCrop((5, 4), seed=seed), T.RandomHorizontalFlip(seed=seed + 10)])  # noqa: E731
    one_image, one_mask = chain()(image, mask)
    batch_images, batch_masks = chain()(image[None], mask[None])
    np.testing.assert_array_equal(one_image, batch_images[0])
    np.testing.assert_array_equal(one_mask, batch_masks[0])


def test_a_small_batch_is_padded_with_void_when_asked():
    images, masks = coordinate_batch(3, 2, 3)
    out_images, out_masks = T.RandomCrop(4, pad_if_needed=True, seed=0)(images, masks)
    assert out_images.shape == (3, 3, 4, 4) and ((out_masks == -1).sum(axis=(1, 2)) == 16 - 6).all()


def test_batches_of_mismatched_shapes_are_rejected_with_the_shapes():
    with pytest.raises(ValueError, match=r"RandomCrop: images of shape \(3, 3, 4, 4\) do not match masks of shape \(2, 4, 4\)"):
        T.RandomCrop(2)(np.zeros((3, 3, 4, 4)), np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match=r"expected a mask of shape \(H, W\), or \(N, H, W\) for a batch, got \(1, 2, 4, 4\)"):
        T.RandomHorizontalFlip()(np.zeros((1, 2, 3, 4, 4)), np.zeros((1, 2, 4, 4)))
    with pytest.raises(ValueError, match=r"Resize: expected a mask of shape \(H, W\)"):  # items only
        T.Resize(2)(np.zeros((2, 3, 4, 4)), np.zeros((2, 4, 4)))


# --------------------------------------------------------------------------- scale and colour augmentation
def test_random_scale_crop_zooms_each_item_by_its_own_drawn_factor():
    images, masks = coordinate_batch(4, 40, 60)
    out_images, out_masks = T.RandomScaleCrop((10, 12), scale=(0.5, 2.0), seed=3)(images, masks)
    assert out_images.shape == (4, 3, 10, 12) and out_masks.shape == (4, 10, 12)
    factors = np.random.default_rng(3).uniform(0.5, 2.0, 4)  # the zooms are drawn first, for the batch
    assert len(set(np.round(factors, 2))) == 4
    for i, factor in enumerate(factors):
        assert (out_masks[i] >= 0).all()  # 40x60 zoomed by 0.5 or more still covers the window
        rows, cols = np.divmod(out_masks[i] - i * 40 * 60, 60)
        # the window's 12 columns span about 11 / factor source columns (nearest: within a pixel)
        assert abs((cols[0, -1] - cols[0, 0]) - 11 / factor) <= 1
        assert abs((rows[-1, 0] - rows[0, 0]) - 9 / factor) <= 1


def test_random_scale_crop_is_a_zoom_then_a_padded_random_crop():
    images, masks = coordinate_batch(3, 9, 11)
    out_images, out_masks = T.RandomScaleCrop((4, 5), scale=(0.7, 1.6), seed=7)(images, masks)
    rng = np.random.default_rng(7)
    factors = rng.uniform(0.7, 1.6, 3)
    crop = T.RandomCrop((4, 5), pad_if_needed=True, seed=rng)  # then one window per item, item by item
    for i, factor in enumerate(factors):
        size = round(9 * factor), round(11 * factor)
        expected = crop(T.resize_image(images[i], size), T.resize_nearest(masks[i], size))
        np.testing.assert_array_equal(out_images[i], expected[0])
        np.testing.assert_array_equal(out_masks[i], expected[1])
    small_images, small_masks = T.RandomScaleCrop(9, scale=(0.5, 0.5), seed=0)(images, masks)
    # 9x11 at half size is 4x6 (rounded), padded to 9x9: void in the mask, the fill (0) in the image
    padding = small_masks == -1
    assert (small_images.transpose(0, 2, 3, 1)[padding] == 0).all()
    assert ((~padding).sum(axis=(1, 2)) == 4 * 6).all()


def test_random_scale_crop_keeps_labels_under_their_pixels():
    image, mask = coordinate_pair(24, 32, "chw")
    out_image, out_mask = T.RandomScaleCrop(16, scale=(0.6, 1.7), seed=11)(image, mask)
    labelled = out_mask >= 0
    source_row, source_col = np.divmod(out_mask[labelled], 32)
    # bilinear image vs nearest mask: within the interpolation kernel's reach (as for Resize)
    assert np.abs(out_image[0][labelled] - 1 - source_row).max() <= 2.5
    assert np.abs(out_image[1][labelled] - 1 - source_col).max() <= 2.5


def test_random_scale_crop_rejects_bad_scales():
    with pytest.raises(ValueError, match=r"RandomScaleCrop: scale must be \(low, high\) with 0 < low <= high, got \(1.5, 1.0\)"):
        T.RandomScaleCrop(8, scale=(1.5, 1.0))
    with pytest.raises(ValueError, match="0 < low"):
        T.RandomScaleCrop(8, scale=(0, 1))


def torchvision_style_jitter(image, b, c, s):
    """The same jitter written per image, pixel by pixel in [0, 1] HWC: the formulas of ColorJitter's docstring."""
    gray = lambda x: 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]  # noqa: E731
    x = np.clip(image * b, 0, 1)
    x = np.clip(c * x + (1 - c) * gray(x).mean(), 0, 1)
    return np.clip(s * x + (1 - s) * gray(x)[..., None], 0, 1)


@pytest.mark.parametrize("layout", ["chw", "hwc"])
def test_color_jitter_follows_its_formulas_with_one_factor_per_item(layout):
    rng = np.random.default_rng(0)
    images = rng.random((5, 6, 7, 3)).astype(np.float32)
    masks = rng.integers(-1, 4, (5, 6, 7))
    given = images.transpose(0, 3, 1, 2).copy() if layout == "chw" else images
    original = given.copy()
    out_images, out_masks = T.ColorJitter(0.4, 0.3, 0.5, seed=5)(given, masks)
    draws = np.random.default_rng(5)
    b, c, s = (draws.uniform(1 - x, 1 + x, 5) for x in (0.4, 0.3, 0.5))
    out_hwc = out_images.transpose(0, 2, 3, 1) if layout == "chw" else out_images
    for i in range(5):
        np.testing.assert_allclose(out_hwc[i], torchvision_style_jitter(images[i], b[i], c[i], s[i]), atol=1e-6)
    np.testing.assert_array_equal(out_masks, masks)
    np.testing.assert_array_equal(given, original)  # the dataset's arrays stay untouched
    assert out_images.dtype == np.float32 and out_images.shape == given.shape


def test_color_jitter_on_normalised_images_undoes_and_redoes_the_normalisation():
    rng = np.random.default_rng(1)
    unit = rng.random((3, 3, 5, 5)).astype(np.float32)
    mean, std = np.array([0.4, 0.5, 0.6], np.float32), np.array([0.2, 0.25, 0.3], np.float32)
    normalised = (unit - mean[:, None, None]) / std[:, None, None]
    masks = np.zeros((3, 5, 5), np.int64)
    jittered_unit, _ = T.ColorJitter(0.3, 0.3, 0.3, seed=2)(unit, masks)
    jittered_normalised, _ = T.ColorJitter(0.3, 0.3, 0.3, mean=mean, std=std, seed=2)(normalised, masks)
    np.testing.assert_allclose(jittered_normalised, (jittered_unit - mean[:, None, None]) / std[:, None, None], atol=1e-5)
    # strength 0 changes nothing
    np.testing.assert_allclose(T.ColorJitter(mean=mean, std=std)(normalised, masks)[0], normalised, atol=1e-5)


def test_color_jitter_keeps_uint8_and_rejects_bad_settings():
    image = np.full((4, 4, 3), 100, np.uint8)
    out, _ = T.ColorJitter(brightness=0.5, seed=0)(image, np.zeros((4, 4), np.int64))
    factor = np.random.default_rng(0).uniform(0.5, 1.5)
    assert out.dtype == np.uint8 and (out == np.rint(100 / 255 * factor * 255)).all()
    with pytest.raises(ValueError, match=r"ColorJitter: contrast must be in \[0, 1\], got 1.5"):
        T.ColorJitter(contrast=1.5)
    with pytest.raises(ValueError, match="give both mean and std"):
        T.ColorJitter(0.1, mean=[0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match=r"ColorJitter: expected RGB images \(3 channels\), got shape \(1, 1, 4, 4\)"):
        T.ColorJitter(0.1)(np.zeros((1, 4, 4)), np.zeros((4, 4), np.int64))
