"""The example's model: ``--model``, ``--weights`` and the transfer-learning recipes.

Three ways to start (``recipe`` in the checkpoint's config):

    from scratch   no --weights: random weights
    old school     --model oldschool_<backbone> --weights FILE: FILE holds the backbone (torchvision's
                   resnet18/mobilenet_v2/alexnet file, or a SegNet checkpoint); its feature stages
                   become the encoder, the decoder is new
    lazy           any other --model with --weights FILE holding the whole segmentation network
                   (torchvision's LR-ASPP file, a train_segnet.py checkpoint): everything is loaded and
                   the output layer(s) are replaced when FILE has other classes than the data
    fine-tune      the lazy recipe with --no-freeze-encoder: every layer trains from the first step,
                   the pretrained ones at lr * --pretrained-lr-factor

``--weights`` reads a train_segnet.py checkpoint (``checkpoint_*.npz``: its "model" entry, and its
config says which SegNet it is and how its inputs were normalised) or a bare state_dict
(torchvision's ``.pth``, safetensors, a minidl ``.npz``), taken to be ImageNet-pretrained.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

import minidl.nn as nn
import minidl.nn.functional as F
from minidl.models import MODELS, build_model, freeze_pretrained, replace_head, trained_from_scratch
from minidl.models.torchvision import IMAGENET_MEAN, IMAGENET_STD
from minidl.models.transfer import OldSchool, head_modules
from minidl.serialization import load

SEGNETS = ("segnet", "segnet_small", "segnet_basic")
# --model names that take the SegNet variant from the --weights checkpoint
FROM_CHECKPOINT = {"lazy_segnet": "{}", "oldschool_segnet": "oldschool_{}"}
MODEL_CHOICES = sorted(set(MODELS) | set(FROM_CHECKPOINT))


@dataclass
class Pretrained:
    """A weight file, read: its state_dict and, for a train_segnet.py checkpoint, its config."""
    path: str
    state_dict: dict
    config: dict | None

    def normalisation(self):
        """(mean, std) the weights expect their inputs normalised with, float32 (3,) each."""
        if self.config is not None:
            return np.asarray(self.config["mean"], np.float32), np.asarray(self.config["std"], np.float32)
        return np.asarray(IMAGENET_MEAN, np.float32), np.asarray(IMAGENET_STD, np.float32)

    def describe(self):
        if self.config is None:
            return f"{self.path} (a bare state_dict, taken as ImageNet-pretrained: ImageNet mean/std)"
        return (f"{self.path} ({self.config['model']} trained on {self.config['kind']}, "
                f"{self.config['num_classes']} classes; its mean/std)")


def is_checkpoint(content):
    """Whether what ``load`` returned is a train_segnet.py checkpoint (its "model" and "config" entries)."""
    return isinstance(content, dict) and "model" in content and "config" in content


def is_state_dict(content):
    """Whether what ``load`` returned is a bare state_dict: parameter name -> tensor."""
    return isinstance(content, dict) and all(hasattr(value, "shape") for value in content.values())


def read_weights(path, option="--weights"):
    """``--weights PATH`` (or another ``option`` naming a weight file) -> Pretrained. Errors name both."""
    content = load(path)
    if is_checkpoint(content):
        return Pretrained(str(path), content["model"], json.loads(content["config"]))
    if not is_state_dict(content):
        raise SystemExit(f"{option} {path}: neither a train_segnet.py checkpoint nor a state_dict (name -> tensor)")
    return Pretrained(str(path), content, None)


def read_checkpoint(path, option, instead):
    """``option PATH`` that must be a train_segnet.py checkpoint -> its entries, the config decoded (a dict).

    Anything else, a bare state_dict included, stops with a message naming the option, the file,
    what it holds and what to do ``instead``.
    """
    content = load(path)
    if not is_checkpoint(content):
        holds = "a bare state_dict (name -> tensor)" if is_state_dict(content) else "not a train_segnet.py checkpoint"
        raise SystemExit(f"{option} {path}: {holds}, without the config of the run that trained it; {instead}")
    return {**content, "config": json.loads(content["config"])}


def load_weights(model, pretrained, what, option="--weights"):
    """Load ``pretrained``'s whole state_dict into ``model``; a mismatch stops with a message naming the
    option, the file, ``what`` the model is, and the keys or shapes that differ."""
    try:
        model.load_state_dict(pretrained.state_dict)
    except RuntimeError as error:
        raise SystemExit(f"{option} {pretrained.path} does not fit {what}: {error}")


def resolve_model_name(name, pretrained):
    """``lazy_segnet`` and ``oldschool_segnet`` become the SegNet variant the checkpoint holds
    (``segnet_small``, ``oldschool_segnet_basic``, ...); other names stay. ``lazy_segnet`` needs a
    checkpoint; without one, ``oldschool_segnet`` stays (a SegNet encoder with random weights)."""
    if name not in FROM_CHECKPOINT:
        return name
    if pretrained is None or pretrained.config is None:
        if pretrained is not None:
            raise SystemExit(f"--model {name} needs a train_segnet.py checkpoint as --weights (its config names the "
                             f"SegNet variant); {pretrained.path} is a bare state_dict: name the variant instead, "
                             f"e.g. --model {FROM_CHECKPOINT[name].format('segnet_small')}")
        if name == "lazy_segnet":
            raise SystemExit("--model lazy_segnet needs --weights: a train_segnet.py checkpoint of a SegNet whose "
                             "output layer is replaced (to train one from scratch, use --model segnet_small)")
        return name
    variant = pretrained.config["model"]
    if variant not in SEGNETS:
        raise SystemExit(f"--model {name}: the checkpoint {pretrained.path} holds a {variant}, not one of {SEGNETS}")
    return FROM_CHECKPOINT[name].format(variant)


def build(name, num_classes, pretrained=None):
    """(model, recipe): the network for ``num_classes`` with the pretrained weights in place."""
    model = build_model(name, num_classes)
    if pretrained is None:
        return model, "from scratch"
    if isinstance(model, OldSchool):
        try:
            model.load_backbone_state_dict(pretrained.state_dict)
        except (ValueError, RuntimeError) as error:
            raise SystemExit(f"--weights {pretrained.path} does not fit {name}'s encoder: {error}")
        return model, "old school"
    head = next(iter(head_modules(model)))  # e.g. "classifier"
    key = f"{head}.weight"
    if key not in pretrained.state_dict:
        raise SystemExit(f"--weights {pretrained.path} has no {key!r}: not a whole {name} network")
    classes = int(pretrained.state_dict[key].shape[0])
    if classes != num_classes:
        replace_head(model, classes)  # the file's head, to load it ...
    load_weights(model, pretrained, name)
    if classes != num_classes:
        replace_head(model, num_classes)  # ... and a fresh one for our classes
        print(f"lazy: output layers replaced, {classes} -> {num_classes} classes", flush=True)
    else:
        print(f"lazy: the weights have our {num_classes} classes; their output layers are kept", flush=True)
    return model, "lazy"


def parameter_groups(model, lr, pretrained_lr):
    """Optimizer groups: what the recipe trains from scratch at ``lr``, the pretrained rest at ``pretrained_lr``.

    Both groups exist from the start (a frozen part gets no gradients, so the optimizer skips
    it), which keeps the optimizer's state_dict the same before and after unfreezing: resume works.
    """
    fresh = {id(p) for module in trained_from_scratch(model) for p in module.parameters()}
    return [{"params": [p for p in model.parameters() if id(p) in fresh], "lr": lr},
            {"params": [p for p in model.parameters() if id(p) not in fresh], "lr": pretrained_lr}]


def set_frozen(model, frozen):
    """Freeze the pretrained part (everything but ``trained_from_scratch``) or unfreeze it all."""
    return freeze_pretrained(model) if frozen else nn.unfreeze(model)


def segmentation_logits(output):
    """A model's logits (N, C, H, W): torchvision's segmentation models return {"out": logits}."""
    return output["out"] if isinstance(output, dict) else output


def labels_at(logits, size):
    """NumPy class labels (N, H, W) at ``size`` (H, W) from logits (N, C, h, w) at the model's size: the
    logits upsampled bilinearly (half-pixel centres, as PyTorch's align_corners=False), then the argmax.
    How a prediction is brought to an image's original size, for scoring and for predict.py's masks."""
    if tuple(logits.shape[-2:]) != tuple(size):
        logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
    return logits.argmax(1).cpu().numpy()


__all__ = ["MODEL_CHOICES", "Pretrained", "build", "is_checkpoint", "is_state_dict", "load_weights",
           "labels_at", "parameter_groups", "read_checkpoint", "read_weights", "resolve_model_name", "segmentation_logits",
           "set_frozen"]
