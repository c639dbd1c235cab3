"""Train a segmentation network with minidl.

    python examples/train_segnet.py                                # embedded synthetic scenes, no download
    python examples/train_segnet.py --data ../shared/data/msrc_v2  # MSRC-v2 in its own layout
    python examples/train_segnet.py --eval-only --checkpoint runs/synthetic/checkpoint_best.npz --split val
    mpiexec -n 2 python examples/train_segnet.py --distributed     # data-parallel on 2 processes (needs mpi4py)
    python examples/train_segnet.py --data ../shared/data/camvid --size 240x180 --model segnet_basic --class-weights median

Transfer learning (examples/model_setup.py): --weights FILE starts from pretrained weights.
    --model oldschool_resnet18 --weights resnet18-f37072fd.pth             # old school: pretrained encoder, new decoder
    --model lazy_segnet --weights runs/camvid/checkpoint_best.npz          # lazy: new output layer for our classes
The pretrained part is frozen (--freeze-encoder, the default with --weights) until
--unfreeze-after EPOCHS; whenever it trains (also with --no-freeze-encoder) its learning rate is
lr * --pretrained-lr-factor.

Writes into --out: metrics.json (final held-out pixel accuracy, mean IoU,
per-class figures, per-epoch history), curves.png, predictions.png,
checkpoint_last.npz and checkpoint_best.npz. --resume continues a run from a
checkpoint and ends where the uninterrupted run would have.

Reading order for a student: main() -> train_one_epoch() -> the model's
forward (minidl/models) -> the layers (minidl/nn) -> the ops and their
backward (minidl/nn/functional, minidl/ops) -> the engine (minidl/autograd).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import minidl  # noqa: E402
import minidl.distributed as dist  # noqa: E402  (--distributed; needs mpi4py only then)
import minidl.nn.functional as F  # noqa: E402
from minidl import optim  # noqa: E402
import model_setup  # noqa: E402  (examples/model_setup.py: --model, --weights, freezing)
from data_setup import datasets_for, describe_data, parse_size, size_hw  # noqa: E402  (examples/data_setup.py)
from minidl.data import median_frequency_weights  # noqa: E402
from minidl.metrics import SegmentationMetrics  # noqa: E402
from minidl.models import build_model  # noqa: E402
from minidl.models.transfer import OldSchool  # noqa: E402
from minidl.nn import SyncBatchNorm, trainable_parameter_count  # noqa: E402
from minidl.nn.parallel import DistributedDataParallel  # noqa: E402
from minidl.serialization import load, save  # noqa: E402
from minidl.visualize import plot_curves, prediction_grid, to_uint8_image  # noqa: E402

# Good defaults per dataset: what trains well within the stated budget on a 2-core CPU.
DEFAULTS = {
    "synthetic": dict(model="unet_small", epochs=19, batch_size=8, lr=3e-3, optimizer="adam", size=64, weight_decay=1e-4),
    "msrc": dict(model="segnet_small", epochs=48, batch_size=8, lr=1e-3, optimizer="adam", size=144, crop=128,
                 weight_decay=1e-4),
    # CamVid on a CPU: half of 480x360 in each direction would take over an hour here; 160x120 fits
    "camvid": dict(model="segnet_small", epochs=20, batch_size=8, lr=1e-3, optimizer="adam", size="160x120",
                   weight_decay=1e-4),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Train (or evaluate) a minidl segmentation network.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data", default="synthetic",
                        help="'synthetic' (embedded, generated in memory), the path of an MSRC-v2 folder "
                             "(Images/, GroundTruth/, train.txt, val.txt) or of a CamVid folder (train/, trainannot/, "
                             "val/, valannot/; or say camvid:PATH / msrc:PATH)")
    parser.add_argument("--model", choices=model_setup.MODEL_CHOICES, metavar="MODEL",
                        help="network to train (default: per dataset); one of " + ", ".join(model_setup.MODEL_CHOICES)
                             + ". pixelwise = 1x1 convs only, the no-context control; segnet_basic = the SegNet "
                             "authors' CamVid net; oldschool_<backbone> = a (pretrained, see --weights) backbone's "
                             "encoder with a new decoder; lazy_segnet = the SegNet variant held by the --weights "
                             "checkpoint, with a new output layer; lraspp_mobilenet_v3_large = torchvision's "
                             "LR-ASPP (lazy with its --weights file)")
    parser.add_argument("--weights", metavar="FILE",
                        help="start from pretrained weights: a train_segnet.py checkpoint_*.npz (its inputs are "
                             "normalised as it was trained) or a torchvision .pth / bare state_dict (ImageNet "
                             "mean/std applied). oldschool_* models load their encoder from it (the backbone's "
                             "file); others load the whole network and replace the output layer(s) if its classes "
                             "differ (the lazy recipe)")
    parser.add_argument("--freeze-encoder", action=argparse.BooleanOptionalAction, default=None,
                        help="train only what the recipe adds (old school: the decoder; lazy: the new output layers), "
                             "with the pretrained part's BatchNorm kept in eval mode (default: on with --weights)")
    parser.add_argument("--unfreeze-after", type=int, metavar="EPOCHS",
                        help="with --freeze-encoder: after this many epochs train everything, the pretrained part "
                             "with lr * --pretrained-lr-factor")
    parser.add_argument("--pretrained-lr-factor", type=float, default=0.1,
                        help="with --weights: the pretrained part's learning rate is lr times this")
    parser.add_argument("--class-weights", choices=["none", "median"], default="none",
                        help="median: weight the loss by median frequency balancing of the training split's "
                             "classes (as SegNet on CamVid), so rare classes count more")
    parser.add_argument("--epochs", type=int, help="passes over the training split")
    parser.add_argument("--batch-size", type=int, help="images per step")
    parser.add_argument("--lr", type=float, help="learning rate (cosine-decayed to 0 over the run)")
    parser.add_argument("--optimizer", choices=["sgd", "adam"], help="sgd uses momentum 0.9")
    parser.add_argument("--weight-decay", type=float, help="L2 penalty (decoupled for adam: AdamW)")
    parser.add_argument("--size", type=parse_size, help="images are resized to size x size, or to WxH "
                                                        "(e.g. 240x180: CamVid's 480x360 halved)")
    parser.add_argument("--crop", type=int, help="train on random crop x crop windows of the resized images "
                                                 "(scale augmentation; evaluation uses whole images)")
    parser.add_argument("--train-images", type=int, default=400, help="synthetic only: training scenes")
    parser.add_argument("--val-images", type=int, default=64, help="synthetic only: held-out scenes")
    parser.add_argument("--no-flip", action="store_true", help="disable random horizontal flips")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (needs CuPy)")
    parser.add_argument("--seed", type=int, default=0, help="seeds data order, augmentation and weights")
    parser.add_argument("--out", help="output folder (default: runs/<dataset>)")
    parser.add_argument("--resume", metavar="CHECKPOINT", help="continue training from checkpoint_last.npz")
    parser.add_argument("--eval-only", action="store_true", help="only evaluate --checkpoint on --split")
    parser.add_argument("--checkpoint", help="checkpoint to evaluate with --eval-only")
    parser.add_argument("--split", default="val", help="split to evaluate with --eval-only (val or test)")
    parser.add_argument("--max-steps", type=int, help="stop each epoch after this many steps (for smoke tests)")
    parser.add_argument("--stop-after", type=int, help="stop after this many epochs, as if interrupted (resume later)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, only the per-epoch lines")
    parser.add_argument("--distributed", action="store_true",
                        help="run as one rank of `mpiexec -n W ...`: each rank takes batch-size / W images of every "
                             "step; rank 0 prints and writes the outputs")
    args = parser.parse_args(argv)
    kind = describe_data(args.data)["kind"]
    for key, value in DEFAULTS[kind].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.crop is not None and args.crop > min(size_hw(args.size)):
        parser.error(f"--crop {args.crop} is larger than --size {args.size}")
    if args.freeze_encoder is None:
        args.freeze_encoder = args.weights is not None
    if args.freeze_encoder and args.weights is None and not args.model.startswith("oldschool_"):
        parser.error("--freeze-encoder needs --weights (or an oldschool_* model): there is no pretrained part to freeze")
    if args.unfreeze_after is not None and not args.freeze_encoder:
        parser.error("--unfreeze-after needs --freeze-encoder")
    args.kind = kind
    args.out = Path(args.out or Path("runs") / kind)
    args.rank, args.world = 0, 1  # one process; start_distributed() changes them under mpiexec
    return args


# --------------------------------------------------------------------------- --distributed
# `mpiexec -n W python examples/train_segnet.py --distributed` runs W copies of this script.
# All draw the same shuffled batches of --batch-size images (same seeds); each trains on
# its share of every batch -- items rank, rank + W, ... (DistributedSampler's split) --
# and DistributedDataParallel averages the gradients, so the run follows the
# one-process run (SyncBatchNorm makes BatchNorm see the whole batch too). Evaluation
# splits each batch the same way and sums the confusion matrices. Rank 0 prints and writes.
def start_distributed(args):
    dist.init_process_group()
    args.rank, args.world = dist.get_rank(), dist.get_world_size()
    if args.batch_size % args.world:
        raise SystemExit(f"--batch-size {args.batch_size} must be a multiple of the {args.world} ranks")
    if args.device == "cuda":  # one GPU per rank of this machine, shared round-robin if there are fewer
        gpus = minidl.backend.cupy_module().cuda.runtime.getDeviceCount()
        args.device = f"cuda:{dist.get_local_rank() % gpus}"
    if args.rank != 0:
        args.quiet = True
        sys.stdout = open(os.devnull, "w")  # only rank 0 prints (errors still reach stderr)


def sum_over_ranks(*numbers):
    """The sums of ``numbers`` over all ranks (the numbers themselves in one process)."""
    if not dist.is_initialized():
        return numbers
    totals = np.array(numbers, dtype=np.float64)
    dist.all_reduce(totals)
    return tuple(totals.tolist())


# --------------------------------------------------------------------------- progress
class Progress:
    """A progress bar with loss, accuracy, images/s and time left: tqdm when installed, else plain lines."""

    def __init__(self, total, description, quiet=False):
        self.total, self.description, self.quiet = total, description, quiet
        self.start = time.perf_counter()
        self.bar = None
        if not quiet:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc=description, unit="step", leave=False, dynamic_ncols=True)
            except ImportError:
                pass

    def update(self, step, images, **figures):
        elapsed = time.perf_counter() - self.start
        rate = images / elapsed if elapsed else 0.0
        left = elapsed / step * (self.total - step)
        text = " ".join(f"{k}={v:.3f}" for k, v in figures.items()) + f" img/s={rate:.1f}"
        if self.bar is not None:
            self.bar.set_postfix_str(text)
            self.bar.update(1)
        elif not self.quiet and (step == self.total or step % max(1, self.total // 5) == 0):
            print(f"  {self.description} {step}/{self.total} {text} left={left:.0f}s", flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
        return time.perf_counter() - self.start


# --------------------------------------------------------------------------- training and evaluation
def augment(images, masks, rng, flip, crop=None):
    """Random crops and horizontal flips, applied to image and mask with the same offsets (so they stay aligned).

    images (N, 3, H, W), masks (N, H, W) -> (N, 3, crop, crop), (N, crop, crop). Cropping a
    slightly larger resized image is a cheap scale augmentation: objects appear at
    shifted positions and the net never sees the same framing twice.
    """
    if crop is not None and (crop, crop) != images.shape[-2:]:
        top = rng.integers(0, images.shape[-2] - crop + 1, len(images))
        left = rng.integers(0, images.shape[-1] - crop + 1, len(images))
        images = np.stack([im[:, t : t + crop, l : l + crop] for im, t, l in zip(images, top, left)])
        masks = np.stack([m[t : t + crop, l : l + crop] for m, t, l in zip(masks, top, left)])
    if flip:
        chosen = rng.random(len(images)) < 0.5
        images, masks = images.copy(), masks.copy()
        images[chosen] = images[chosen, :, :, ::-1]
        masks[chosen] = masks[chosen, :, ::-1]
    return images, masks


def batches(dataset, batch_size, rng=None):
    """Yield (images (N,3,H,W) float32, masks (N,H,W) int64) NumPy batches; shuffled when ``rng`` is given."""
    order = rng.permutation(len(dataset)) if rng is not None else np.arange(len(dataset))
    for start in range(0, len(order), batch_size):
        chosen = order[start : start + batch_size]
        if rng is not None and len(chosen) < batch_size and start:  # drop the ragged last training batch
            return
        yield dataset.images[chosen], dataset.masks[chosen]


def count_labelled(masks, class_weights=None):
    """What a "mean" cross entropy divides by: the labelled pixels, or the sum of their class weights."""
    labels = masks[masks >= 0]
    return int(labels.size) if class_weights is None else float(class_weights[labels].sum())


def train_one_epoch(model, dataset, optimizer, args, epoch):
    model.train()
    rng = np.random.default_rng([args.seed, epoch])  # per-epoch seed: a resumed run repeats this epoch exactly
    minidl.manual_seed(args.seed * 1000 + epoch)
    steps = len(dataset) // args.batch_size
    if args.max_steps:
        steps = min(steps, args.max_steps)
    progress = Progress(steps, f"epoch {epoch + 1}/{args.epochs}", args.quiet)
    total_loss = correct = counted = images_seen = 0
    for step, (images, masks) in enumerate(batches(dataset, args.batch_size, rng), start=1):
        if step > steps:
            break
        images, masks = augment(images, masks, rng, not args.no_flip, args.crop)
        labelled = count_labelled(masks, args.class_weight_array)  # in the whole batch, before it is shared out
        images, masks = images[args.rank :: args.world], masks[args.rank :: args.world]  # this rank's share
        x = minidl.tensor(images, device=args.device)
        y = minidl.tensor(masks, device=args.device)
        logits = model_setup.segmentation_logits(model(x))
        if args.world > 1:  # the mean over the whole batch's labelled pixels (ranks' shares hold different
            # numbers of them): DDP averages W such gradients, so scale this rank's sum by W / labelled
            loss = F.cross_entropy(logits, y, weight=args.loss_weight, ignore_index=-1, reduction="sum") \
                * (args.world / max(labelled, 1))
        else:
            loss = F.cross_entropy(logits, y, weight=args.loss_weight, ignore_index=-1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

        predictions = logits.argmax(1)
        valid = y >= 0
        correct += int(((predictions == y) & valid).sum().item())
        counted += int(valid.sum().item())
        total_loss += loss.item() * len(images)
        images_seen += len(images)
        progress.update(step, images_seen, loss=total_loss / images_seen, acc=correct / max(counted, 1))
    seconds = progress.close()
    total_loss, correct, counted, images_seen = sum_over_ranks(total_loss, correct, counted, images_seen)
    return {"train_loss": total_loss / max(images_seen, 1), "train_accuracy": correct / max(counted, 1),
            "train_seconds": seconds, "seconds_per_step": seconds / max(steps, 1),
            "images_per_second": images_seen / seconds}


@minidl.no_grad()
def evaluate(model, dataset, args, num_classes):
    """Metrics over a whole split (confusion matrix accumulated over every batch), and the mean loss."""
    model.eval()
    metrics = SegmentationMetrics(num_classes)
    total_loss = 0.0
    for images, masks in batches(dataset, args.batch_size):
        images, masks = images[args.rank :: args.world], masks[args.rank :: args.world]  # this rank's share
        if not len(images):  # a short last batch may leave this rank nothing
            continue
        logits = model_setup.segmentation_logits(model(minidl.tensor(images, device=args.device)))
        y = minidl.tensor(masks, device=args.device)
        if (masks >= 0).any():
            total_loss += F.cross_entropy(logits, y, ignore_index=-1, reduction="sum").item()
        metrics.update(logits.argmax(1).cpu().numpy(), masks)
    if args.world > 1:  # the whole split's counts: every rank's confusion matrix and loss summed
        dist.all_reduce(metrics.confusion)
        (total_loss,) = sum_over_ranks(total_loss)
    results = metrics.as_dict()
    results["loss"] = total_loss / max(int((dataset.masks >= 0).sum()), 1)
    return results


@minidl.no_grad()
def save_predictions(model, dataset, args, path, count=4):
    model.eval()
    images, masks = dataset.images[:count], dataset.masks[:count]
    predictions = model_setup.segmentation_logits(model(minidl.tensor(images, device=args.device))).argmax(1).cpu().numpy()
    pictures = [to_uint8_image(image, dataset.mean, dataset.std) for image in images]
    prediction_grid(pictures, list(masks), list(predictions), dataset.class_names, dataset.palette, path)


# --------------------------------------------------------------------------- checkpoints
def make_optimizer(model, args):
    """AdamW or SGD; with pretrained weights two parameter groups, the pretrained one at lr * --pretrained-lr-factor."""
    params = model.parameters()
    if args.recipe != "from scratch":
        params = model_setup.parameter_groups(model, args.lr, args.lr * args.pretrained_lr_factor)
    if args.optimizer == "adam":
        return optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    return optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=args.weight_decay)


def apply_freezing(model, args, epoch, frozen):
    """--freeze-encoder: the pretrained part is frozen until epoch --unfreeze-after. Returns the new state
    (None without --freeze-encoder), printing when it changes. Decided by the epoch alone, so resume agrees."""
    if not args.freeze_encoder:
        return None
    now = args.unfreeze_after is None or epoch < args.unfreeze_after
    if now != frozen:
        model_setup.set_frozen(model, now)
        trainable = trainable_parameter_count(model)
        print(f"epoch {epoch + 1}: pretrained part {'frozen' if now else 'unfrozen'}, {trainable:,} parameters train",
              flush=True)
    return now


def config_of(args, train_set):
    """What predict.py and --eval-only need to rebuild the model and its input pipeline."""
    return {"model": args.model, "num_classes": len(train_set.class_names), "size": args.size,
            "data": str(args.data), "kind": args.kind, "recipe": args.recipe, "weights": args.weights,
            "freeze_encoder": args.freeze_encoder, "unfreeze_after": args.unfreeze_after,
            "class_weights": args.class_weights, "mean": list(map(float, train_set.mean)),
            "std": list(map(float, train_set.std)), "class_names": list(train_set.class_names),
            "palette": np.asarray(train_set.palette).tolist()}


# What must be the same for --resume to continue the interrupted run (and not silently start another).
RESUME_KEYS = ("model", "data", "size", "recipe", "weights", "freeze_encoder", "unfreeze_after", "class_weights",
               "mean", "std")


def check_resume_matches(path, saved, current):
    """Stop with a message naming the first setting where the checkpoint and this command differ."""
    for key in RESUME_KEYS:
        if saved.get(key) != current.get(key):
            raise SystemExit(f"--resume {path}: the checkpoint was trained with {key} = {saved.get(key)!r}, this "
                             f"command gives {current.get(key)!r}; resume with the interrupted run's own options")


def save_checkpoint(path, model, optimizer, scheduler, epoch, history, config):
    save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
          "epoch": epoch, "history": json.dumps(history), "config": json.dumps(config)}, path)


def main(argv=None):
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    minidl.manual_seed(args.seed)
    if args.distributed:
        start_distributed(args)
    if args.eval_only:
        return run_evaluation_only(args)

    started = time.perf_counter()
    pretrained = model_setup.read_weights(args.weights) if args.weights else None
    args.model = model_setup.resolve_model_name(args.model, pretrained)
    train_set, val_set = datasets_for(args, normalisation=pretrained.normalisation() if pretrained else None)
    num_classes = len(train_set.class_names)
    model, args.recipe = model_setup.build(args.model, num_classes, pretrained)
    model.to(args.device)
    if pretrained:
        print(f"{args.recipe}: weights from {pretrained.describe()}", flush=True)
    elif isinstance(model, OldSchool):
        print(f"{args.model} without --weights: its encoder starts from random weights", flush=True)
    args.class_weight_array = args.loss_weight = None
    if args.class_weights == "median":  # rare classes weigh more in the loss (SegNet's CamVid recipe)
        args.class_weight_array = median_frequency_weights(train_set.masks, num_classes)
        args.loss_weight = minidl.tensor(args.class_weight_array, device=args.device)
        print("median frequency class weights: " + ", ".join(
            f"{name} {w:.2f}" for name, w in zip(train_set.class_names, args.class_weight_array)), flush=True)
    trained = model  # what the training steps call
    if args.distributed:  # BatchNorm statistics over all ranks' images; gradients averaged in backward
        model = SyncBatchNorm.convert_sync_batchnorm(model)  # same parameter names: checkpoints unchanged
        trained = DistributedDataParallel(model)
    optimizer = make_optimizer(model, args)
    scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    history, first_epoch, best, frozen = [], 0, -1.0, None
    earlier_seconds = 0.0  # wall time of the epochs a resumed run already has
    if args.resume:
        state = load(args.resume)
        check_resume_matches(args.resume, json.loads(state["config"]), config_of(args, train_set))
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history = json.loads(state["history"])
        first_epoch = int(state["epoch"]) + 1
        best = max((h["val_pixel_accuracy"] for h in history), default=-1.0)
        earlier_seconds = history[-1].get("elapsed_seconds", 0.0) if history else 0.0
        print(f"resumed from {args.resume} after epoch {first_epoch}")
    parameters = sum(p.numel() for p in model.parameters())
    height, width = size_hw(args.size)
    print(f"{args.model}: {parameters:,} parameters | data: {describe_data(args.data)['name']} "
          f"({len(train_set)} train, {len(val_set)} val, {width}x{height}"
          f"{f', random {args.crop}x{args.crop} crops' if args.crop else ''}) | {args.optimizer} lr={args.lr} "
          f"| {args.epochs} epochs of batch {args.batch_size} on {args.device}"
          + (f" ({args.world} ranks of {args.batch_size // args.world} images)" if args.distributed else ""), flush=True)

    config = config_of(args, train_set)
    for epoch in range(first_epoch, args.epochs):
        was_frozen, frozen = frozen, apply_freezing(model, args, epoch, frozen)
        if args.distributed and frozen != was_frozen:  # DDP reduces the gradients of the parameters that train
            trained = DistributedDataParallel(model)
        figures = train_one_epoch(trained, train_set, optimizer, args, epoch)
        scheduler.step()
        val = evaluate(model, val_set, args, num_classes)
        figures.update(epoch=epoch + 1, val_loss=val["loss"], val_pixel_accuracy=val["pixel_accuracy"],
                       val_class_accuracy=val["class_accuracy"], val_mean_iou=val["mean_iou"],
                       lr=optimizer.param_groups[0]["lr"],
                       trainable_parameters=trainable_parameter_count(model),
                       # wall time since the run started, evaluation included: "minutes to reach X%"
                       elapsed_seconds=earlier_seconds + time.perf_counter() - started)
        history.append(figures)
        print(f"epoch {epoch + 1:3d}/{args.epochs} | train loss {figures['train_loss']:.4f} "
              f"acc {figures['train_accuracy']:.3f} | val loss {val['loss']:.4f} acc {val['pixel_accuracy']:.3f} "
              f"class avg {val['class_accuracy']:.3f} mIoU {val['mean_iou']:.3f} | {figures['images_per_second']:.1f} img/s, "
              f"{figures['train_seconds']:.0f}s", flush=True)
        if args.rank == 0:  # one rank writes files
            save_checkpoint(args.out / "checkpoint_last.npz", model, optimizer, scheduler, epoch, history, config)
        if val["pixel_accuracy"] > best:
            best = val["pixel_accuracy"]
            if args.rank == 0:
                save_checkpoint(args.out / "checkpoint_best.npz", model, optimizer, scheduler, epoch, history, config)
        if args.stop_after and epoch + 1 - first_epoch >= args.stop_after:
            print(f"stopping after {args.stop_after} epoch(s); continue with --resume {args.out / 'checkpoint_last.npz'}")
            return val

    final = evaluate(model, val_set, args, num_classes)
    write_outputs(args, model, val_set, final, history, config, time.perf_counter() - started)
    return final


def write_outputs(args, model, dataset, results, history, config, seconds):
    if args.rank != 0:  # one rank writes files
        return
    summary = {"pixel_accuracy": results["pixel_accuracy"], "mean_iou": results["mean_iou"],
               "class_average_accuracy": results["class_accuracy"],
               "per_class": {name: {"accuracy": acc, "iou": iou} for name, acc, iou in
                             zip(dataset.class_names, results["per_class_accuracy"], results["per_class_iou"])},
               "history": history, "config": config, "seconds": seconds, "split": getattr(dataset, "split", "val")}
    (args.out / "metrics.json").write_text(json.dumps(summary, indent=2, default=_json_number))
    if history:
        plot_curves(history, args.out / "curves.png")
    save_predictions(model, dataset, args, args.out / "predictions.png")
    print(f"final {summary['split']}: global (pixel) accuracy {results['pixel_accuracy']:.3f}, class average accuracy "
          f"{results['class_accuracy']:.3f}, mean IoU {results['mean_iou']:.3f} "
          f"| {seconds / 60:.1f} min | outputs in {args.out}/")


def _json_number(value):
    value = float(value)
    return None if math.isnan(value) else value


def run_evaluation_only(args):
    if not args.checkpoint:
        raise SystemExit("--eval-only needs --checkpoint FILE")
    state = load(args.checkpoint)
    config = json.loads(state["config"])
    args.model, args.size = config["model"], config["size"]
    _, dataset = datasets_for(args, eval_split=args.split, normalisation=(config["mean"], config["std"]))
    model = build_model(args.model, config["num_classes"]).to(args.device)
    model.load_state_dict(state["model"])
    started = time.perf_counter()
    results = evaluate(model, dataset, args, config["num_classes"])
    write_outputs(args, model, dataset, results, [], config, time.perf_counter() - started)
    return results


if __name__ == "__main__":
    main()
