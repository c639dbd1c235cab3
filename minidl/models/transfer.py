"""Transfer learning, the tutorial's two recipes for better results faster.

**Old school**: take a pretrained network's encoder (its feature stages), put a new decoder
on it and train only the decoder (``OldSchool``; freeze ``model.encoder`` with ``nn.freeze``)::

    backbone = resnet18(weights="resnet18-f37072fd.pth")      # ImageNet features
    model = OldSchool(backbone, num_classes=23)
    nn.freeze(model.encoder)

**Lazy**: take a whole segmentation network trained on other classes and replace only its
output layer(s) (``replace_head``); train those, then perhaps everything with a small lr::

    model = lraspp_mobilenet_v3_large(weights="lraspp_mobilenet_v3_large-d234d4ea.pth")  # 21 VOC classes
    new = replace_head(model, 23)                             # {"classifier.low_classifier": Conv2d, ...}
    nn.freeze(model)
    for layer in new.values():
        nn.unfreeze(layer)

``trained_from_scratch(model)`` names the modules each recipe trains from scratch, whatever is
left is pretrained (the example gives the two parts different learning rates).
"""
from __future__ import annotations

from collections import OrderedDict

from .. import nn
from ..nn import functional as F
from ..ops.shape import cat
from .blocks import conv_bn_relu
from .torchvision import LRASPP, alexnet, mobilenet_v2, resnet18


class OldSchool(nn.Module):
    """A pretrained encoder's feature stages, and a new U-Net-like decoder trained from scratch.

    ``backbone``: any ``Backbone`` (resnet18, mobilenet_v2, alexnet, a minidl SegNet...): its
    ``feature_stages()`` become ``self.encoder`` (the same layers, not copies; the backbone's
    classification head is left out). Decoder, from the deepest stage up: upsample bilinearly
    to the next shallower stage's size, concatenate that stage's features (the skip
    connection that brings back detail), conv-bn-relu down to its width. Then a 1x1
    ``classifier`` at the shallowest stage's stride, and a bilinear upsampling to the input size.

    Shapes: (N, 3, H, W) -> (N, num_classes, H, W) for any H, W the backbone accepts
    (AlexNet needs at least 63x63). With stage widths c_1..c_k (shallow to deep), decoder
    step i maps c_{i+1}' + c_i -> c_i channels, where c_{i+1}' is the previous step's width.
    """

    def __init__(self, backbone, num_classes=23):
        super().__init__()
        stages = backbone.feature_stages()
        self.encoder = nn.ModuleList(stage.module for stage in stages)
        self.strides = tuple(stage.stride for stage in stages)
        channels = [stage.channels for stage in stages]
        self.decoder = nn.ModuleList()
        deep = channels[-1]
        for skip in reversed(channels[:-1]):
            self.decoder.append(conv_bn_relu(deep + skip, skip))
            deep = skip
        self.classifier = nn.Conv2d(channels[0], num_classes, kernel_size=1)
        # encoder key -> the backbone's key for the same tensor, so the backbone's own weight
        # files (torchvision's, or a minidl checkpoint) load into the encoder
        backbone_key = {id(t): key for key, t in backbone.state_dict(keep_vars=True).items()}
        self.backbone_keys = OrderedDict((key, backbone_key[id(t)])
                                         for key, t in self.encoder.state_dict(keep_vars=True).items())

    def forward(self, x):
        size = tuple(x.shape[-2:])
        features = []
        for stage in self.encoder:
            x = stage(x)
            features.append(x)
        x = features.pop()
        for merge in self.decoder:
            skip = features.pop()
            x = F.interpolate(x, size=tuple(skip.shape[-2:]), mode="bilinear", align_corners=False)
            x = merge(cat([x, skip], dim=1))
        x = self.classifier(x)
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x

    def load_backbone_state_dict(self, state_dict):
        """Load the encoder from a state_dict of the whole backbone (keys as in the backbone).

        Only the entries the encoder uses are read; the backbone's head (``fc``, a SegNet's
        decoder and classifier) is ignored, so its class count does not matter. A missing
        encoder entry or a wrong shape is an error naming it. Files saved before PyTorch 0.4.1
        have no BatchNorm ``num_batches_tracked``; those counts then stay at 0.
        """
        has_counts = any(key.endswith("num_batches_tracked") for key in state_dict)
        wanted = OrderedDict((own, theirs) for own, theirs in self.backbone_keys.items()
                             if has_counts or not theirs.endswith("num_batches_tracked"))
        missing = [theirs for theirs in wanted.values() if theirs not in state_dict]
        if missing:
            raise ValueError(f"the weights lack {len(missing)} of the encoder's {len(wanted)} entries, e.g. "
                             f"{missing[:3]}: are they for a different network?")
        self.encoder.load_state_dict(OrderedDict((own, state_dict[theirs]) for own, theirs in wanted.items()),
                                     strict=has_counts)
        return self


# Backbones an old-school net can start from: torchvision's classifiers and minidl's SegNets
# (by their names in minidl.models.MODELS).
TORCHVISION_BACKBONES = {"resnet18": resnet18, "mobilenet_v2": mobilenet_v2, "alexnet": alexnet}
OLD_SCHOOL_BACKBONES = (*TORCHVISION_BACKBONES, "segnet", "segnet_small", "segnet_basic")


def old_school(backbone, num_classes=23, weights=None):
    """``OldSchool`` on the backbone named ``backbone`` (a key of ``OLD_SCHOOL_BACKBONES``).

    ``weights``: None (random encoder) or a state_dict of that backbone (e.g. ``minidl.load`` of
    ``resnet18-f37072fd.pth``, or the "model" entry of a SegNet checkpoint), loaded into the encoder.
    """
    if backbone not in OLD_SCHOOL_BACKBONES:
        raise ValueError(f"unknown old-school backbone {backbone!r}; choose one of {sorted(OLD_SCHOOL_BACKBONES)}")
    if backbone in TORCHVISION_BACKBONES:
        network = TORCHVISION_BACKBONES[backbone]()
    else:
        from . import build_model  # the SegNet variants as the registry defines them

        network = build_model(backbone, num_classes)  # its own classifier is left out anyway
    model = OldSchool(network, num_classes)
    return model if weights is None else model.load_backbone_state_dict(weights)


# --------------------------------------------------------------------------- the lazy recipe
def head_modules(model):
    """The output layer(s) of a segmentation network: OrderedDict dotted name -> Conv2d.

    LR-ASPP has two (``classifier.low_classifier`` and ``classifier.high_classifier``, summed);
    minidl's SegNet, SegNetBasic, U-Net, FCN and OldSchool have one 1x1 ``classifier``.
    """
    if isinstance(model, LRASPP):
        names = ["classifier.low_classifier", "classifier.high_classifier"]
    elif isinstance(getattr(model, "classifier", None), nn.Conv2d):
        names = ["classifier"]
    else:
        raise TypeError(f"don't know the output layers of a {type(model).__name__}: expected an LRASPP or a model "
                        f"whose `classifier` is a Conv2d")
    return OrderedDict((name, model.get_submodule(name)) for name in names)


def num_classes_of(model):
    """The number of classes ``model`` predicts (its output layers' output channels)."""
    return next(iter(head_modules(model).values())).out_channels


def replace_head(model, num_classes):
    """Replace ``model``'s output layer(s) by fresh ones (PyTorch's default initialisation) for
    ``num_classes`` classes, in place, on the old layers' device and dtype.

    Every other parameter and buffer stays as it was (the same tensors). Returns the new
    layers, OrderedDict dotted name -> Conv2d: the part the lazy recipe trains.
    """
    new = OrderedDict()
    for name, old in head_modules(model).items():
        layer = nn.Conv2d(old.in_channels, num_classes, old.kernel_size, stride=old.stride, padding=old.padding,
                          dilation=old.dilation, groups=old.groups, bias=old.bias is not None)
        layer.to(device=old.weight.device, dtype=old.weight.dtype)
        parent, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(parent), attribute, layer)
        new[name] = layer
    return new


def trained_from_scratch(model):
    """The modules a transfer recipe trains from scratch; the rest of ``model`` is pretrained.

    OldSchool: everything but ``encoder`` (the decoder and the classifier). Any other model
    (the lazy recipe): its output layers (``head_modules``).
    """
    if isinstance(model, OldSchool):
        return [module for name, module in model.named_children() if name != "encoder"]
    return list(head_modules(model).values())


def freeze_pretrained(model):
    """Freeze everything but ``trained_from_scratch(model)`` (see ``nn.freeze``). Returns ``model``."""
    nn.freeze(model)
    for module in trained_from_scratch(model):
        nn.unfreeze(module)
    return model
