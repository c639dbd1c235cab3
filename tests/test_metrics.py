"""Confusion matrix and segmentation metrics against hand-computed values."""
import math

import numpy as np
import pytest

import minidl
from minidl.metrics import SegmentationMetrics, confusion_matrix

# 3 classes, one 2x4 image; -1 = void
TARGET = np.array([[[0, 0, 1, 1], [2, 2, -1, 0]]])
PRED = np.array([[[0, 1, 1, 1], [2, 0, 2, 0]]])
# rows = true class, columns = predicted class (the void pixel is skipped):
#   true 0: pixels (0,0)->0, (0,1)->1, (1,3)->0     => [2, 1, 0]
#   true 1: (0,2)->1, (0,3)->1                      => [0, 2, 0]
#   true 2: (1,0)->2, (1,1)->0                      => [1, 0, 1]
CONFUSION = np.array([[2, 1, 0], [0, 2, 0], [1, 0, 1]])


def test_confusion_matrix_by_hand():
    cm = confusion_matrix(PRED, TARGET, num_classes=3)
    np.testing.assert_array_equal(cm, CONFUSION)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(confusion_matrix(minidl.tensor(PRED), minidl.tensor(TARGET), 3), CONFUSION)


def test_other_ignore_index():
    target = np.where(TARGET == -1, 255, TARGET)
    np.testing.assert_array_equal(confusion_matrix(PRED, target, 3, ignore_index=255), CONFUSION)


def test_figures_by_hand():
    m = SegmentationMetrics(3).update(PRED, TARGET)
    np.testing.assert_array_equal(m.confusion, CONFUSION)
    assert m.pixel_accuracy() == pytest.approx(5 / 7)  # 5 of the 7 non-void pixels are right
    np.testing.assert_allclose(m.per_class_accuracy(), [2 / 3, 1.0, 1 / 2])
    assert m.class_accuracy() == pytest.approx((2 / 3 + 1 + 1 / 2) / 3)
    # IoU = hits / (true + predicted - hits): class 0: 2 / (3 + 3 - 2), class 1: 2 / (2 + 3 - 2), class 2: 1 / (2 + 1 - 1)
    np.testing.assert_allclose(m.per_class_iou(), [2 / 4, 2 / 3, 1 / 2])
    assert m.mean_iou() == pytest.approx((1 / 2 + 2 / 3 + 1 / 2) / 3)
    d = m.as_dict()
    assert set(d) == {"pixel_accuracy", "class_accuracy", "mean_iou", "per_class_accuracy", "per_class_iou"}
    assert d["per_class_iou"] == pytest.approx([0.5, 2 / 3, 0.5])


def test_logits_are_reduced_with_argmax():
    logits = np.eye(3, dtype=np.float32)[PRED].transpose(0, 3, 1, 2) * 5.0  # (1, 3, 2, 4), best = PRED
    m = SegmentationMetrics(3).update(minidl.tensor(logits), minidl.tensor(TARGET))
    np.testing.assert_array_equal(m.confusion, CONFUSION)
    with pytest.raises(ValueError, match="scores have 3 channels, expected num_classes=4"):
        SegmentationMetrics(4).update(logits, TARGET)


def test_accumulates_over_the_split_not_per_batch():
    """Two batches of different sizes: the figure is the whole split's, not the mean of the batches'."""
    m = SegmentationMetrics(3)
    m.update(PRED, TARGET)  # 5 / 7 right
    m.update(np.zeros((1, 1, 1), np.int64), np.ones((1, 1, 1), np.int64))  # 0 / 1 right
    assert m.pixel_accuracy() == pytest.approx(5 / 8)  # the tutorial's per-batch mean would say (5/7 + 0) / 2
    whole = SegmentationMetrics(3).update(np.concatenate([PRED.ravel(), [0]]), np.concatenate([TARGET.ravel(), [1]]))
    np.testing.assert_array_equal(whole.confusion, m.confusion)
    m.reset()
    assert m.confusion.sum() == 0 and math.isnan(m.pixel_accuracy())


def test_classes_absent_from_targets_and_predictions():
    # 4 classes: class 3 is in neither targets nor predictions; class 2 is only predicted
    target = np.array([[0, 0, 1]])
    pred = np.array([[0, 2, 1]])
    m = SegmentationMetrics(4).update(pred, target)
    acc, iou = m.per_class_accuracy(), m.per_class_iou()
    assert math.isnan(acc[2]) and math.isnan(acc[3])  # no true pixels: accuracy undefined
    assert iou[2] == 0.0 and math.isnan(iou[3])  # predicted but absent: IoU 0 and it counts
    assert m.class_accuracy() == pytest.approx((1 / 2 + 1) / 2)
    assert m.mean_iou() == pytest.approx((1 / 2 + 1 + 0) / 3)


def test_bad_labels_are_reported():
    with pytest.raises(ValueError, match="target has label 3 outside 0..2"):
        confusion_matrix(np.zeros((2, 2), int), np.full((2, 2), 3), 3)
    with pytest.raises(ValueError, match="pred has label -2 outside 0..2"):
        confusion_matrix(np.full((2, 2), -2), np.zeros((2, 2), int), 3)
    with pytest.raises(ValueError, match=r"pred has shape \(2, 2\) but target has \(2, 3\)"):
        confusion_matrix(np.zeros((2, 2), int), np.zeros((2, 3), int), 3)
    with pytest.raises(TypeError, match="integer class labels"):
        confusion_matrix(np.zeros((2, 2)), np.zeros((2, 2), int), 3)
    with pytest.raises(ValueError, match=r"expected scores \(N, C, H, W\) or labels \(N, H, W\)"):
        SegmentationMetrics(3).update(np.zeros((2,)), np.zeros((1, 2, 2), int))


def test_report_lists_every_class():
    m = SegmentationMetrics(3, class_names=["sky", "grass", "cow"]).update(PRED, TARGET)
    text = m.report()
    assert "grass" in text and "mean IoU 0.556" in text
    assert str(m).startswith("pixel accuracy 0.714")
