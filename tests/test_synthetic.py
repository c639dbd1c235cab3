"""The embedded synthetic dataset: deterministic, well-formed, MSRC-like, and in need of context."""
import numpy as np
import pytest

from minidl.data import MSRC_CLASSES, SyntheticScenes, generate_scene


@pytest.fixture(scope="module")
def train():
    return SyntheticScenes(160, seed=0)


@pytest.fixture(scope="module")
def val():
    return SyntheticScenes(60, seed=0, split="val")


def test_same_seed_same_images_other_seed_or_split_other_images(train):
    again = SyntheticScenes(4, seed=0)
    for i in range(4):
        np.testing.assert_array_equal(again.images[i], train.images[i])
        np.testing.assert_array_equal(again.masks[i], train.masks[i])
    other_seed, other_split = SyntheticScenes(4, seed=1), SyntheticScenes(4, seed=0, split="val")
    for other in (other_seed, other_split):
        assert not any(np.array_equal(other.images[i], train.images[i]) for i in range(4))


def test_image_i_does_not_depend_on_how_many_are_made(train):
    np.testing.assert_array_equal(SyntheticScenes(1, seed=0).images[0], train.images[0])


def test_shapes_dtypes_and_ranges(train):
    image, mask = train[0]
    assert image.shape == (3, 96, 96) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert mask.shape == (96, 96) and mask.dtype == np.int64
    masks = np.stack(train.masks)
    assert masks.min() >= -1 and masks.max() <= 22
    assert train.num_classes == 23 and train.classes == MSRC_CLASSES
    rect = SyntheticScenes(2, size=(64, 80))
    assert rect[1][0].shape == (3, 64, 80) and rect[1][1].shape == (64, 80)
    assert rect.decode_mask(rect[1][1]).shape == (64, 80, 3)


def test_every_class_appears(train):
    counts = train.class_pixel_counts()
    missing = [MSRC_CLASSES[c] for c in np.flatnonzero(counts == 0)]
    assert not missing, f"classes never drawn in 160 images: {missing}"


def test_void_bands_surround_objects(train):
    masks = np.stack(train.masks)
    void = masks == -1
    assert 0.03 < void.mean() < 0.3
    # bands, not blobs: nearly every void pixel has a labelled pixel within 3 pixels
    near_label = np.zeros_like(void)
    for dy in range(-3, 4):
        for dx in range(-3, 4):
            near_label |= np.roll(masks >= 0, (dy, dx), axis=(1, 2))
    assert (void & ~near_label).sum() < 0.01 * void.sum()
    # and they surround things: pixels of cows, cars, people... touch void far more often than sky does
    touches_void = np.zeros_like(void)
    for shift in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        touches_void |= np.roll(void, shift, axis=(1, 2))
    sky, car = masks == MSRC_CLASSES.index("sky"), masks == MSRC_CLASSES.index("car")
    assert (touches_void & car).sum() / car.sum() > 3 * (touches_void & sky).sum() / sky.sum()


def test_generate_scene_directly():
    image, mask = generate_scene(np.random.default_rng(0), 40, 50)
    assert image.shape == (40, 50, 3) and image.dtype == np.uint8
    assert mask.shape == (40, 50) and mask.dtype == np.int8


def test_bad_arguments():
    with pytest.raises(ValueError, match="split must be one of"):
        SyntheticScenes(1, split="training")
    with pytest.raises(ValueError, match="at least 16x16"):
        SyntheticScenes(1, size=8)


def colour_lookup_accuracy(train, val):
    """Pixel accuracy on ``val`` of the best per-pixel classifier that sees only a pixel's colour:
    the majority class of each colour cell (32 levels per channel), learnt on ``train``.
    A 1x1-convolution network can at best approach it."""

    def cells(ds):
        q = np.stack(ds.images).astype(np.int64) // 8
        return (q[..., 0] * 32 + q[..., 1]) * 32 + q[..., 2], np.stack(ds.masks).astype(np.int64)

    (k, m), (kv, mv) = cells(train), cells(val)
    votes = np.zeros((32**3, 23), np.int64)
    np.add.at(votes, (k[m >= 0], m[m >= 0]), 1)
    predicted = votes.argmax(axis=1)[kv[mv >= 0]]
    return predicted, mv[mv >= 0]


def test_colour_alone_is_not_enough(train, val):
    """The scenes need context: a pixel's colour leaves much of the image ambiguous."""
    predicted, target = colour_lookup_accuracy(train, val)
    assert (predicted == target).mean() < 0.75
    water, sky, cow, horse = (MSRC_CLASSES.index(n) for n in ("water", "sky", "cow", "horse"))
    # look-alike pairs: most water is taken for sky or the other way round; cows and horses get mixed up
    assert (predicted[target == water] == water).mean() < 0.5
    assert (predicted[target == horse] == horse).mean() < 0.5
    assert (predicted[target == cow] == cow).mean() < 0.5
