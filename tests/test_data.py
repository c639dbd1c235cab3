"""Datasets, DataLoader and palettes."""
import threading

import numpy as np
import pytest

import minidl
from minidl.data import (
    MSRC_CLASSES, MSRC_PALETTE, DataLoader, Dataset, Subset, SyntheticScenes, TensorDataset, decode_mask,
    default_collate, encode_colours,
)
from minidl.data import transforms as T
from minidl.data.palette import voc_colour


def numbered(n=10):
    """A dataset whose item i is (image full of i (3, 2, 2) float32, mask full of i (2, 2) int64)."""
    images = np.arange(n, dtype=np.float32)[:, None, None, None] * np.ones((1, 3, 2, 2), np.float32)
    masks = np.arange(n)[:, None, None] * np.ones((1, 2, 2), np.int64)
    return TensorDataset(images, masks)


def order_of(loader):
    """The item indices of one epoch, batch by batch."""
    return [masks.numpy()[:, 0, 0].tolist() for _, masks in loader]


# --------------------------------------------------------------------------- datasets
def test_tensor_dataset_and_subset():
    ds = numbered(5)
    image, mask = ds[-1]
    assert len(ds) == 5 and image.shape == (3, 2, 2) and mask[0, 0] == 4
    sub = Subset(ds, [4, 0])
    assert len(sub) == 2 and sub[0][1][0, 0] == 4 and sub[1][1][0, 0] == 0
    with pytest.raises(IndexError, match="index 5 out of range"):
        ds[5]
    with pytest.raises(ValueError, match=r"same first dimension, got sizes \[2, 3\]"):
        TensorDataset(np.zeros(2), np.zeros(3))
    with pytest.raises(NotImplementedError):
        Dataset()[0]


def test_segmentation_dataset_items_and_slices():
    ds = SyntheticScenes(3, size=(32, 48))
    image, mask = ds[0]
    assert image.shape == (3, 32, 48) and image.dtype == np.float32
    assert mask.shape == (32, 48) and mask.dtype == np.int64
    pairs = ds[0:2]  # the tutorial's `train_data[0:4]`
    assert len(pairs) == 2 and np.array_equal(pairs[1][1], ds[1][1])
    image[:] = 0  # items are copies: the cache is untouched
    assert ds[0][0].max() > 0


# --------------------------------------------------------------------------- DataLoader
def test_len_and_drop_last():
    assert len(DataLoader(numbered(10), batch_size=4)) == 3
    assert len(DataLoader(numbered(10), batch_size=4, drop_last=True)) == 2
    assert len(DataLoader(numbered(8), batch_size=4)) == 2
    assert order_of(DataLoader(numbered(10), batch_size=4)) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert order_of(DataLoader(numbered(10), batch_size=4, drop_last=True)) == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_shuffle_is_reproducible_and_fresh_each_epoch():
    a = DataLoader(numbered(12), batch_size=5, shuffle=True, seed=7)
    b = DataLoader(numbered(12), batch_size=5, shuffle=True, seed=7)
    epochs_a, epochs_b = [order_of(a) for _ in range(3)], [order_of(b) for _ in range(3)]
    assert epochs_a == epochs_b
    flat = [sum(epoch, []) for epoch in epochs_a]
    assert all(sorted(order) == list(range(12)) for order in flat)  # each epoch is a permutation
    assert flat[0] != flat[1]  # ... and a new one
    assert order_of(DataLoader(numbered(12), batch_size=5, shuffle=True, seed=8)) != epochs_a[0]


def test_unseeded_shuffle_follows_minidl_manual_seed():
    minidl.manual_seed(3)
    first = order_of(DataLoader(numbered(12), batch_size=12, shuffle=True))
    minidl.manual_seed(3)
    assert order_of(DataLoader(numbered(12), batch_size=12, shuffle=True)) == first


def test_batches_of_segmentation_items_are_tensors():
    loader = DataLoader(SyntheticScenes(5, size=(32, 32)), batch_size=2)
    batches = list(loader)
    images, masks = batches[0]
    assert isinstance(images, minidl.Tensor) and images.shape == (2, 3, 32, 32) and images.dtype == minidl.float32
    assert isinstance(masks, minidl.Tensor) and masks.shape == (2, 32, 32) and masks.dtype == minidl.int64
    assert batches[-1][0].shape == (1, 3, 32, 32)


def test_prefetch_thread_gives_the_same_batches_as_no_thread():
    """The worker thread runs the same transforms, with the same random draws, in the same order."""

    def loader(prefetch):
        transform = T.Compose([T.RandomCrop(20, seed=1), T.RandomHorizontalFlip(seed=2)])
        return DataLoader(SyntheticScenes(7, size=(24, 24), transform=transform), batch_size=3, shuffle=True,
                          seed=5, prefetch=prefetch)

    plain, threaded = loader(0), loader(2)
    for _ in range(2):
        for (xa, ya), (xb, yb) in zip(plain, threaded, strict=True):
            np.testing.assert_array_equal(xa.numpy(), xb.numpy())
            np.testing.assert_array_equal(ya.numpy(), yb.numpy())


def test_prefetch_thread_stops_when_the_loop_is_left_early():
    loader = DataLoader(numbered(50), batch_size=1, prefetch=2)
    for _ in loader:
        break
    assert not any(t.name == "minidl-DataLoader-prefetch" for t in threading.enumerate())
    assert order_of(loader)[:2] == [[0], [1]]  # a new epoch starts from the beginning


class Failing(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        if index == 2:
            raise ValueError("item 2 is broken")
        return np.zeros(2), 0


@pytest.mark.parametrize("prefetch", [0, 2])
def test_errors_in_the_dataset_reach_the_training_loop(prefetch):
    with pytest.raises(ValueError, match="item 2 is broken"):
        list(DataLoader(Failing(), batch_size=1, prefetch=prefetch))


def test_default_collate_structures():
    batch = default_collate([(np.zeros(2, np.float32), 1, 0.5), (np.ones(2, np.float32), 2, 1.5)])
    arrays, ints, floats = batch
    assert isinstance(batch, tuple) and arrays.shape == (2, 2)
    assert ints.dtype == minidl.int64 and ints.tolist() == [1, 2]
    assert floats.dtype == minidl.float32
    stacked = default_collate([{"x": minidl.tensor([1.0])}, {"x": minidl.tensor([2.0])}])
    assert stacked["x"].shape == (2, 1)
    with pytest.raises(ValueError, match=r"different shapes \[\(2,\), \(3,\)\]; make them equal"):
        default_collate([np.zeros(2), np.zeros(3)])
    with pytest.raises(TypeError, match="don't know how to batch str"):
        default_collate(["a", "b"])


def test_loader_argument_checks():
    for bad in [0, -2, 2.7, 2.0, "8", True, None]:  # refused as PyTorch does, never rounded (2.7 used to give 2)
        with pytest.raises(ValueError, match=rf"DataLoader: batch_size must be an integer >= 1, got {bad!r}"):
            DataLoader(numbered(), batch_size=bad)
    assert DataLoader(numbered(), batch_size=np.int64(3)).batch_size == 3
    for bad in [-1, 0.5]:
        with pytest.raises(ValueError, match=r"prefetch must be an integer >= 0"):
            DataLoader(numbered(), prefetch=bad)


def test_a_generator_as_seed_is_shared_not_copied():
    rng = np.random.default_rng(5)
    loader = DataLoader(numbered(6), batch_size=6, shuffle=True, seed=rng)
    assert loader.generator is rng
    assert order_of(loader) == [np.random.default_rng(5).permutation(6).tolist()]


# --------------------------------------------------------------------------- palettes
def test_msrc_palette_is_the_voc_colour_map_of_the_database_numbers():
    assert len(MSRC_CLASSES) == len(MSRC_PALETTE) == 23
    numbers = list(range(1, 19)) + list(range(21, 26))  # building..chair, road..boat
    assert [voc_colour(n) for n in numbers] == [tuple(c) for c in MSRC_PALETTE.tolist()]
    assert MSRC_CLASSES[MSRC_PALETTE.tolist().index([128, 128, 128])] == "sky"


def test_decode_and_encode_are_inverse():
    mask = np.array([[-1, 0, 22], [6, 1, -1]])
    rgb = decode_mask(mask)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[1, 0].tolist() == [128, 128, 128]
    np.testing.assert_array_equal(encode_colours(rgb), mask)
    assert decode_mask(minidl.tensor(mask))[0, 1].tolist() == [128, 0, 0]  # tensors work too


def test_unknown_colours_are_reported_with_their_counts():
    rgb = decode_mask(np.zeros((2, 2), np.int64))
    rgb[0, 0] = (1, 2, 3)
    rgb[0, 1] = (1, 2, 3)
    with pytest.raises(ValueError, match=r"x_GT.bmp: 2 pixels .* \(1, 2, 3\): 2 px"):
        encode_colours(rgb, source="x_GT.bmp")
