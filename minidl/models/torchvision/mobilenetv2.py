"""MobileNetV2 (Sandler et al., 2018), torchvision's ``mobilenet_v2``: same modules, keys, outputs.

The idea: the *inverted residual* block. A ResNet block squeezes channels, convolves, and
expands back; this one does the opposite, cheaply::

    x (N, c, H, W) -> 1x1 conv, expand to t*c -> 3x3 *depthwise* conv (one filter per channel,
    groups = channels) -> 1x1 conv, project to c' (no activation: a "linear bottleneck")
    -> + x when the shape is unchanged

A depthwise 3x3 costs 9 multiply-adds per pixel and channel, against 9*C for a full 3x3,
so the network spends its work in the 1x1 convolutions.

Stages (224x224 input): stride 2 (16 ch, 112x112), 4 (24 ch), 8 (32 ch), 16 (96 ch), 32 (1280 ch, 7x7).
"""
from __future__ import annotations

from ... import nn
from ...nn import functional as F
from .backbone import Backbone, stages_of_chain
from .blocks import Conv2dNormActivation, init_like_torchvision, load_weights, make_divisible

# (expansion t, output channels c, repeats n, first stride s): torchvision's table
INVERTED_RESIDUAL_SETTING = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


class InvertedResidual(nn.Module):
    """expand (1x1, ReLU6; skipped when t = 1) -> depthwise 3x3 (ReLU6) -> project (1x1, BN, linear).

    (N, inp, H, W) -> (N, oup, H/stride, W/stride); the input is added back when stride is 1
    and inp == oup. Children: ``conv`` = Sequential(...), as in torchvision.
    """

    def __init__(self, inp, oup, stride, expand_ratio, norm_layer=nn.BatchNorm2d):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride should be 1 or 2 instead of {stride}")
        hidden = int(round(inp * expand_ratio))
        layers = []
        if expand_ratio != 1:
            layers.append(Conv2dNormActivation(inp, hidden, 1, norm_layer=norm_layer, activation_layer=nn.ReLU6))
        layers += [
            Conv2dNormActivation(hidden, hidden, stride=stride, groups=hidden, norm_layer=norm_layer,
                                 activation_layer=nn.ReLU6),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            norm_layer(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.stride, self.out_channels = stride, oup
        self.use_res_connect = stride == 1 and inp == oup

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(Backbone):
    """``features`` (stem, 17 inverted residuals, 1x1 conv to 1280) -> global average -> ``classifier``.

    Shapes: (N, 3, H, W) -> (N, num_classes). ``width_mult`` scales every width (rounded to
    multiples of ``round_nearest``); ``dropout`` is applied before the last Linear.
    """

    def __init__(self, num_classes=1000, width_mult=1.0, inverted_residual_setting=None, round_nearest=8,
                 block=None, norm_layer=None, dropout=0.2):
        super().__init__()
        block = block or InvertedResidual
        norm_layer = norm_layer or nn.BatchNorm2d
        setting = inverted_residual_setting or INVERTED_RESIDUAL_SETTING
        channels = make_divisible(32 * width_mult, round_nearest)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult), round_nearest)
        features = [Conv2dNormActivation(3, channels, stride=2, norm_layer=norm_layer, activation_layer=nn.ReLU6)]
        for t, c, n, s in setting:
            out_channels = make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(block(channels, out_channels, s if i == 0 else 1, expand_ratio=t, norm_layer=norm_layer))
                channels = out_channels
        features.append(Conv2dNormActivation(channels, self.last_channel, 1, norm_layer=norm_layer,
                                             activation_layer=nn.ReLU6))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes))
        init_like_torchvision(self, linear_std=0.01)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(x.flatten(1))

    def feature_stages(self):
        return stages_of_chain(self.features)


def mobilenet_v2(*, weights=None, num_classes=1000, **kwargs):
    """torchvision's ``mobilenet_v2``; ``weights``: None, a file (e.g. ``mobilenet_v2-b0353104.pth``) or a state_dict."""
    return load_weights(MobileNetV2(num_classes=num_classes, **kwargs), weights)
