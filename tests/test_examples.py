"""The examples end to end, at tiny sizes: every output written, resume equals an uninterrupted run."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import minidl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

import train_segnet  # noqa: E402

TINY = ["--size", "32", "--train-images", "16", "--val-images", "4", "--batch-size", "4", "--quiet"]


def test_train_segnet_writes_every_output(tmp_path):
    results = train_segnet.main(TINY + ["--epochs", "2", "--out", str(tmp_path)])
    for name in ["metrics.json", "curves.png", "predictions.png", "checkpoint_last.npz", "checkpoint_best.npz"]:
        assert (tmp_path / name).stat().st_size > 0, name
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["pixel_accuracy"] <= 1.0 and 0.0 <= metrics["mean_iou"] <= 1.0
    assert metrics["pixel_accuracy"] == pytest.approx(results["pixel_accuracy"])
    assert len(metrics["history"]) == 2 and set(metrics["per_class"]) == set(minidl.data.MSRC_CLASSES)
    assert Image.open(tmp_path / "predictions.png").size[0] > 100


def test_resume_gives_the_same_result_as_an_uninterrupted_run(tmp_path):
    whole, interrupted, resumed = tmp_path / "whole", tmp_path / "interrupted", tmp_path / "resumed"
    train_segnet.main(TINY + ["--epochs", "3", "--out", str(whole)])
    train_segnet.main(TINY + ["--epochs", "3", "--out", str(interrupted), "--stop-after", "1"])
    assert int(minidl.load(interrupted / "checkpoint_last.npz")["epoch"]) == 0  # only epoch 1 ran
    train_segnet.main(TINY + ["--epochs", "3", "--out", str(resumed), "--resume", str(interrupted / "checkpoint_last.npz")])
    final_whole = minidl.load(whole / "checkpoint_last.npz")
    final_resumed = minidl.load(resumed / "checkpoint_last.npz")
    for key, value in final_whole["model"].items():
        np.testing.assert_array_equal(value.numpy(), final_resumed["model"][key].numpy(), err_msg=key)
    assert json.loads(final_whole["history"])[-1]["val_pixel_accuracy"] == json.loads(final_resumed["history"])[-1]["val_pixel_accuracy"]


def test_resume_with_other_settings_is_refused_and_named(tmp_path):
    train_segnet.main(TINY + ["--epochs", "2", "--out", str(tmp_path), "--stop-after", "1"])
    checkpoint = str(tmp_path / "checkpoint_last.npz")
    with pytest.raises(SystemExit, match=r"model: 'unet_small' in the checkpoint, 'segnet' in this command"):
        train_segnet.main(TINY + ["--epochs", "2", "--out", str(tmp_path), "--model", "segnet", "--resume", checkpoint])
    with pytest.raises(SystemExit, match=r"size: 32 in the checkpoint, 48 in this command"):
        train_segnet.main(TINY[2:] + ["--size", "48", "--epochs", "2", "--out", str(tmp_path), "--resume", checkpoint])


def test_eval_only_and_predict(tmp_path):
    train_segnet.main(TINY + ["--epochs", "1", "--out", str(tmp_path)])
    evaluated = train_segnet.main(
        TINY + ["--eval-only", "--checkpoint", str(tmp_path / "checkpoint_best.npz"), "--out", str(tmp_path / "eval")]
    )
    assert 0.0 <= evaluated["pixel_accuracy"] <= 1.0
    assert (tmp_path / "eval" / "metrics.json").exists() and (tmp_path / "eval" / "predictions.png").exists()
    photo = (np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    subprocess.run([sys.executable, str(ROOT / "examples" / "predict.py"), str(tmp_path / "photo.png"),
                    "--checkpoint", str(tmp_path / "checkpoint_best.npz")], check=True, capture_output=True)
    mask = Image.open(tmp_path / "photo_mask.png")
    assert mask.size == (50, 40) and (tmp_path / "photo_overlay.png").exists()


def test_help_explains_the_options():
    text = subprocess.run([sys.executable, str(ROOT / "examples" / "train_segnet.py"), "--help"],
                          capture_output=True, text=True, check=True).stdout
    for option in ["--data", "--model", "--epochs", "--batch-size", "--lr", "--optimizer", "--size", "--device",
                   "--seed", "--out", "--resume", "--eval-only", "--checkpoint", "--split"]:
        assert option in text
