"""The CamVid loader on fixture folders (and the real val split if present); median-frequency weights."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minidl.data import CamVid, median_frequency_weights

REAL_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid"
LABELS = np.array([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]], np.uint8)


def write_pair(root, split, name, labels=LABELS, image_size=None, label_mode="L"):
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
    height, width = image_size or labels.shape
    Image.fromarray(np.full((height, width, 3), 100, np.uint8)).save(root / split / name)
    label_image = Image.fromarray(labels)
    (label_image.convert(label_mode) if label_mode != "L" else label_image).save(root / f"{split}annot" / name)


@pytest.fixture
def camvid_root(tmp_path):
    write_pair(tmp_path, "train", "a.png")
    write_pair(tmp_path, "train", "b.png", labels=np.zeros((3, 4), np.uint8))
    # the list names the authors' absolute paths; only the last two parts matter
    (tmp_path / "train.txt").write_text(
        "/SegNet/CamVid/train/b.png /SegNet/CamVid/trainannot/b.png\n"
        "/SegNet/CamVid/train/a.png /SegNet/CamVid/trainannot/a.png\n"
    )
    write_pair(tmp_path, "val", "c.png")  # no val.txt: the folder is listed
    return tmp_path


def test_reads_the_list_and_maps_unlabelled_to_void(camvid_root):
    train = CamVid(camvid_root, "train")
    assert train.names == ["b", "a"] and train.num_classes == 11
    image, mask = train[1]
    assert image.shape == (3, 3, 4) and mask.dtype == np.int64
    expected = LABELS.astype(np.int64)
    expected[expected == 11] = -1
    np.testing.assert_array_equal(mask, expected)


def test_lists_the_folder_without_a_list_file(camvid_root):
    assert CamVid(camvid_root, "val").names == ["c"]


def test_label_values_above_unlabelled_name_the_file(camvid_root):
    write_pair(camvid_root, "train", "a.png", labels=np.full((3, 4), 12, np.uint8))
    with pytest.raises(ValueError, match=r"label image .*trainannot/a\.png has values \[12\] \(12 pixels\)"):
        CamVid(camvid_root, "train")


def test_colour_label_images_are_rejected(camvid_root):
    write_pair(camvid_root, "train", "a.png", label_mode="RGB")
    with pytest.raises(ValueError, match=r"label image .*trainannot/a\.png has mode RGB; expected a single-channel"):
        CamVid(camvid_root, "train")


def test_missing_annotation_names_the_file(camvid_root):
    (camvid_root / "trainannot" / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"label image .*trainannot/b\.png not found"):
        CamVid(camvid_root, "train")


def test_size_mismatch_and_bad_list_lines(camvid_root):
    write_pair(camvid_root, "train", "a.png", image_size=(6, 4))
    with pytest.raises(ValueError, match=r"image .*train/a\.png is 4x6 \(WxH\) but its labels"):
        CamVid(camvid_root, "train")
    (camvid_root / "train.txt").write_text("only-one-field.png\n")
    with pytest.raises(ValueError, match=r"train\.txt line 1: expected 'IMAGE ANNOTATION'"):
        CamVid(camvid_root, "train")


def test_missing_split_names_the_folder(camvid_root):
    with pytest.raises(FileNotFoundError, match=r"neither list file .*test\.txt nor image folder .*test exists; "
                                                r"prepare CamVid with .*prepare camvid --download"):
        CamVid(camvid_root, "test")


def test_median_frequency_weights_on_a_hand_made_example():
    # image 1 (4 pixels): class 0 x2, class 1 x1, void x1;  image 2 (4 pixels): class 0 x1, class 2 x3
    masks = [np.array([[0, 0], [1, -1]]), np.array([[0, 2], [2, 2]])]
    # freq_0 = 3/8 (in both images), freq_1 = 1/4 (image 1 only), freq_2 = 3/4 (image 2 only)
    # median(3/8, 1/4, 3/4) = 3/8 -> weights 1, 3/2, 1/2; class 3 never appears -> 0
    weights = median_frequency_weights(masks, num_classes=4)
    np.testing.assert_allclose(weights, [1.0, 1.5, 0.5, 0.0], rtol=1e-6)
    assert weights.dtype == np.float32
    # the same from an (N, H, W) array and from a dataset of (image, mask) items
    np.testing.assert_allclose(median_frequency_weights(np.stack(masks), 4), weights)
    np.testing.assert_allclose(median_frequency_weights([(None, m) for m in masks], 4), weights)
    with pytest.raises(ValueError, match="label 2 >= num_classes"):
        median_frequency_weights(masks, num_classes=2)


def test_median_frequency_weights_read_a_dataset_cache(camvid_root):
    weights = median_frequency_weights(CamVid(camvid_root, "train"), 11)
    assert weights.shape == (11,) and (weights > 0).all()


@pytest.mark.skipif(not REAL_ROOT.is_dir(), reason="the CamVid copy in shared/data is not here")
def test_real_camvid_val():
    val = CamVid(REAL_ROOT, "val")
    assert len(val) == 101
    image, mask = val[0]
    assert image.shape == (3, 360, 480) and mask.shape == (360, 480) and mask.min() >= -1 and mask.max() <= 10
