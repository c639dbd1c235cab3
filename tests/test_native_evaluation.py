"""train_segnet.py scores as the papers do: logits upsampled bilinearly to each label's original size
(issue 22), beside the training-size figure; --eval-flip averages each image with its mirror."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import minidl
from minidl.metrics import SegmentationMetrics
from tests.helpers import needs_torch, torch, write_msrc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

import train_segnet  # noqa: E402
from data_setup import PreparedSplit, datasets_for  # noqa: E402


def halves_logits():
    """Logits (1, 2, 4, 4): class 0 wins in columns 0-1, class 1 in columns 2-3 (margin 1)."""
    logits = np.zeros((1, 2, 4, 4), np.float32)
    logits[0, 0, :, :2] = logits[0, 1, :, 2:] = 1.0
    return logits


def test_native_scoring_upsamples_the_logits_to_each_labels_own_size():
    # bilinear, half-pixel centres: output column 3 of 8 samples x = 1.25 (class 0), column 4 x = 1.75 (class 1)
    mask = np.repeat([[0] * 4 + [1] * 4], 8, axis=0).astype(np.int8)
    metrics = SegmentationMetrics(2)
    train_segnet.score_at_native_size(metrics, minidl.tensor(halves_logits()), [mask])
    np.testing.assert_array_equal(metrics.confusion, [[32, 0], [0, 32]])
    # the same logits against a label of another size and aspect: counted at that label's size
    wide = np.zeros((3, 10), np.int8)
    metrics = SegmentationMetrics(2)
    train_segnet.score_at_native_size(metrics, minidl.tensor(halves_logits()), [wide])
    np.testing.assert_array_equal(metrics.confusion, [[15, 15], [0, 0]])


@needs_torch
def test_native_scoring_matches_torch_interpolate_then_argmax():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, 5, 6, 7))
    masks = [rng.integers(-1, 5, (13, 17)).astype(np.int8), rng.integers(-1, 5, (5, 9)).astype(np.int8)]
    metrics = SegmentationMetrics(5)
    train_segnet.score_at_native_size(metrics, minidl.tensor(logits), masks)
    expected = SegmentationMetrics(5)
    for i, mask in enumerate(masks):
        up = torch.nn.functional.interpolate(torch.from_numpy(logits[i:i + 1]), size=mask.shape, mode="bilinear",
                                             align_corners=False)
        expected.update(up.argmax(1).numpy(), mask[None])
    np.testing.assert_array_equal(metrics.confusion, expected.confusion)


class FixedLogits:
    """A stand-in model: logits that depend on the pixel's column, so a mirror shows."""

    def __init__(self, classes=3):
        self.classes = classes

    def eval(self):
        return self

    def __call__(self, x):
        n, _, h, w = x.shape
        ramp = np.arange(w, dtype=np.float32) / w
        mean = x.numpy().mean(axis=1, keepdims=True)
        logits = np.concatenate([mean * (c + 1) + ramp * (c - 1) for c in range(self.classes)], axis=1)
        return minidl.tensor(logits)


def test_eval_flip_averages_the_logits_of_each_image_and_its_mirror():
    rng = np.random.default_rng(1)
    images = rng.standard_normal((2, 3, 5, 6)).astype(np.float32)
    model, run = FixedLogits(), train_segnet.Run(kind="synthetic", device="cpu")
    plain = model(minidl.tensor(images)).numpy()
    mirrored = model(minidl.tensor(images[..., ::-1].copy())).numpy()[..., ::-1]
    flipped = train_segnet.predict_logits(model, images, run, flip=True).numpy()
    np.testing.assert_allclose(flipped, (plain + mirrored) / 2, rtol=1e-6)
    assert not np.allclose(flipped, plain)  # the ramp makes the mirror matter
    np.testing.assert_array_equal(train_segnet.predict_logits(model, images, run).numpy(), plain)


def test_evaluate_reports_the_training_size_and_under_native_each_label_at_its_size():
    rng = np.random.default_rng(2)
    images = rng.standard_normal((3, 3, 4, 4)).astype(np.float32)
    masks = rng.integers(-1, 3, (3, 4, 4))
    natives = [rng.integers(-1, 3, shape).astype(np.int8) for shape in [(8, 8), (6, 9), (4, 4)]]
    split = PreparedSplit(images, masks, ("a", "b", "c"), np.zeros((3, 3), np.uint8), np.zeros(3), np.ones(3), "val",
                          native_masks=natives)
    args = train_segnet.parse_args(["--batch-size", "2", "--size", "4"])
    model, run = FixedLogits(), train_segnet.Run(kind="synthetic", device="cpu")
    results = train_segnet.evaluate(model, split, args, run, 3, native=True)

    logits = model(minidl.tensor(images))
    at_size, native = SegmentationMetrics(3), SegmentationMetrics(3)
    at_size.update(logits.numpy().argmax(1), masks)
    train_segnet.score_at_native_size(native, logits, natives)
    assert results["pixel_accuracy"] == at_size.pixel_accuracy()
    assert results["native"]["pixel_accuracy"] == native.pixel_accuracy()
    assert results["native"]["mean_iou"] == native.mean_iou()
    assert "native" not in train_segnet.evaluate(model, split, args, run, 3)  # per epoch: the training size only


def test_native_masks_are_kept_only_where_resizing_changed_them(tmp_path):
    root = write_msrc(tmp_path / "msrc", np.random.default_rng(3), size=(24, 32))
    resized = train_segnet.parse_args(["--data", str(root), "--size", "16"])
    train, val = datasets_for(resized)
    assert [m.shape for m in val.native_masks] == [(24, 32)] * 2 and val.masks.shape == (2, 16, 16)
    assert train.native_masks is not None
    original = train_segnet.parse_args(["--data", str(root), "--size", "32x24"])
    assert datasets_for(original)[1].native_masks is None


def test_a_real_dataset_run_reports_native_figures_first_and_the_training_size_beside(tmp_path, capsys):
    root = write_msrc(tmp_path / "msrc", np.random.default_rng(4))
    common = ["--data", str(root), "--size", "16", "--model", "pixelwise", "--batch-size", "2", "--quiet"]
    results = train_segnet.main(common + ["--epochs", "1", "--out", str(tmp_path / "run")])
    printed = capsys.readouterr().out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["resolution"] == "native"
    assert metrics["pixel_accuracy"] == pytest.approx(results["native"]["pixel_accuracy"])
    assert metrics["at_training_size"]["pixel_accuracy"] == pytest.approx(results["pixel_accuracy"])
    assert metrics["history"][0]["val_pixel_accuracy"] == pytest.approx(results["pixel_accuracy"])
    assert f"final val at native: global (pixel) accuracy {results['native']['pixel_accuracy']:.3f}" in printed
    assert f"final val at training size: global (pixel) accuracy {results['pixel_accuracy']:.3f}" in printed
    # --eval-only scores the checkpoint the same way
    again = train_segnet.main(common + ["--eval-only", "--checkpoint", str(tmp_path / "run" / "checkpoint_last.npz"),
                                        "--out", str(tmp_path / "eval")])
    assert again["native"]["pixel_accuracy"] == pytest.approx(results["native"]["pixel_accuracy"])
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["resolution"] == "native"
