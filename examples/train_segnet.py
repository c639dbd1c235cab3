"""Train a segmentation network with minidl.

    python examples/train_segnet.py                                # embedded synthetic scenes, no download
    python examples/train_segnet.py --data PATH/TO/MSRC_v2         # MSRC-v2 in its own layout
    python examples/train_segnet.py --eval-only --checkpoint runs/synthetic/checkpoint_best.npz --split val
    mpiexec -n 2 python examples/train_segnet.py --distributed     # data-parallel on 2 processes (needs mpi4py)
    python examples/train_segnet.py --data PATH/TO/CamVid --size 240x180 --model segnet_basic --class-weights median

PATH/TO/... is your copy of the dataset, as `python -m minidl.data.prepare msrc|camvid SOURCE DEST`
makes it (minidl/data/prepare.py): MSRC-v2 as Images/ and GroundTruth/, CamVid as SegNet's
tutorial ships it (train/, trainannot/, val/, valannot/).

Transfer learning (examples/model_setup.py): --weights FILE starts from pretrained weights.
    --model oldschool_resnet18 --weights resnet18-f37072fd.pth             # old school: pretrained encoder, new decoder
    --model lazy_segnet --weights runs/camvid/checkpoint_best.npz          # lazy: new output layer for our classes
    --model lazy_segnet --weights runs/camvid/checkpoint_best.npz --no-freeze-encoder   # fine-tune: all of it trains
The pretrained part is frozen (--freeze-encoder, the default with --weights) until
--unfreeze-after EPOCHS; whenever it trains (from the first step with --no-freeze-encoder) its
learning rate is lr * --pretrained-lr-factor.

Writes into --out: metrics.json (final held-out pixel accuracy, mean IoU,
per-class figures -- on MSRC-v2 and CamVid at each label's native resolution, as the papers
score, and at the training size -- per-epoch history at the training size), curves.png, predictions.png,
checkpoint_last.npz and checkpoint_best.npz. --resume continues an interrupted
run from its checkpoint and ends where the uninterrupted run would have; it
refuses a command whose settings differ from the run's (listing them).

Reading order for a student: main() -> train_one_epoch() -> train_step() -> the
model's forward (minidl/models) -> the layers (minidl/nn) -> the ops and their
backward (minidl/nn/functional, minidl/ops) -> the engine (minidl/autograd).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import minidl  # noqa: E402
import minidl.distributed as dist  # noqa: E402  (--distributed; needs mpi4py only then)
import minidl.nn.functional as F  # noqa: E402
from minidl import optim  # noqa: E402
import model_setup  # noqa: E402  (examples/model_setup.py: --model, --weights, freezing)
from data_setup import datasets_for, describe_data, parse_size, size_hw  # noqa: E402  (examples/data_setup.py)
from minidl.data import VOID, DataLoader, median_frequency_weights, transforms as T  # noqa: E402
from minidl.metrics import SegmentationMetrics  # noqa: E402
from minidl.models import build_model  # noqa: E402
from minidl.models.transfer import OldSchool  # noqa: E402
from minidl.nn import CrossEntropyLoss, SyncBatchNorm, trainable_parameter_count  # noqa: E402
from minidl.nn.parallel import DistributedDataParallel  # noqa: E402
from minidl.serialization import save  # noqa: E402
from minidl.visualize import prediction_grid, to_uint8_image  # noqa: E402
from plots import plot_curves  # noqa: E402  (examples/plots.py: matplotlib)

# Good defaults per dataset: what trains well within the stated budget on a 2-core CPU.
DEFAULTS = {
    "synthetic": dict(model="unet_small", epochs=19, batch_size=8, lr=3e-3, optimizer="adam", size=64, weight_decay=1e-4,
                      class_weights="none"),
    # U-Net: 68.4% val pixel accuracy and 44.7% class average in 48 epochs, against SegNetSmall's 63.3%
    # and 38.5% (docs/results.md)
    "msrc": dict(model="unet", epochs=48, batch_size=8, lr=1e-3, optimizer="adam", size=144, crop=128,
                 weight_decay=1e-4, class_weights="none"),
    # CamVid on a CPU: half of 480x360 in each direction would take over an hour here; 160x120 fits.
    # sqrt_median: the class average of the unweighted loss (51%) rises to 60% at the same global accuracy
    # (87%); full median balancing reaches 71% but costs 9 points of global accuracy (docs/results.md)
    "camvid": dict(model="segnet_small", epochs=20, batch_size=8, lr=1e-3, optimizer="adam", size="160x120",
                   weight_decay=1e-4, class_weights="sqrt_median"),
}


def _checked(convert, valid, what):
    """An argparse type: ``convert(text)``, refused as "must be WHAT" unless ``valid(value)``."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not valid(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value
    return parse


positive_int = _checked(int, lambda n: n > 0, "a positive integer")
non_negative_int = _checked(int, lambda n: n >= 0, "an integer >= 0")
positive_float = _checked(float, lambda x: math.isfinite(x) and x > 0, "a positive number")
non_negative_float = _checked(float, lambda x: math.isfinite(x) and x >= 0, "a number >= 0")
unit_interval = _checked(float, lambda x: 0 <= x <= 1, "a number in [0, 1]")


def _scale_range(text):
    """ "LOW,HIGH" -> (low, high) floats, or None when that is not what the text holds."""
    parts = text.split(",")
    if len(parts) != 2:
        return None
    low, high = map(float, parts)  # ValueError -> refused by _checked
    return (low, high) if 0 < low <= high and math.isfinite(high) else None


parse_scale_range = _checked(_scale_range, lambda r: r is not None, "LOW,HIGH with 0 < LOW <= HIGH (e.g. 0.75,1.25)")


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
    parser.add_argument("--unfreeze-after", type=positive_int, metavar="EPOCHS",
                        help="with --freeze-encoder: after this many epochs train everything, the pretrained part "
                             "with lr * --pretrained-lr-factor")
    parser.add_argument("--pretrained-lr-factor", type=non_negative_float, default=0.1,
                        help="with --weights: the pretrained part's learning rate is lr times this")
    parser.add_argument("--class-weights", choices=["none", "median", "sqrt_median"],
                        help="median: weight the loss by median frequency balancing of the training split's "
                             "classes (as SegNet on CamVid), so rare classes count more; sqrt_median: the square "
                             "roots of those weights, half as far from 1 on a log scale (a milder balance). "
                             "Default: sqrt_median on CamVid, none otherwise")
    parser.add_argument("--keep-freed-memory", action=argparse.BooleanOptionalAction, default=True,
                        help="ask malloc to keep the memory a training step frees for the next step "
                             "(minidl.keep_freed_memory(): no page faults on every step's fresh arrays; "
                             "it applies to this whole process)")
    parser.add_argument("--epochs", type=positive_int, help="passes over the training split")
    parser.add_argument("--batch-size", type=positive_int,
                        help="images per step, at most the training split's size (the ragged last batch of an "
                             "epoch is dropped)")
    parser.add_argument("--lr", type=positive_float, help="learning rate (cosine-decayed to 0 over the run)")
    parser.add_argument("--optimizer", choices=["sgd", "adam"], help="sgd uses momentum 0.9")
    parser.add_argument("--weight-decay", type=non_negative_float, help="L2 penalty (decoupled for adam: AdamW)")
    parser.add_argument("--size", type=parse_size, help="images are resized to size x size, or to WxH "
                                                        "(e.g. 240x180: CamVid's 480x360 halved)")
    crop = parser.add_mutually_exclusive_group()
    crop.add_argument("--crop", type=positive_int,
                      help="train on random crop x crop windows of the resized images (scale augmentation; "
                           "evaluation uses whole images). Default: MSRC's 128 at its default --size 144; no "
                           "cropping at any other size or for the other datasets")
    crop.add_argument("--no-crop", action="store_true", help="train on whole images (turns MSRC's default crop off)")
    parser.add_argument("--train-images", type=positive_int, default=400, help="synthetic only: training scenes")
    parser.add_argument("--val-images", type=positive_int, default=64, help="synthetic only: held-out scenes")
    parser.add_argument("--no-flip", action="store_true", help="disable random horizontal flips")
    parser.add_argument("--random-scale", type=parse_scale_range, metavar="LOW,HIGH",
                        help="zoom each training image by a random factor in [LOW, HIGH] before its crop window "
                             "(e.g. 0.75,1.25; zoomed-out images are padded with void)")
    parser.add_argument("--color-jitter", type=unit_interval, default=0.0, metavar="STRENGTH",
                        help="random brightness, contrast and saturation factors in [1 - STRENGTH, 1 + STRENGTH] "
                             "(e.g. 0.2; 0 = off)")
    parser.add_argument("--eval-flip", action="store_true",
                        help="evaluate on every image and its mirror, averaging the two logits (test-time "
                             "augmentation; evaluation takes twice as long)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (needs CuPy)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seeds data order, augmentation and weights")
    parser.add_argument("--out", help="output folder (default: runs/<dataset>)")
    parser.add_argument("--resume", metavar="CHECKPOINT",
                        help="continue an interrupted run from its checkpoint_last.npz, to end where it would "
                             "have; the run's own settings are needed (epochs, lr, batch size, optimizer, weight "
                             "decay, crop, size, seed, model, data, ...): a change is refused, listing what "
                             "differs. To train longer, start a new run")
    parser.add_argument("--eval-only", action="store_true", help="only evaluate --checkpoint on --split")
    parser.add_argument("--checkpoint",
                        help="with --eval-only: a checkpoint_*.npz (its model, size and normalisation are used), "
                             "or a bare state_dict of the --model network at --size (inputs normalised with the "
                             "training split's statistics)")
    parser.add_argument("--split", default="val", help="split to evaluate with --eval-only (val or test)")
    parser.add_argument("--max-steps", type=positive_int,
                        help="stop each epoch after this many steps (for smoke tests)")
    parser.add_argument("--stop-after", type=positive_int,
                        help="stop after this many epochs, as if interrupted (resume later)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, only the per-epoch lines")
    parser.add_argument("--distributed", action="store_true",
                        help="run as one rank of `mpiexec -n W ...`: each rank takes batch-size / W images of every "
                             "step; rank 0 prints and writes the outputs")
    args = parser.parse_args(argv)
    kind = describe_data(args.data)["kind"]
    fill_in_defaults(args, DEFAULTS[kind])
    if args.crop is not None and args.crop > min(size_hw(args.size)):
        parser.error(f"--crop {args.crop} is larger than --size {args.size}")
    if args.freeze_encoder is None:
        args.freeze_encoder = args.weights is not None
    if args.freeze_encoder and args.weights is None and not args.model.startswith("oldschool_"):
        parser.error("--freeze-encoder needs --weights (or an oldschool_* model): there is no pretrained part to freeze")
    if args.unfreeze_after is not None and not args.freeze_encoder:
        parser.error("--unfreeze-after needs --freeze-encoder")
    args.out = Path(args.out or Path("runs") / kind)
    return args


def fill_in_defaults(args, defaults):
    """The options not given take the dataset's ``defaults``. The default --crop goes with the default
    --size (MSRC: 128-pixel windows of 144-pixel images); at another size there is no cropping unless
    --crop asks for it, and --no-crop turns it off."""
    for key, value in defaults.items():
        if key != "crop" and getattr(args, key) is None:
            setattr(args, key, value)
    if args.no_crop:
        args.crop = None
    elif args.crop is None and args.size == defaults["size"]:
        args.crop = defaults.get("crop")


@dataclass
class Run:
    """What a run works out beside its options (``args`` keeps what the command line says).

    kind: synthetic, msrc or camvid. device: where this process computes (under mpiexec, a rank's
    own GPU). rank, world: this process's place among ``mpiexec -n world`` processes (0 and 1
    without). recipe: from scratch, old school or lazy (examples/model_setup.py). class_weights:
    --class-weights median's NumPy weights (C,), or None. criterion: the training loss, cross
    entropy over the labelled pixels (``ignore_index=VOID``) weighted by class_weights.
    """
    kind: str
    device: str
    rank: int = 0
    world: int = 1
    recipe: str = "from scratch"
    class_weights: np.ndarray | None = None
    criterion: CrossEntropyLoss = field(default_factory=lambda: CrossEntropyLoss(ignore_index=VOID))


# --------------------------------------------------------------------------- --distributed
# `mpiexec -n W python examples/train_segnet.py --distributed` runs W copies of this script.
# All draw the same shuffled batches of --batch-size images (same seeds); each trains on
# its share of every batch -- items rank, rank + W, ... (DistributedSampler's split) --
# and DistributedDataParallel averages the gradients, so the run follows the
# one-process run (SyncBatchNorm makes BatchNorm see the whole batch too). Evaluation
# splits each batch the same way and sums the confusion matrices. Rank 0 prints and writes.
def start_distributed(args, run):
    """Join mpiexec's processes: ``run`` learns this process's rank, their number and its device."""
    dist.init_process_group()
    run.rank, run.world = dist.get_rank(), dist.get_world_size()
    if args.batch_size % run.world:
        raise SystemExit(f"--batch-size {args.batch_size} must be a multiple of the {run.world} ranks")
    if args.device == "cuda":  # one GPU per rank of this machine, shared round-robin if there are fewer
        gpus = minidl.backend.cupy_module().cuda.runtime.getDeviceCount()
        run.device = f"cuda:{dist.get_local_rank() % gpus}"
    if run.rank != 0:
        sys.stdout = open(os.devnull, "w")  # only rank 0 prints (errors still reach stderr)


def share_of(run, *arrays):
    """This rank's share of a batch: items rank, rank + W, ... of each array (all of them in one process)."""
    return tuple(array[run.rank :: run.world] for array in arrays)


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


# --------------------------------------------------------------------------- the data of an epoch
def training_batches(train_set, args, epoch):
    """This epoch's shuffled, augmented batches: NumPy images (N, 3, H, W) and masks (N, H, W).

    One generator, seeded by (--seed, epoch), draws the DataLoader's order and then every batch's
    random zooms, crops, flips and colour factors, so a resumed run repeats this epoch exactly. The
    transforms take the whole batch, each image its own draws, the mask moved with it. Cropping a
    slightly larger resized image is a cheap scale augmentation (objects appear at shifted positions
    and the net never sees the same framing twice); --random-scale also changes their size, and
    --color-jitter their lighting and colour. The ragged last batch is dropped: every step sees
    --batch-size images.
    """
    rng = np.random.default_rng([args.seed, epoch])
    if args.random_scale:  # zoom, then the --crop window (or the whole --size)
        framing = [T.RandomScaleCrop(args.crop or size_hw(args.size), scale=args.random_scale, seed=rng)]
    else:
        framing = [T.RandomCrop(args.crop, seed=rng)] if args.crop else []
    flip = [] if args.no_flip else [T.RandomHorizontalFlip(seed=rng)]
    strength = args.color_jitter  # the arrays are normalised: the jitter undoes and redoes that
    colour = [T.ColorJitter(strength, strength, strength, train_set.mean, train_set.std, seed=rng)] if strength else []
    augment = T.Compose(framing + flip + colour)
    # prefetch=0: the splits are arrays in memory already, a batch costs one copy
    loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, drop_last=True, seed=rng, prefetch=0)
    for images, masks in loader:
        yield augment(images.numpy(), masks.numpy())


def augmentation_text(args):
    """The header's words for --random-scale and --color-jitter ("" when both are off)."""
    scale = f", zoomed x{args.random_scale[0]:g}-{args.random_scale[1]:g}" if args.random_scale else ""
    return scale + (f", colour jitter {args.color_jitter:g}" if args.color_jitter else "")


def check_batch_size(args, train_set):
    """Stop when --batch-size exceeds the training split: an epoch would have no full batch to train on."""
    if args.batch_size > len(train_set):
        raise SystemExit(f"--batch-size {args.batch_size} is larger than the training split ({len(train_set)} "
                         f"images): an epoch would have no full batch; use --batch-size {len(train_set)} or less")


# --------------------------------------------------------------------------- the training step
def train_step(model, images, masks, optimizer, criterion):
    """One step of gradient descent on a batch: forward, loss, backward, update. Returns (logits, loss).

    images: float32 Tensor (N, 3, H, W); masks: int64 Tensor (N, H, W) of class indices, VOID where
    a pixel is unlabelled; criterion(logits, masks) -> the loss, e.g.
    ``CrossEntropyLoss(ignore_index=VOID)``: the mean over the labelled pixels.
    """
    logits = model_setup.segmentation_logits(model(images))
    loss = criterion(logits, masks)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return logits, loss


def count_labelled(masks, class_weights=None):
    """What a "mean" cross entropy divides by: the labelled pixels, or the sum of their class weights."""
    labels = masks[masks != VOID]
    return int(labels.size) if class_weights is None else float(class_weights[labels].sum())


def summed_and_scaled(criterion, scale):
    """A loss: ``criterion``'s cross entropy summed over the pixels (not averaged), times ``scale``."""
    def loss(logits, masks):
        return F.cross_entropy(logits, masks, weight=criterion.weight, ignore_index=VOID, reduction="sum") * scale
    return loss


def train_step_on_share(model, images, masks, optimizer, run):
    """train_step on this process's share of a batch of NumPy arrays (in one process: all of it).

    Under mpiexec each of the W ranks trains on its share (``share_of``) and DistributedDataParallel
    averages the W gradients. The shares hold different numbers of labelled pixels, so for the
    mean over the whole batch's labelled pixels, each rank's loss is its sum scaled by
    W / (labelled pixels in the whole batch). Returns the share's masks (a Tensor), logits and loss.
    """
    criterion = run.criterion
    if run.world > 1:
        labelled = count_labelled(masks, run.class_weights)  # in the whole batch, before it is shared out
        images, masks = share_of(run, images, masks)
        criterion = summed_and_scaled(run.criterion, run.world / max(labelled, 1))
    images, masks = minidl.tensor(images, device=run.device), minidl.tensor(masks, device=run.device)
    logits, loss = train_step(model, images, masks, optimizer, criterion)
    return masks, logits, loss


# --------------------------------------------------------------------------- training and evaluation
def train_one_epoch(model, train_set, optimizer, args, run, epoch):
    """One pass over the training split (at most --max-steps steps); returns the epoch's figures."""
    model.train()
    minidl.manual_seed(args.seed * 1000 + epoch)  # per-epoch seed: a resumed run repeats this epoch exactly
    steps = len(train_set) // args.batch_size
    if args.max_steps:
        steps = min(steps, args.max_steps)
    progress = Progress(steps, f"epoch {epoch + 1}/{args.epochs}", args.quiet or run.rank != 0)
    total_loss = correct = counted = images_seen = 0
    for step, (images, masks) in enumerate(islice(training_batches(train_set, args, epoch), steps), start=1):
        masks, logits, loss = train_step_on_share(model, images, masks, optimizer, run)
        labelled = masks != VOID
        correct += int(((logits.argmax(1) == masks) & labelled).sum().item())
        counted += int(labelled.sum().item())
        total_loss += loss.item() * len(masks)
        images_seen += len(masks)
        progress.update(step, images_seen, loss=total_loss / images_seen, acc=correct / max(counted, 1))
    seconds = progress.close()
    total_loss, correct, counted, images_seen = sum_over_ranks(total_loss, correct, counted, images_seen)
    return {"train_loss": total_loss / max(images_seen, 1), "train_accuracy": correct / max(counted, 1),
            "train_seconds": seconds, "seconds_per_step": seconds / max(steps, 1),
            "images_per_second": images_seen / seconds}


@minidl.no_grad()
def predict_logits(model, images, run, flip=False):
    """Logits (N, C, H, W) of NumPy images (N, 3, H, W). flip (--eval-flip): averaged with the logits of
    the mirrored images, mirrored back (test-time augmentation: two looks at every image)."""
    logits = model_setup.segmentation_logits(model(minidl.tensor(images, device=run.device)))
    if flip:
        mirrored = model_setup.segmentation_logits(model(minidl.tensor(images[..., ::-1].copy(), device=run.device)))
        logits = (logits + mirrored[..., ::-1]) * 0.5
    return logits


def score_at_native_size(metrics, logits, native_masks):
    """Count each image's prediction against its label at the label's original size, as the papers
    score (SegNet's CamVid table at 480x360, TextonBoost's MSRC figure at ~320x213): the logits
    (N, C, h, w) are upsampled bilinearly to each mask's (H_i, W_i), then the argmax is taken."""
    for i, mask in enumerate(native_masks):
        metrics.update(model_setup.labels_at(logits[i:i + 1], mask.shape), mask[None])


@minidl.no_grad()
def evaluate(model, dataset, args, run, num_classes, native=False):
    """Metrics over a whole split (confusion matrices accumulated over every batch), and the mean loss.

    The figures are at the training size (labels resized with nearest, as the model sees them).
    native: also score at each image's original resolution (``score_at_native_size``), returned
    under "native", when resizing changed the labels (``dataset.native_masks``).
    """
    model.eval()
    native = native and dataset.native_masks is not None
    metrics = SegmentationMetrics(num_classes)
    native_metrics = SegmentationMetrics(num_classes) if native else None
    total_loss = 0.0
    for start in range(0, len(dataset), args.batch_size):
        (indices,) = share_of(run, np.arange(start, min(start + args.batch_size, len(dataset))))
        if not len(indices):  # a short last batch may leave this rank nothing
            continue
        masks = dataset.masks[indices]
        logits = predict_logits(model, dataset.images[indices], run, flip=args.eval_flip)
        if (masks != VOID).any():
            y = minidl.tensor(masks, device=run.device)
            total_loss += F.cross_entropy(logits, y, ignore_index=VOID, reduction="sum").item()
        metrics.update(logits.argmax(1).cpu().numpy(), masks)
        if native:
            score_at_native_size(native_metrics, logits, [dataset.native_masks[i] for i in indices])
    if run.world > 1:  # the whole split's counts: every rank's confusion matrices and loss summed
        for counts in [metrics] + ([native_metrics] if native else []):
            dist.all_reduce(counts.confusion)
        (total_loss,) = sum_over_ranks(total_loss)
    results = metrics.as_dict()
    results["loss"] = total_loss / max(int((dataset.masks != VOID).sum()), 1)
    if native:
        results["native"] = native_metrics.as_dict()
    return results


@minidl.no_grad()
def save_predictions(model, dataset, run, path, count=4):
    model.eval()
    images, masks = dataset.images[:count], dataset.masks[:count]
    predictions = model_setup.segmentation_logits(model(minidl.tensor(images, device=run.device))).argmax(1).cpu().numpy()
    pictures = [to_uint8_image(image, dataset.mean, dataset.std) for image in images]
    prediction_grid(pictures, list(masks), list(predictions), dataset.class_names, dataset.palette, path)


# --------------------------------------------------------------------------- checkpoints
def make_optimizer(model, args, run):
    """AdamW or SGD; with pretrained weights two parameter groups, the pretrained one at lr * --pretrained-lr-factor."""
    params = model.parameters()
    if run.recipe != "from scratch":
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


def pipeline_config(args, run, train_set):
    """What predict.py and --eval-only need to rebuild the model and its input pipeline."""
    return {"model": args.model, "num_classes": len(train_set.class_names), "size": args.size,
            "data": str(args.data), "kind": run.kind, "mean": list(map(float, train_set.mean)),
            "std": list(map(float, train_set.std)), "class_names": list(train_set.class_names),
            "palette": np.asarray(train_set.palette).tolist()}


def config_of(args, run, train_set):
    """The checkpoint's config: the pipeline, and every setting that shapes the training, which --resume
    must find unchanged."""
    synthetic = run.kind == "synthetic"
    return {**pipeline_config(args, run, train_set), "recipe": run.recipe, "weights": args.weights,
            "freeze_encoder": args.freeze_encoder, "unfreeze_after": args.unfreeze_after,
            "pretrained_lr_factor": args.pretrained_lr_factor, "class_weights": args.class_weights,
            "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "optimizer": args.optimizer,
            "weight_decay": args.weight_decay, "crop": args.crop, "flip": not args.no_flip,
            "random_scale": args.random_scale, "color_jitter": args.color_jitter, "eval_flip": args.eval_flip,
            "seed": args.seed,
            "max_steps": args.max_steps, "train_images": args.train_images if synthetic else None,
            "val_images": args.val_images if synthetic else None}


# settings that checkpoints of earlier releases do not record, with the value that those runs had
SETTINGS_ADDED_LATER = {"eval_flip": False, "random_scale": None, "color_jitter": 0.0}


def check_resume_matches(path, saved, current):
    """Stop, listing every setting where the checkpoint's run and this command differ: continuing under
    other settings would silently make one run out of two (a schedule that climbs back up, ...)."""
    current = json.loads(json.dumps(current))  # as the checkpoint's config, which went through JSON
    # a setting added after the checkpoint was written: its run had it off
    saved = {**SETTINGS_ADDED_LATER, **saved}
    missing = object()
    differences = [f"  {key}: {'not recorded' if saved.get(key, missing) is missing else repr(saved[key])} in the "
                   f"checkpoint, {value!r} in this command"
                   for key, value in current.items() if saved.get(key, missing) != value]
    if differences:
        raise SystemExit(f"--resume {path}: this command's settings differ from the interrupted run's:\n"
                         + "\n".join(differences) + "\nresume with the run's own options (--resume continues "
                         "that run exactly; to train longer or otherwise, start a new run)")


def save_checkpoint(path, model, optimizer, scheduler, epoch, history, config):
    save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
          "epoch": epoch, "history": json.dumps(history), "config": json.dumps(config)}, path)


def read_resume_checkpoint(path):
    """--resume PATH: a train_segnet.py checkpoint, with the optimizer, the schedule and the epoch."""
    return model_setup.read_checkpoint(path, "--resume", "--resume needs a train_segnet.py checkpoint_last.npz "
                                       f"(it also holds the optimizer, the schedule and the epoch); to start a "
                                       f"new run from these weights, use --weights {path}")


def set_class_weights(run, train_set, num_classes, kind):
    """--class-weights median or sqrt_median: rare classes weigh more in the loss (SegNet's CamVid recipe)."""
    weights = median_frequency_weights(train_set.masks, num_classes)
    run.class_weights = np.sqrt(weights) if kind == "sqrt_median" else weights
    run.criterion = CrossEntropyLoss(weight=minidl.tensor(run.class_weights, device=run.device), ignore_index=VOID)
    print(f"{kind.replace('_', ' ')} frequency class weights: " + ", ".join(
        f"{name} {w:.2f}" for name, w in zip(train_set.class_names, run.class_weights)), flush=True)


def main(argv=None):
    args = parse_args(argv)
    if args.keep_freed_memory:
        minidl.keep_freed_memory()
    run = Run(kind=describe_data(args.data)["kind"], device=args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    minidl.manual_seed(args.seed)
    if args.distributed:
        start_distributed(args, run)
    if args.eval_only:
        return run_evaluation_only(args, run)

    started = time.perf_counter()
    pretrained = model_setup.read_weights(args.weights) if args.weights else None
    args.model = model_setup.resolve_model_name(args.model, pretrained)
    train_set, val_set = datasets_for(args, normalisation=pretrained.normalisation() if pretrained else None)
    check_batch_size(args, train_set)
    num_classes = len(train_set.class_names)
    model, run.recipe = model_setup.build(args.model, num_classes, pretrained)
    if run.recipe == "lazy" and not args.freeze_encoder:  # the whole pretrained net trains from the first step
        run.recipe = "fine-tune"
    model.to(run.device)
    if pretrained:
        print(f"{run.recipe}: weights from {pretrained.describe()}", flush=True)
    elif isinstance(model, OldSchool):
        print(f"{args.model} without --weights: its encoder starts from random weights", flush=True)
    if args.class_weights != "none":
        set_class_weights(run, train_set, num_classes, args.class_weights)
    trained = model  # what the training steps call
    if args.distributed:  # BatchNorm statistics over all ranks' images; gradients averaged in backward
        model = SyncBatchNorm.convert_sync_batchnorm(model)  # same parameter names: checkpoints unchanged
        trained = DistributedDataParallel(model)
    optimizer = make_optimizer(model, args, run)
    scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    history, first_epoch, best, frozen = [], 0, -1.0, None
    earlier_seconds = 0.0  # wall time of the epochs a resumed run already has
    config = config_of(args, run, train_set)
    if args.resume:
        state = read_resume_checkpoint(args.resume)
        check_resume_matches(args.resume, state["config"], config)
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
          f"{f', random {args.crop}x{args.crop} crops' if args.crop else ''}{augmentation_text(args)}) "
          f"| {args.optimizer} lr={args.lr} "
          f"| {args.epochs} epochs of batch {args.batch_size} on {run.device}"
          + (f" ({run.world} ranks of {args.batch_size // run.world} images)" if args.distributed else ""), flush=True)

    for epoch in range(first_epoch, args.epochs):
        was_frozen, frozen = frozen, apply_freezing(model, args, epoch, frozen)
        if args.distributed and frozen != was_frozen:  # DDP reduces the gradients of the parameters that train
            trained = DistributedDataParallel(model)
        figures = train_one_epoch(trained, train_set, optimizer, args, run, epoch)
        scheduler.step()
        val = evaluate(model, val_set, args, run, num_classes)
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
        if run.rank == 0:  # one rank writes files
            save_checkpoint(args.out / "checkpoint_last.npz", model, optimizer, scheduler, epoch, history, config)
        if val["pixel_accuracy"] > best:
            best = val["pixel_accuracy"]
            if run.rank == 0:
                save_checkpoint(args.out / "checkpoint_best.npz", model, optimizer, scheduler, epoch, history, config)
        if args.stop_after and epoch + 1 - first_epoch >= args.stop_after:
            print(f"stopping after {args.stop_after} epoch(s); continue with --resume {args.out / 'checkpoint_last.npz'}")
            return val

    final = evaluate(model, val_set, args, run, num_classes, native=True)
    write_outputs(args, run, model, val_set, final, history, config, time.perf_counter() - started)
    return final


def figures_of(results, class_names):
    """metrics.json's figures of one evaluation: the three headline ratios and the per-class ones."""
    return {"pixel_accuracy": results["pixel_accuracy"], "mean_iou": results["mean_iou"],
            "class_average_accuracy": results["class_accuracy"],
            "per_class": {name: {"accuracy": acc, "iou": iou} for name, acc, iou in
                          zip(class_names, results["per_class_accuracy"], results["per_class_iou"])}}


def write_outputs(args, run, model, dataset, results, history, config, seconds):
    """metrics.json, curves.png and predictions.png in --out; the final line. When ``results`` holds the
    figures at native resolution (real datasets), those head metrics.json and the line, and the figures
    at the training size follow under "at_training_size"."""
    if run.rank != 0:  # one rank writes files
        return
    native = results.get("native")
    summary = {**figures_of(native or results, dataset.class_names),
               "resolution": "native" if native else "training size",
               **({"at_training_size": figures_of(results, dataset.class_names)} if native else {}),
               "history": history, "config": config, "seconds": seconds, "split": getattr(dataset, "split", "val")}
    (args.out / "metrics.json").write_text(json.dumps(summary, indent=2, default=_json_number))
    if history:
        plot_curves(history, args.out / "curves.png")
    save_predictions(model, dataset, run, args.out / "predictions.png")
    lines = [(summary["resolution"], native or results)] + ([("training size", results)] if native else [])
    for resolution, figures in lines:
        print(f"final {summary['split']} at {resolution}: global (pixel) accuracy {figures['pixel_accuracy']:.3f}, "
              f"class average accuracy {figures['class_accuracy']:.3f}, mean IoU {figures['mean_iou']:.3f}")
    print(f"{seconds / 60:.1f} min | outputs in {args.out}/", flush=True)


def _json_number(value):
    value = float(value)
    return None if math.isnan(value) else value


def run_evaluation_only(args, run):
    """--eval-only: metrics of --checkpoint on --split. A train_segnet.py checkpoint brings its model, size
    and normalisation; a bare state_dict is taken as the --model network at --size, its inputs normalised
    with the training split's statistics (as in a run from scratch)."""
    if not args.checkpoint:
        raise SystemExit("--eval-only needs --checkpoint FILE")
    checkpoint = model_setup.read_weights(args.checkpoint, option="--checkpoint")
    normalisation = None
    if checkpoint.config is not None:
        args.model, args.size = checkpoint.config["model"], checkpoint.config["size"]
        normalisation = checkpoint.normalisation()
    train_set, dataset = datasets_for(args, eval_split=args.split, normalisation=normalisation)
    config = checkpoint.config or pipeline_config(args, run, train_set)
    model = build_model(args.model, config["num_classes"])
    model_setup.load_weights(model, checkpoint, f"{args.model} with {config['num_classes']} classes (name its "
                             "network with --model)", option="--checkpoint")
    model.to(run.device)
    started = time.perf_counter()
    results = evaluate(model, dataset, args, run, config["num_classes"], native=True)
    write_outputs(args, run, model, dataset, results, [], config, time.perf_counter() - started)
    return results


if __name__ == "__main__":
    main()
