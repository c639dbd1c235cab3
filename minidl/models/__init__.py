"""Segmentation models built from ``minidl.nn``: SegNet (SegNetSmall, SegNetBasic), FCN, U-Net and the
transfer-learning recipes (``transfer.py``: old-school nets on pretrained encoders, head replacement)."""
from .fcn import FCN
from .segnet import SegNet, SegNetBasic, SegNetSmall
from .unet import UNet

def pixelwise(num_classes, in_channels=3, width=64):
    """A per-pixel classifier: 1x1 convolutions only, so every pixel is classified from its own colour.

    The control experiment for the synthetic scenes: it sees no neighbourhood
    (receptive field 1x1), so whatever it cannot separate needs spatial context.
    """
    from .. import nn
    from .blocks import conv_bn_relu

    return nn.Sequential(conv_bn_relu(in_channels, width, kernel_size=1), conv_bn_relu(width, width, kernel_size=1),
                         nn.Conv2d(width, num_classes, kernel_size=1))


MODELS = {
    "segnet": lambda num_classes: SegNet(num_classes, widths=(32, 64, 128), convs_per_stage=2),
    "segnet_small": SegNetSmall,
    "segnet_basic": SegNetBasic,
    "fcn": FCN,
    "unet": UNet,
    # four levels like "unet" but half as wide: about 3x fewer multiply-adds, the embedded dataset's default
    "unet_small": lambda num_classes: UNet(num_classes, widths=(16, 32, 64, 128)),
    "pixelwise": pixelwise,
}


def build_model(name, num_classes):
    """A model by its command-line name (``segnet``, ``segnet_small``, ``segnet_basic``, ``fcn``, ``unet``,
    ``unet_small``, ``pixelwise``, ``oldschool_<backbone>``, ``lraspp_mobilenet_v3_large``), with random weights."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name](num_classes)


__all__ = ["FCN", "SegNet", "SegNetBasic", "SegNetSmall", "UNet", "MODELS", "build_model"]

from .torchvision import (  # noqa: E402  torchvision-compatible models (pretrained weights load unchanged)
    AlexNet, Backbone, FeatureStage, LRASPP, MobileNetV2, MobileNetV3, ResNet, alexnet, lraspp_mobilenet_v3_large,
    mobilenet_v2, mobilenet_v3_large, mobilenet_v3_small, resnet18, resnet34,
)

__all__ += [
    "AlexNet", "Backbone", "FeatureStage", "LRASPP", "MobileNetV2", "MobileNetV3", "ResNet", "alexnet",
    "lraspp_mobilenet_v3_large", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "resnet18", "resnet34",
]

from .transfer import (  # noqa: E402  transfer learning: old-school nets, head replacement
    OLD_SCHOOL_BACKBONES, OldSchool, freeze_pretrained, head_modules, num_classes_of, old_school, replace_head,
    trained_from_scratch,
)

for _backbone in OLD_SCHOOL_BACKBONES:  # oldschool_resnet18, ..., oldschool_segnet_basic
    MODELS[f"oldschool_{_backbone}"] = lambda num_classes, _backbone=_backbone: old_school(_backbone, num_classes)
MODELS["lraspp_mobilenet_v3_large"] = lambda num_classes: lraspp_mobilenet_v3_large(num_classes=num_classes)

__all__ += ["OLD_SCHOOL_BACKBONES", "OldSchool", "freeze_pretrained", "head_modules", "num_classes_of", "old_school",
            "replace_head", "trained_from_scratch"]
