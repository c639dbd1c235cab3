"""LR-ASPP with a MobileNetV3-Large backbone (Howard et al., 2019): torchvision's
``lraspp_mobilenet_v3_large``, a light semantic-segmentation network.

    backbone: MobileNetV3-Large ``features`` with a dilated last stage (output stride 16)
        "low"  = output of features[4]  (stride 8,  40 ch)
        "high" = output of features[16] (stride 16, 960 ch)
    head (LRASPPHead):
        x = cbr(high) * scale(high)      1x1 conv-BN-ReLU, gated per channel by a sigmoid of the
                                         image's global average (a cheap "attention")
        x = upsample x to low's size (bilinear)
        logits = low_classifier(low) + high_classifier(x)     (N, num_classes, H/8, W/8)
    output: {"out": logits upsampled bilinearly to the input size}  (N, num_classes, H, W)
"""
from __future__ import annotations

from collections import OrderedDict

from ... import nn
from ...nn import functional as F
from .backbone import Backbone, stages_of_chain
from .blocks import load_weights
from .mobilenetv3 import mobilenet_v3_large


class IntermediateLayerGetter(nn.ModuleDict):
    """Run ``model``'s children in order and return the outputs of those named in ``return_layers``.

    Children after the last returned one are dropped. Keys stay the children's names, so a
    state_dict reads ``backbone.0.0.weight``, as torchvision's. forward -> OrderedDict out_name -> tensor.
    """

    def __init__(self, model, return_layers):
        names = [name for name, _ in model.named_children()]
        if not set(return_layers) <= set(names):
            raise ValueError("return_layers are not present in model")
        last = max(names.index(name) for name in return_layers)
        super().__init__(OrderedDict(list(model.named_children())[:last + 1]))
        self.return_layers = dict(return_layers)

    def forward(self, x):
        out = OrderedDict()
        for name, module in self.items():
            x = module(x)
            if name in self.return_layers:
                out[self.return_layers[name]] = x
        return out


class LRASPPHead(nn.Module):
    """low (N, low_channels, h, w), high (N, high_channels, h', w') -> logits (N, num_classes, h, w)."""

    def __init__(self, low_channels, high_channels, num_classes, inter_channels):
        super().__init__()
        self.cbr = nn.Sequential(nn.Conv2d(high_channels, inter_channels, 1, bias=False),
                                 nn.BatchNorm2d(inter_channels), nn.ReLU(inplace=True))
        self.scale = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(high_channels, inter_channels, 1, bias=False),
                                   nn.Sigmoid())
        self.low_classifier = nn.Conv2d(low_channels, num_classes, 1)
        self.high_classifier = nn.Conv2d(inter_channels, num_classes, 1)

    def forward(self, input):
        low, high = input["low"], input["high"]
        x = self.cbr(high) * self.scale(high)
        x = F.interpolate(x, size=tuple(low.shape[-2:]), mode="bilinear", align_corners=False)
        return self.low_classifier(low) + self.high_classifier(x)


class LRASPP(Backbone):
    """``backbone`` (returns {"low", "high"}) -> ``classifier`` (LRASPPHead) -> upsample to the input.

    (N, 3, H, W) -> {"out": (N, num_classes, H, W)}, a dict as in torchvision.
    """

    def __init__(self, backbone, low_channels, high_channels, num_classes, inter_channels=128):
        super().__init__()
        self.backbone = backbone
        self.classifier = LRASPPHead(low_channels, high_channels, num_classes, inter_channels)

    def forward(self, input):
        out = self.classifier(self.backbone(input))
        out = F.interpolate(out, size=tuple(input.shape[-2:]), mode="bilinear", align_corners=False)
        return OrderedDict(out=out)

    def feature_stages(self):
        """The backbone's stages: strides 2, 4, 8 and 16 (the dilated last stage stays at 16)."""
        return stages_of_chain(self.backbone.values())


def lraspp_mobilenet_v3_large(*, weights=None, num_classes=21, weights_backbone=None, **kwargs):
    """torchvision's ``lraspp_mobilenet_v3_large``.

    ``weights``: None, a file (``lraspp_mobilenet_v3_large-d234d4ea.pth``, 21 VOC classes) or a
    state_dict of the whole model. ``weights_backbone``: a ``mobilenet_v3_large`` file or
    state_dict for the backbone only (ImageNet features to fine-tune from); unlike torchvision,
    nothing is loaded by default. kwargs (e.g. ``inter_channels``) go to LRASPP.
    """
    mobilenet = mobilenet_v3_large(weights=weights_backbone, dilated=True)
    features = mobilenet.features
    # torchvision's taps: the first block of the stride-8 stage ("C2") and the last layer
    starts = [0] + [i for i, layer in enumerate(features) if getattr(layer, "_is_cn", False)] + [len(features) - 1]
    low, high = starts[-4], starts[-1]
    backbone = IntermediateLayerGetter(features, {str(low): "low", str(high): "high"})
    model = LRASPP(backbone, features[low].out_channels, features[high].out_channels, num_classes, **kwargs)
    return load_weights(model, weights)
