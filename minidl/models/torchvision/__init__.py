"""torchvision's classification and segmentation models, rebuilt in minidl.

Same module tree, same state_dict keys, same forward (checked against torchvision in
tests/test_torchvision_models.py), so torchvision's pretrained weights load unchanged::

    from minidl.models import mobilenet_v2
    model = mobilenet_v2(weights="mobilenet_v2-b0353104.pth").eval()
    features = model.forward_features(images)     # {2: ..., 4: ..., 8: ..., 16: ..., 32: ...}

Getting the weight files: minidl never downloads anything. Either download the file once
from the URL torchvision publishes for it (``https://download.pytorch.org/models/`` followed by
the file name, e.g. ``resnet18-f37072fd.pth``; ``torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url``
prints it), or, where torchvision is installed, write it yourself:
``torch.save(torchvision.models.resnet18(weights="DEFAULT").state_dict(), "resnet18.pth")``.
``minidl.load`` reads these PyTorch files (and safetensors) safely: it never runs code from them.
Pretrained models expect RGB images scaled to [0, 1] and normalised with ImageNet's
mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225).

Every model is a ``Backbone``: ``feature_stages()`` and ``forward_features(x)`` expose the
encoder at strides 2, 4, 8, 16, 32 (AlexNet starts at 4; LR-ASPP's dilated backbone ends at 16).
"""
from .alexnet import AlexNet, alexnet
from .backbone import Backbone, FeatureStage
from .lraspp import LRASPP, lraspp_mobilenet_v3_large
from .mobilenetv2 import MobileNetV2, mobilenet_v2
from .mobilenetv3 import MobileNetV3, mobilenet_v3_large, mobilenet_v3_small
from .resnet import ResNet, resnet18, resnet34

# What torchvision's pretrained models expect: RGB in [0, 1], then (x - mean) / std per channel.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "AlexNet", "Backbone", "FeatureStage", "LRASPP", "MobileNetV2", "MobileNetV3", "ResNet", "alexnet",
    "lraspp_mobilenet_v3_large", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "resnet18", "resnet34",
]
