"""The MSRC-v2 loader, on small fixture folders written by the tests (and on the real data if present)."""
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minidl.data import MSRC, MSRC_CLASSES, decode_mask
from minidl.data.files import SPLITS, read_split_file

REAL_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "msrc_v2"


def write_item(root, name, mask, image_ext=".bmp", label_ext=".bmp", image_size=None):
    """Images/<name><image_ext> (random pixels) and GroundTruth/<name>_GT<label_ext> (``mask`` in colour)."""
    (root / "Images").mkdir(parents=True, exist_ok=True)
    (root / "GroundTruth").mkdir(parents=True, exist_ok=True)
    height, width = image_size or mask.shape
    pixels = np.random.default_rng(len(name)).integers(0, 256, (height, width, 3)).astype(np.uint8)
    Image.fromarray(pixels).save(root / "Images" / f"{name}{image_ext}")
    Image.fromarray(decode_mask(mask)).save(root / "GroundTruth" / f"{name}_GT{label_ext}")
    return pixels


MASK_A = np.array([[-1, 0, 0, 6], [1, 1, 22, 6], [1, 1, 3, -1]])
MASK_B = np.array([[6, 6, 6, 6], [9, 9, 9, 9], [9, 9, 22, 22]])


@pytest.fixture
def msrc_root(tmp_path):
    """Two train images (one BMP pair, one PNG pair), one val image (JPEG image, PNG labels)."""
    pixels_a = write_item(tmp_path, "1_1_s", MASK_A)
    write_item(tmp_path, "2_5_s", MASK_B, ".png", ".png")
    write_item(tmp_path, "3_1_s", MASK_A, ".jpg", ".png")
    (tmp_path / "train.txt").write_text("1_1_s\n2_5_s\n\n")
    (tmp_path / "val.txt").write_text("3_1_s\n")
    return tmp_path, pixels_a


def test_loads_bmp_and_png_pairs(msrc_root):
    root, pixels_a = msrc_root
    train = MSRC(root, "train")
    assert len(train) == 2 and train.names == ["1_1_s", "2_5_s"] and train.num_classes == 23
    image, mask = train[0]
    assert image.shape == (3, 3, 4) and image.dtype == np.float32
    np.testing.assert_allclose(image.transpose(1, 2, 0) * 255, pixels_a, atol=1e-3)  # BMP is lossless
    assert mask.dtype == np.int64
    np.testing.assert_array_equal(mask, MASK_A)  # black became -1, colours their classes
    np.testing.assert_array_equal(train[1][1], MASK_B)
    assert len(MSRC(root, "val")) == 1


def test_transform_is_applied(msrc_root):
    root, _ = msrc_root
    train = MSRC(root, "train", transform=lambda image, mask: (image[:, :2], mask[:2]))
    assert train[0][0].shape == (3, 2, 4) and train[0][1].shape == (2, 4)


def test_unknown_colour_names_file_colour_and_count(msrc_root):
    root, _ = msrc_root
    label = np.array(Image.open(root / "GroundTruth" / "2_5_s_GT.png"))
    label[0, :3] = (255, 255, 255)
    Image.fromarray(label).save(root / "GroundTruth" / "2_5_s_GT.png")
    with pytest.raises(ValueError, match=r"2_5_s_GT\.png: 3 pixels .*\(255, 255, 255\): 3 px"):
        MSRC(root, "train")


def test_missing_ground_truth_names_the_file(msrc_root):
    root, _ = msrc_root
    (root / "GroundTruth" / "2_5_s_GT.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"no ground truth for '2_5_s'.*GroundTruth/2_5_s_GT\.bmp"):
        MSRC(root, "train")


def test_missing_image_names_the_file(msrc_root):
    root, _ = msrc_root
    (root / "Images" / "1_1_s.bmp").unlink()
    with pytest.raises(FileNotFoundError, match=r"no image for '1_1_s'.*Images/1_1_s\.bmp"):
        MSRC(root, "train")


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_unreadable_image_names_the_file(msrc_root, damage):
    root, _ = msrc_root
    path = root / "Images" / "2_5_s.png"
    path.write_bytes(b"this is not a picture" if damage == "garbage" else path.read_bytes()[:60])
    with pytest.raises(ValueError, match=r"cannot read image .*Images/2_5_s\.png"):
        MSRC(root, "train")


def test_size_mismatch_names_both_files(msrc_root):
    root, _ = msrc_root
    write_item(root, "2_5_s", MASK_B, ".png", ".png", image_size=(5, 4))
    with pytest.raises(ValueError, match=r"image .*2_5_s\.png is 4x5 \(WxH\) but its labels .*2_5_s_GT\.png are 4x3"):
        MSRC(root, "train")


def test_without_a_split_file_the_shipped_list_is_read(msrc_root):
    root, _ = msrc_root
    # the fixture has no test.txt: the shipped test list's first name is looked for
    first_test_name = read_split_file(SPLITS / "msrc_test.txt", "MSRC")[0]
    with pytest.raises(FileNotFoundError, match=rf"no image for '{first_test_name}'"):
        MSRC(root, "test")
    with pytest.raises(FileNotFoundError, match=r"minidl ships no 'trainval' split \(it ships test, train, val\)"):
        MSRC(root, "trainval")


def test_a_folder_without_images_says_how_to_prepare_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"has no Images/ folder; prepare MSRC-v2 there with .*prepare msrc"):
        MSRC(tmp_path, "train")


def test_shipped_splits_cover_msrc_v2_once():
    splits = {split: read_split_file(SPLITS / f"msrc_{split}.txt", "MSRC") for split in ("train", "val", "test")}
    assert {split: len(names) for split, names in splits.items()} == {"train": 295, "val": 58, "test": 238}
    everything = [name for names in splits.values() for name in names]
    assert len(set(everything)) == 591  # MSRC-v2's 591 photographs, each in one split
    assert all(re.fullmatch(r"\d+_\d+_s", name) for name in everything)


@pytest.mark.skipif(not REAL_ROOT.is_dir(), reason="the MSRC-v2 copy in shared/data is not here")
@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_shipped_splits_are_the_development_copys(split):
    assert read_split_file(SPLITS / f"msrc_{split}.txt", "MSRC") == read_split_file(REAL_ROOT / f"{split}.txt", "MSRC")


@pytest.mark.skipif(not REAL_ROOT.is_dir(), reason="the MSRC-v2 copy in shared/data is not here")
def test_real_msrc_train_and_val():
    train, val = MSRC(REAL_ROOT, "train"), MSRC(REAL_ROOT, "val")
    assert (len(train), len(val)) == (295, 58)
    counts = train.class_pixel_counts()
    assert counts.sum() > 0 and counts[MSRC_CLASSES.index("grass")] > counts[MSRC_CLASSES.index("horse")]
    image, mask = val[0]
    assert image.shape[0] == 3 and image.shape[1:] == mask.shape and mask.min() >= -1 and mask.max() <= 22
