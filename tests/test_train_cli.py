"""train_segnet.py's command line refuses what it would get wrong, and its training step reads as one screen.

Tiny runs (32 px synthetic scenes, one or two steps): each test covers one defect of the example's
command line (issue 19), its derived state and data pipeline (issue 17) or its training step (issue 23).
"""
import argparse
import inspect
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import minidl
from minidl.data import VOID
from minidl.nn import Conv2d, CrossEntropyLoss

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

import predict  # noqa: E402
import train_segnet  # noqa: E402
from data_setup import PreparedSplit  # noqa: E402
from tests.helpers import write_msrc  # noqa: E402

TINY = ["--size", "32", "--train-images", "8", "--val-images", "2", "--batch-size", "4", "--max-steps", "1",
        "--quiet"]


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A run of two epochs stopped after the first: its checkpoint_last.npz."""
    out = tmp_path_factory.mktemp("interrupted")
    train_segnet.main(TINY + ["--epochs", "2", "--stop-after", "1", "--out", str(out)])
    return out / "checkpoint_last.npz"


@pytest.fixture(scope="module")
def bare_state_dict(interrupted, tmp_path_factory):
    """The interrupted run's weights alone: a plain state_dict, as model.state_dict() saves it."""
    path = tmp_path_factory.mktemp("bare") / "weights.npz"
    minidl.save(minidl.load(interrupted)["model"], path)
    return path


# --------------------------------------------------------------------------- --resume
def test_resume_lists_every_setting_that_differs(interrupted, tmp_path):
    """The issue's case: --epochs 4 --lr 0.5 and another batch size used to be merged into the run silently."""
    with pytest.raises(SystemExit) as refused:
        train_segnet.main(TINY + ["--epochs", "4", "--lr", "0.5", "--batch-size", "2", "--out", str(tmp_path),
                                  "--resume", str(interrupted)])
    message = str(refused.value)
    for line in ["epochs: 2 in the checkpoint, 4 in this command", "lr: 0.003 in the checkpoint, 0.5 in this command",
                 "batch_size: 4 in the checkpoint, 2 in this command"]:
        assert line in message, message
    assert "resume with the run's own options" in message and "to train longer" in message
    assert not (tmp_path / "checkpoint_last.npz").exists()


@pytest.mark.parametrize("change, key", [
    (["--optimizer", "sgd"], "optimizer"), (["--weight-decay", "0.01"], "weight_decay"), (["--crop", "24"], "crop"),
    (["--no-flip"], "flip"), (["--seed", "1"], "seed"), (["--size", "48"], "size"), (["--model", "pixelwise"], "model"),
    (["--train-images", "12"], "train_images"), (["--max-steps", "2"], "max_steps"),
    (["--class-weights", "median"], "class_weights"), (["--random-scale", "0.8,1.2"], "random_scale"),
    (["--color-jitter", "0.2"], "color_jitter"),
])
def test_resume_refuses_each_setting_that_changes_training(interrupted, tmp_path, change, key):
    with pytest.raises(SystemExit, match=rf"\n  {key}: .* in the checkpoint, .* in this command\n"):
        train_segnet.main(TINY + ["--epochs", "2", "--out", str(tmp_path), "--resume", str(interrupted)] + change)


def test_resume_from_a_checkpoint_that_does_not_record_a_setting_is_refused(interrupted, tmp_path):
    state = minidl.load(interrupted)
    config = json.loads(state["config"])
    del config["epochs"]  # as a checkpoint of an older train_segnet.py
    minidl.save({**state, "config": json.dumps(config)}, tmp_path / "old.npz")
    with pytest.raises(SystemExit, match=r"epochs: not recorded in the checkpoint, 2 in this command"):
        train_segnet.main(TINY + ["--epochs", "2", "--out", str(tmp_path), "--resume", str(tmp_path / "old.npz")])


def test_resume_takes_settings_added_after_the_checkpoint_as_off(interrupted, tmp_path):
    state = minidl.load(interrupted)
    config = json.loads(state["config"])
    for key in train_segnet.SETTINGS_ADDED_LATER:
        del config[key]  # as a checkpoint written before these options existed
    minidl.save({**state, "config": json.dumps(config)}, tmp_path / "old.npz")
    with pytest.raises(SystemExit, match=r"\n  color_jitter: 0.0 in the checkpoint, 0.3 in this command\n"):
        train_segnet.main(TINY + ["--epochs", "2", "--out", str(tmp_path / "a"), "--resume", str(tmp_path / "old.npz"),
                                  "--color-jitter", "0.3"])
    train_segnet.main(TINY + ["--epochs", "2", "--out", str(tmp_path / "b"), "--resume", str(tmp_path / "old.npz")])
    assert len(json.loads((tmp_path / "b" / "metrics.json").read_text())["history"]) == 2


# --------------------------------------------------------------------------- bare state_dicts
def test_resume_from_a_bare_state_dict_says_what_it_needs(bare_state_dict, tmp_path):
    with pytest.raises(SystemExit, match=r"--resume .*weights.npz: a bare state_dict .* use --weights"):
        train_segnet.main(TINY + ["--epochs", "2", "--out", str(tmp_path), "--resume", str(bare_state_dict)])


def test_eval_only_evaluates_a_bare_state_dict_as_the_model_given(interrupted, bare_state_dict, tmp_path):
    evaluate = TINY + ["--eval-only"]
    whole = train_segnet.main(evaluate + ["--checkpoint", str(interrupted), "--out", str(tmp_path / "a")])
    bare = train_segnet.main(evaluate + ["--checkpoint", str(bare_state_dict), "--out", str(tmp_path / "b")])
    # same weights, same size, the same training-split normalisation (the run was from scratch)
    assert bare["pixel_accuracy"] == whole["pixel_accuracy"] and bare["mean_iou"] == whole["mean_iou"]
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["config"]["model"] == "unet_small"
    with pytest.raises(SystemExit, match=r"--checkpoint .*weights.npz does not fit pixelwise with 23 classes "
                                         r"\(name its network with --model\)"):
        train_segnet.main(evaluate + ["--model", "pixelwise", "--checkpoint", str(bare_state_dict),
                                      "--out", str(tmp_path / "c")])


def test_predict_refuses_a_bare_state_dict_with_what_to_use_instead(bare_state_dict, tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "photo.png")
    with pytest.raises(SystemExit, match=r"--checkpoint .*weights.npz: a bare state_dict .* --eval-only"):
        predict.main([str(tmp_path / "photo.png"), "--checkpoint", str(bare_state_dict)])


# --------------------------------------------------------------------------- nonsense options
@pytest.mark.parametrize("option, value, expected", [
    ("--batch-size", "0", "a positive integer"), ("--crop", "0", "a positive integer"),
    ("--epochs", "0", "a positive integer"), ("--epochs", "2.5", "a positive integer"),
    ("--lr", "0", "a positive number"), ("--lr", "nan", "a positive number"), ("--lr", "inf", "a positive number"),
    ("--weight-decay", "-1", "a number >= 0"), ("--pretrained-lr-factor", "nan", "a number >= 0"),
    ("--seed", "-1", "an integer >= 0"), ("--train-images", "0", "a positive integer"),
    ("--val-images", "0", "a positive integer"), ("--max-steps", "0", "a positive integer"),
    ("--stop-after", "0", "a positive integer"), ("--unfreeze-after", "0", "a positive integer"),
    ("--color-jitter", "1.5", "a number in [0, 1]"), ("--color-jitter", "nan", "a number in [0, 1]"),
    ("--random-scale", "1.2,0.8", "LOW,HIGH with 0 < LOW <= HIGH (e.g. 0.75,1.25)"),
    ("--random-scale", "0,1", "LOW,HIGH with 0 < LOW <= HIGH (e.g. 0.75,1.25)"),
    ("--random-scale", "1.2", "LOW,HIGH with 0 < LOW <= HIGH (e.g. 0.75,1.25)"),
    ("--random-scale", "a,b", "LOW,HIGH with 0 < LOW <= HIGH (e.g. 0.75,1.25)"),
])
def test_nonsense_values_are_argparse_errors_naming_the_option(option, value, expected, capsys):
    with pytest.raises(SystemExit) as stopped:
        train_segnet.parse_args([option, value])
    assert stopped.value.code == 2
    assert f"argument {option}: must be {expected}, got '{value}'" in capsys.readouterr().err


def test_a_batch_larger_than_the_training_split_is_refused(tmp_path):
    with pytest.raises(SystemExit, match=r"--batch-size 8 is larger than the training split \(4 images\)"):
        train_segnet.main(TINY + ["--train-images", "4", "--batch-size", "8", "--epochs", "1", "--out", str(tmp_path)])
    assert not list(tmp_path.iterdir())  # nothing trained, nothing written


# --------------------------------------------------------------------------- cropping
def test_msrc_default_crop_goes_with_its_default_size_and_can_be_turned_off(tmp_path):
    (tmp_path / "Images").mkdir()
    (tmp_path / "GroundTruth").mkdir()
    data = ["--data", str(tmp_path)]
    assert train_segnet.parse_args(data).crop == 128  # MSRC's recipe: 128-pixel windows of 144-pixel images
    assert train_segnet.parse_args(data + ["--size", "144"]).crop == 128
    assert train_segnet.parse_args(data + ["--size", "32"]).crop is None  # no complaint about a --crop never given
    assert train_segnet.parse_args(data + ["--no-crop"]).crop is None
    assert train_segnet.parse_args(data + ["--size", "32", "--crop", "16"]).crop == 16
    with pytest.raises(SystemExit):
        train_segnet.parse_args(data + ["--crop", "16", "--no-crop"])
    with pytest.raises(SystemExit):
        train_segnet.parse_args(data + ["--size", "32", "--crop", "48"])


def test_msrc_trains_at_a_small_size_on_whole_images(tmp_path, capsys):
    root = write_msrc(tmp_path / "msrc", np.random.default_rng(0))
    train_segnet.main(["--data", str(root), "--size", "32", "--model", "pixelwise", "--batch-size", "2",
                       "--epochs", "1", "--max-steps", "1", "--quiet", "--out", str(tmp_path / "run")])
    assert "crops" not in capsys.readouterr().out
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["config"]["crop"] is None


def test_help_states_the_resume_policy_and_the_crop_switch(capsys):
    with pytest.raises(SystemExit):
        train_segnet.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ["--no-crop", "at its default --size 144", "a change is refused, listing what differs",
                   "at most the training split's size", "a bare state_dict of the --model network"]:
        assert phrase in text, phrase


# --------------------------------------------------------------------------- derived state, data pipeline
def test_main_keeps_derived_state_out_of_args(monkeypatch, tmp_path):
    seen = {}
    parse = train_segnet.parse_args

    def keep(argv):
        seen["args"] = parse(argv)
        return seen["args"]

    monkeypatch.setattr(train_segnet, "parse_args", keep)
    train_segnet.main(TINY + ["--epochs", "1", "--class-weights", "median", "--out", str(tmp_path)])
    names = set(vars(seen["args"]))
    assert not names & {"kind", "rank", "world", "recipe", "class_weight_array", "loss_weight"}, names
    assert not any(isinstance(value, (np.ndarray, minidl.Tensor)) for value in vars(seen["args"]).values())


def as_the_example_drew_them(split, batch_size, seed, epoch, crop, flip):
    """The batches of the example's own loop before it used minidl.data: one generator per epoch drew the
    order, then each batch's crop offsets (all tops, all lefts) and flips; ragged last batch dropped."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(split))
    for start in range(0, len(order) - batch_size + 1, batch_size):
        images, masks = split.images[order[start:start + batch_size]], split.masks[order[start:start + batch_size]]
        if crop:
            tops = rng.integers(0, images.shape[-2] - crop + 1, len(images))
            lefts = rng.integers(0, images.shape[-1] - crop + 1, len(images))
            images = np.stack([im[:, t:t + crop, l:l + crop] for im, t, l in zip(images, tops, lefts)])
            masks = np.stack([m[t:t + crop, l:l + crop] for m, t, l in zip(masks, tops, lefts)])
        if flip:
            chosen = rng.random(len(images)) < 0.5
            images, masks = images.copy(), masks.copy()
            images[chosen] = images[chosen, :, :, ::-1]
            masks[chosen] = masks[chosen, :, ::-1]
        yield images, masks


@pytest.mark.parametrize("crop, flip", [(None, True), (6, True), (6, False), (None, False)])
def test_the_dataloader_and_transforms_give_the_batches_the_example_drew_before(crop, flip):
    """minidl.data's DataLoader and transforms, sharing one generator, keep the recipe's random draws: the
    default run's numbers do not move."""
    rng = np.random.default_rng(1)
    split = PreparedSplit(rng.standard_normal((11, 3, 8, 10)).astype(np.float32), rng.integers(-1, 5, (11, 8, 10)),
                          ("a",) * 5, np.zeros((5, 3), np.uint8), np.zeros(3), np.ones(3), "train")
    args = argparse.Namespace(seed=3, batch_size=4, crop=crop, no_flip=not flip, random_scale=None, color_jitter=0.0)
    for epoch in range(2):
        ours = list(train_segnet.training_batches(split, args, epoch))
        theirs = list(as_the_example_drew_them(split, 4, 3, epoch, crop, flip))
        assert len(ours) == len(theirs) == 2
        for (images, masks), (expected_images, expected_masks) in zip(ours, theirs):
            np.testing.assert_array_equal(images, expected_images)
            np.testing.assert_array_equal(masks, expected_masks)


def test_random_scale_and_colour_jitter_reach_the_batches_and_leave_the_masks_aligned():
    rng = np.random.default_rng(2)
    mean, std = np.array([0.4, 0.5, 0.6], np.float32), np.array([0.2, 0.3, 0.25], np.float32)
    unit = rng.random((8, 3, 12, 12)).astype(np.float32)
    split = PreparedSplit((unit - mean[:, None, None]) / std[:, None, None], rng.integers(0, 5, (8, 12, 12)),
                          ("a",) * 5, np.zeros((5, 3), np.uint8), mean, std, "train")
    plain = argparse.Namespace(seed=0, batch_size=4, crop=8, no_flip=True, random_scale=None, color_jitter=0.0,
                               size=12)
    zoomed = argparse.Namespace(**{**vars(plain), "random_scale": (0.5, 0.5)})
    jittered = argparse.Namespace(**{**vars(plain), "color_jitter": 0.5})
    for images, masks in train_segnet.training_batches(split, zoomed, 0):
        # 12 px at half size is 6 px, padded to the 8-px window: void around, and the image's fill there
        assert images.shape == (4, 3, 8, 8) and ((masks >= 0).sum(axis=(1, 2)) == 36).all()
        assert (images.transpose(0, 2, 3, 1)[masks == VOID] == 0).all()
    # the first batches share their draws up to the colour factors (later ones draw after them)
    images, masks = next(train_segnet.training_batches(split, plain, 0))
    same_images, same_masks = next(train_segnet.training_batches(split, jittered, 0))
    np.testing.assert_array_equal(masks, same_masks)  # colour moves no pixel
    assert not np.allclose(images, same_images)
    back = same_images * std[:, None, None] + mean[:, None, None]  # normalised as the split was
    assert back.min() >= -1e-5 and back.max() <= 1 + 1e-5


def test_the_run_says_and_records_its_augmentation(tmp_path, capsys):
    train_segnet.main(TINY + ["--epochs", "1", "--random-scale", "0.75,1.25", "--color-jitter", "0.2",
                              "--out", str(tmp_path)])
    assert "zoomed x0.75-1.25, colour jitter 0.2)" in capsys.readouterr().out
    config = json.loads((tmp_path / "metrics.json").read_text())["config"]
    assert config["random_scale"] == [0.75, 1.25] and config["color_jitter"] == 0.2


# --------------------------------------------------------------------------- the training step
class RecordingOptimizer:
    """Keeps the gradients of its step instead of moving the parameters."""

    def __init__(self, params):
        self.params, self.gradients = list(params), None

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        self.gradients = [p.grad.numpy().copy() for p in self.params]


def test_train_step_is_one_plain_step_that_skips_void_pixels():
    assert list(inspect.signature(train_segnet.train_step).parameters)[:4] == ["model", "images", "masks", "optimizer"]
    rng = np.random.default_rng(0)
    model = Conv2d(3, 4, 1)
    images = minidl.tensor(rng.standard_normal((2, 3, 5, 5)).astype(np.float32))
    masks = rng.integers(0, 4, (2, 5, 5))
    masks[0, :3] = VOID
    optimizer = RecordingOptimizer(model.parameters())
    logits, loss = train_segnet.train_step(model, images, minidl.tensor(masks), optimizer, train_segnet.Run("synthetic", "cpu").criterion)
    labelled = masks != VOID
    out = logits.detach().numpy()
    log_p = out - np.log(np.exp(out).sum(1, keepdims=True))
    expected = -np.take_along_axis(log_p, np.where(labelled, masks, 0)[:, None], 1)[:, 0][labelled].mean()
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert optimizer.gradients is not None and all(np.isfinite(g).all() for g in optimizer.gradients)


def test_the_void_label_is_minidl_datas_named_constant():
    assert train_segnet.Run("synthetic", "cpu").criterion.ignore_index == VOID == -1
    source = inspect.getsource(train_segnet)
    assert "ignore_index=VOID" in source and "ignore_index=-1" not in source and "masks >= 0" not in source
    assert "-100" in minidl.data.__doc__  # why -1 and not PyTorch's default, said once


@pytest.mark.parametrize("weighted", [False, True])
def test_the_ranks_shares_average_to_the_whole_batchs_gradient(weighted):
    """The MPI arithmetic of the wrapper: two ranks' gradients, averaged as DDP does, are the one-process
    gradient, although their shares hold different numbers of labelled pixels."""
    rng = np.random.default_rng(0)
    model = Conv2d(3, 4, 1)
    images = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    masks = rng.integers(0, 4, (4, 5, 5))
    masks[0] = VOID  # rank 0's share (items 0 and 2) has far fewer labelled pixels
    masks[2, :2] = VOID
    weights = np.array([0.5, 1.0, 2.0, 4.0], np.float32) if weighted else None
    criterion = CrossEntropyLoss(weight=None if weights is None else minidl.tensor(weights), ignore_index=VOID)

    def gradients(rank, world):
        optimizer = RecordingOptimizer(model.parameters())
        run = train_segnet.Run("synthetic", "cpu", rank=rank, world=world, class_weights=weights, criterion=criterion)
        train_segnet.train_step_on_share(model, images, masks, optimizer, run)
        return optimizer.gradients

    whole = gradients(0, 1)
    shares = [gradients(rank, 2) for rank in range(2)]
    for together, one, two in zip(whole, *shares):
        np.testing.assert_allclose((one + two) / 2, together, rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------- documentation
def test_example_docstrings_use_a_placeholder_not_a_path_of_this_machine():
    for path in (ROOT / "examples").glob("*.py"):
        assert "shared/data" not in path.read_text(), path.name
    assert "--data PATH/TO/MSRC_v2" in train_segnet.__doc__


def test_sqrt_median_class_weights_are_the_square_roots_of_the_median_ones(capsys):
    masks = np.array([[[0, 0, 0, 1]], [[0, 0, 2, VOID]]])
    split = PreparedSplit(np.zeros((2, 3, 1, 4), np.float32), masks, ("a", "b", "c"), np.zeros((3, 3), np.uint8),
                          np.zeros(3), np.ones(3), "train")
    median, milder = (train_segnet.Run("synthetic", "cpu") for _ in range(2))
    train_segnet.set_class_weights(median, split, 3, "median")
    train_segnet.set_class_weights(milder, split, 3, "sqrt_median")
    # freq: a 5/8, b 1/4, c 1/4; median 1/4 -> weights 0.4, 1, 1
    np.testing.assert_allclose(median.class_weights, [0.4, 1, 1], rtol=1e-6)
    np.testing.assert_allclose(milder.class_weights, np.sqrt([0.4, 1, 1]), rtol=1e-6)
    np.testing.assert_allclose(milder.criterion.weight.numpy(), milder.class_weights)
    assert "sqrt median frequency class weights: a 0.63, b 1.00, c 1.00" in capsys.readouterr().out


def test_camvid_balances_its_classes_by_default_and_the_others_do_not(tmp_path):
    (tmp_path / "camvid" / "trainannot").mkdir(parents=True)
    (tmp_path / "msrc" / "Images").mkdir(parents=True)
    (tmp_path / "msrc" / "GroundTruth").mkdir()
    assert train_segnet.parse_args(["--data", str(tmp_path / "camvid")]).class_weights == "sqrt_median"
    assert train_segnet.parse_args(["--data", str(tmp_path / "camvid"), "--class-weights", "none"]).class_weights == "none"
    assert train_segnet.parse_args(["--data", str(tmp_path / "msrc")]).class_weights == "none"
    assert train_segnet.parse_args([]).class_weights == "none"
