"""train_segnet.py's recipes at tiny sizes: CamVid from scratch (WxH size, median class weights, the
papers' metrics), then old school and lazy from that CamVid checkpoint, torchvision weight files."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import minidl
from minidl.data import CAMVID_CLASSES
from minidl.models import build_model, lraspp_mobilenet_v3_large, resnet18
from minidl.models.torchvision import IMAGENET_MEAN, IMAGENET_STD
from tests.helpers import needs_torch, torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

import predict  # noqa: E402
import train_segnet  # noqa: E402

TINY = ["--train-images", "8", "--val-images", "2", "--batch-size", "2", "--max-steps", "1", "--quiet"]


def write_camvid(root, rng, split, count, size=(30, 40)):
    """``count`` random images and labels (0..11, 11 = unlabelled) in CamVid's folders."""
    (root / split).mkdir(parents=True)
    (root / f"{split}annot").mkdir()
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / split / f"{i}.png")
        labels = np.repeat(rng.integers(0, 12, (size[0] // 5, size[1] // 5)), 5, axis=0).repeat(5, axis=1)
        Image.fromarray(labels.astype(np.uint8)).save(root / f"{split}annot" / f"{i}.png")


@pytest.fixture(scope="module")
def camvid_run(tmp_path_factory):
    """One tiny SegNet-Basic epoch on a CamVid fixture, at 24x16 with median frequency weights."""
    root = tmp_path_factory.mktemp("camvid")
    rng = np.random.default_rng(0)
    write_camvid(root / "data", rng, "train", 4)
    write_camvid(root / "data", rng, "val", 2)
    results = train_segnet.main(TINY + ["--data", f"camvid:{root / 'data'}", "--model", "segnet_basic",
                                        "--size", "24x16", "--class-weights", "median", "--epochs", "1",
                                        "--out", str(root / "run")])
    return root / "run", results


def state_of(path):
    return {key: value.numpy() for key, value in minidl.load(path)["model"].items()}


def test_camvid_from_scratch_reports_the_papers_metrics(camvid_run, tmp_path):
    out, results = camvid_run
    metrics = json.loads((out / "metrics.json").read_text())
    # the papers' three figures: global accuracy, class average accuracy, mean IoU, at the labels' own
    # 40x30 (the headline) and at the 24x16 training size
    assert metrics["resolution"] == "native"
    for saved, returned in [("pixel_accuracy", "pixel_accuracy"), ("class_average_accuracy", "class_accuracy"),
                            ("mean_iou", "mean_iou")]:
        assert 0.0 <= metrics[saved] <= 1.0 and metrics[saved] == pytest.approx(results["native"][returned])
        assert metrics["at_training_size"][saved] == pytest.approx(results[returned])
    assert set(metrics["per_class"]) == set(CAMVID_CLASSES)
    config = metrics["config"]
    assert config["size"] == "24x16" and config["class_weights"] == "median" and config["recipe"] == "from scratch"
    assert "val_class_accuracy" in metrics["history"][0]
    # predict.py rebuilds the 24x16 pipeline from the checkpoint
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "photo.png")
    predict.main([str(tmp_path / "photo.png"), "--checkpoint", str(out / "checkpoint_last.npz")])
    assert Image.open(tmp_path / "photo_mask.png").size == (30, 20)


def test_old_school_trains_only_the_decoder(camvid_run, tmp_path):
    camvid = camvid_run[0] / "checkpoint_last.npz"
    train_segnet.main(TINY + ["--model", "oldschool_segnet", "--weights", str(camvid), "--size", "32",
                              "--epochs", "1", "--out", str(tmp_path)])
    checkpoint = minidl.load(tmp_path / "checkpoint_last.npz")
    config = json.loads(checkpoint["config"])
    assert config["model"] == "oldschool_segnet_basic" and config["recipe"] == "old school"  # the checkpoint's SegNet
    pretrained_config = json.loads(minidl.load(camvid)["config"])
    assert config["mean"] == pretrained_config["mean"]  # inputs normalised as the encoder was trained
    model, pretrained, trained = build_model(config["model"], 23), state_of(camvid), state_of(tmp_path / "checkpoint_last.npz")
    for own, theirs in model.backbone_keys.items():  # the frozen encoder: bit-identical, BatchNorm statistics too
        np.testing.assert_array_equal(trained[f"encoder.{own}"], pretrained[theirs], err_msg=own)
    assert any(key.startswith("decoder.") and key.endswith("running_mean") and trained[key].any() for key in trained)


def test_lazy_with_unfreeze_after_resumes_like_an_uninterrupted_run(camvid_run, tmp_path):
    camvid = camvid_run[0] / "checkpoint_last.npz"
    lazy = TINY + ["--model", "lazy_segnet", "--weights", str(camvid), "--size", "32", "--epochs", "2",
                   "--unfreeze-after", "1"]
    train_segnet.main(lazy + ["--out", str(tmp_path / "interrupted"), "--stop-after", "1"])
    pretrained, after_one = state_of(camvid), state_of(tmp_path / "interrupted" / "checkpoint_last.npz")
    assert after_one["classifier.weight"].shape == (23, 64, 1, 1)  # CamVid's 11 classes -> the scenes' 23
    for key, value in pretrained.items():  # epoch 1: only the new head trained
        if not key.startswith("classifier."):
            np.testing.assert_array_equal(after_one[key], value, err_msg=key)
    groups = minidl.load(tmp_path / "interrupted" / "checkpoint_last.npz")["optimizer"]["param_groups"]
    assert [len(g["params"]) for g in groups] == [2, len(pretrained) - 2 - 8 * 3]  # head; the rest minus BN buffers
    assert float(groups[1]["lr"]) == pytest.approx(0.1 * float(groups[0]["lr"]))

    train_segnet.main(lazy + ["--out", str(tmp_path / "resumed"),
                              "--resume", str(tmp_path / "interrupted" / "checkpoint_last.npz")])
    train_segnet.main(lazy + ["--out", str(tmp_path / "whole")])
    resumed, whole = state_of(tmp_path / "resumed" / "checkpoint_last.npz"), state_of(tmp_path / "whole" / "checkpoint_last.npz")
    assert not np.array_equal(resumed["encoders.0.0.0.weight"], pretrained["encoders.0.0.0.weight"])  # epoch 2: all train
    for key, value in whole.items():
        np.testing.assert_array_equal(resumed[key], value, err_msg=key)

    # the history says what trained and when: the head alone, then everything; wall time goes on across the resume
    history = json.loads((tmp_path / "resumed" / "metrics.json").read_text())["history"]
    assert [h["trainable_parameters"] for h in history] == [23 * 64 + 23, sum(v.size for k, v in whole.items()
                                                                              if not k.endswith(BN_BUFFERS))]
    assert 0 < history[0]["elapsed_seconds"] < history[1]["elapsed_seconds"]
    assert all(h["seconds_per_step"] > 0 for h in history)


BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def test_fine_tune_trains_every_layer_from_the_first_step_the_pretrained_ones_slower(camvid_run, tmp_path):
    camvid = camvid_run[0] / "checkpoint_last.npz"
    train_segnet.main(TINY + ["--model", "lazy_segnet", "--weights", str(camvid), "--no-freeze-encoder",
                              "--size", "32", "--epochs", "1", "--out", str(tmp_path)])
    checkpoint = minidl.load(tmp_path / "checkpoint_last.npz")
    assert json.loads(checkpoint["config"])["recipe"] == "fine-tune"
    pretrained, trained = state_of(camvid), state_of(tmp_path / "checkpoint_last.npz")
    assert trained["classifier.weight"].shape[0] == 23  # a new head for the scenes' classes
    changed = [key for key, value in pretrained.items() if not key.startswith("classifier.")
               and not key.endswith(BN_BUFFERS) and not np.array_equal(trained[key], value)]
    assert "encoders.0.0.0.weight" in changed and len(changed) == len(pretrained) - 2 - 8 * 3  # all of it trained
    groups = checkpoint["optimizer"]["param_groups"]
    assert float(groups[1]["lr"]) == pytest.approx(0.1 * float(groups[0]["lr"]))
    history = json.loads((tmp_path / "metrics.json").read_text())["history"]
    assert history[0]["trainable_parameters"] == sum(v.size for k, v in trained.items() if not k.endswith(BN_BUFFERS))


def test_compare_runs_tables_when_each_run_reached_the_first_ones_accuracy(tmp_path):
    import compare_runs
    # two tiny runs of the 1x1 control: the first (lr 0.01) sets the target, the second (lr 1e-5) stays below it
    runs = {"first": tmp_path / "first", "slow": tmp_path / "slow"}
    train_segnet.main(TINY + ["--size", "32", "--epochs", "3", "--model", "pixelwise", "--lr", "0.01",
                              "--out", str(runs["first"])])
    train_segnet.main(TINY + ["--size", "32", "--epochs", "2", "--model", "pixelwise", "--lr", "1e-5",
                              "--out", str(runs["slow"])])
    histories = {name: json.loads((folder / "metrics.json").read_text()) for name, folder in runs.items()}
    target = histories["first"]["pixel_accuracy"]
    text = compare_runs.main([f"{name}={folder}" for name, folder in runs.items()] + ["--out", str(tmp_path / "cmp")])
    assert f"reached {target:.1%} at" in text.splitlines()[0]
    outcomes = []
    for name, metrics in histories.items():
        line = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
        first = next((h for h in metrics["history"] if h["val_pixel_accuracy"] >= target), None)
        outcomes.append(first is not None)
        assert (f"epoch {first['epoch']}, " if first else f"not in {len(metrics['history'])} epochs (best") in line
        assert f"{metrics['pixel_accuracy']:.1%}" in line and f"| training size | {len(metrics['history'])} |" in line
    assert outcomes == [True, False]  # both branches of the table were checked
    assert Image.open(tmp_path / "cmp.png").size == (960, 320) and (tmp_path / "cmp.md").read_text() == text + "\n"
    unreachable = compare_runs.main([str(runs["first"]), "--target", "1.01", "--also", "0", "--out",
                                     str(tmp_path / "none")])
    assert "| reached 101.0% at | reached 0.0% at |" in unreachable
    assert "| not in 3 epochs (best" in unreachable and "| epoch 1, " in unreachable
    with pytest.raises(SystemExit, match="metrics.json"):
        compare_runs.main([str(tmp_path / "missing")])


def test_compare_runs_aims_at_the_first_runs_training_size_figure_and_names_the_resolution(tmp_path):
    import compare_runs
    history = [{"epoch": e, "val_pixel_accuracy": acc, "elapsed_seconds": 60.0 * e, "seconds_per_step": 1.0,
                "trainable_parameters": 10} for e, acc in [(1, 0.5), (2, 0.7)]]
    metrics = {"pixel_accuracy": 0.75, "mean_iou": 0.4, "class_average_accuracy": 0.6, "resolution": "native",
               "at_training_size": {"pixel_accuracy": 0.7}, "history": history, "config": {"model": "m"},
               "seconds": 130.0}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text(json.dumps(metrics))
    text = compare_runs.main([f"a={tmp_path / 'run'}", "--out", str(tmp_path / "cmp")])
    # the history is at the training size: its 70.0% is reached at epoch 2 (the native 75.0% never would be)
    assert "reached 70.0% at" in text and "| epoch 2, 2.0 min |" in text
    assert "| 75.0% | 0.400 | 60.0% | native | 2 | 2.2 |" in text


def save_as_pth(model, path):
    torch.save({key: torch.from_numpy(value.numpy().copy()) for key, value in model.state_dict().items()}, path)


@needs_torch
def test_torchvision_files_old_school_and_lazy(tmp_path):
    minidl.manual_seed(0)
    save_as_pth(resnet18(), tmp_path / "resnet18.pth")
    save_as_pth(lraspp_mobilenet_v3_large(num_classes=21), tmp_path / "lraspp.pth")
    train_segnet.main(TINY + ["--model", "oldschool_resnet18", "--weights", str(tmp_path / "resnet18.pth"),
                              "--size", "32", "--epochs", "1", "--out", str(tmp_path / "old")])
    config = json.loads(minidl.load(tmp_path / "old" / "checkpoint_last.npz")["config"])
    assert config["recipe"] == "old school"
    np.testing.assert_allclose(config["mean"], IMAGENET_MEAN)  # a bare state_dict: ImageNet's normalisation
    np.testing.assert_allclose(config["std"], IMAGENET_STD)
    train_segnet.main(TINY + ["--model", "lraspp_mobilenet_v3_large", "--weights", str(tmp_path / "lraspp.pth"),
                              "--size", "32", "--epochs", "1", "--out", str(tmp_path / "lazy")])
    trained = state_of(tmp_path / "lazy" / "checkpoint_last.npz")
    assert trained["classifier.low_classifier.weight"].shape[0] == trained["classifier.high_classifier.weight"].shape[0] == 23
    # --eval-only rebuilds the model and its normalisation from the checkpoint
    evaluated = train_segnet.main(TINY + ["--eval-only", "--checkpoint", str(tmp_path / "lazy" / "checkpoint_last.npz"),
                                          "--out", str(tmp_path / "eval")])
    final = json.loads((tmp_path / "lazy" / "metrics.json").read_text())
    assert evaluated["pixel_accuracy"] == final["pixel_accuracy"]  # same weights, split and normalisation
    assert evaluated["mean_iou"] == final["mean_iou"]


def test_help_explains_the_new_options_and_bad_values_are_named():
    text = subprocess.run([sys.executable, str(ROOT / "examples" / "train_segnet.py"), "--help"],
                          capture_output=True, text=True, check=True).stdout
    for option in ["--weights", "--freeze-encoder", "--no-freeze-encoder", "--unfreeze-after",
                   "--pretrained-lr-factor", "--class-weights", "WxH", "oldschool_resnet18", "lazy_segnet",
                   "lraspp_mobilenet_v3_large", "segnet_basic"]:
        assert option in text, option
    with pytest.raises(SystemExit):
        train_segnet.parse_args(["--size", "240by180"])
    with pytest.raises(SystemExit):
        train_segnet.parse_args(["--model", "segnet_small", "--freeze-encoder"])  # nothing pretrained to freeze
