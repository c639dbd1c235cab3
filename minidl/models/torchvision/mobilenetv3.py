"""MobileNetV3 Large and Small (Howard et al., 2019), torchvision's ``mobilenet_v3_large``/``_small``.

MobileNetV2's inverted residual block (see mobilenetv2.py), found by architecture search and
refined with two cheap ideas:

- squeeze-and-excitation (blocks.SqueezeExcitation) after the depthwise conv in some blocks,
  gated by hardsigmoid;
- hardswish, ``x * relu6(x + 3) / 6``, instead of ReLU in the deeper half: swish's accuracy
  without its exponential.

``dilated=True`` (used by LR-ASPP) keeps the last stage at stride 16: its stride-2 block
runs at stride 1 and its depthwise convs dilate by 2, so they see as far as before.

Stages (224x224 input), large: stride 2 (16 ch), 4 (24), 8 (40), 16 (112), 32 (960);
small: stride 2 (16), 4 (16), 8 (24), 16 (48), 32 (576).
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

from ... import nn
from .backbone import Backbone, stages_of_chain
from .blocks import Conv2dNormActivation, SqueezeExcitation, init_like_torchvision, load_weights, make_divisible


class BlockConfig(NamedTuple):
    """One inverted residual: channels in/expanded/out, kernel, SE or not, "RE" (ReLU) or "HS" (hardswish)."""
    input_channels: int
    kernel: int
    expanded_channels: int
    out_channels: int
    use_se: bool
    activation: str
    stride: int
    dilation: int


# torchvision's tables: (in, kernel, expanded, out, SE, activation, stride). The last three rows
# form the last stage, the one ``dilated`` and ``reduced_tail`` change.
LARGE = [
    (16, 3, 16, 16, False, "RE", 1),
    (16, 3, 64, 24, False, "RE", 2),
    (24, 3, 72, 24, False, "RE", 1),
    (24, 5, 72, 40, True, "RE", 2),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 3, 240, 80, False, "HS", 2),
    (80, 3, 200, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 480, 112, True, "HS", 1),
    (112, 3, 672, 112, True, "HS", 1),
    (112, 5, 672, 160, True, "HS", 2),
    (160, 5, 960, 160, True, "HS", 1),
    (160, 5, 960, 160, True, "HS", 1),
]
SMALL = [
    (16, 3, 16, 16, True, "RE", 2),
    (16, 3, 72, 24, False, "RE", 2),
    (24, 3, 88, 24, False, "RE", 1),
    (24, 5, 96, 40, True, "HS", 2),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 120, 48, True, "HS", 1),
    (48, 5, 144, 48, True, "HS", 1),
    (48, 5, 288, 96, True, "HS", 2),
    (96, 5, 576, 96, True, "HS", 1),
    (96, 5, 576, 96, True, "HS", 1),
]
LAST_CHANNEL = {"mobilenet_v3_large": 1280, "mobilenet_v3_small": 1024}


def block_configs(arch, width_mult=1.0, reduced_tail=False, dilated=False):
    """The BlockConfigs of ``arch`` and its classifier's hidden width (torchvision's ``_mobilenet_v3_conf``).

    ``reduced_tail`` halves the last stage's channels; ``dilated`` gives it dilation 2.
    """
    table = {"mobilenet_v3_large": LARGE, "mobilenet_v3_small": SMALL}[arch]
    scale = partial(_adjust, width_mult=width_mult)
    divider = 2 if reduced_tail else 1
    configs = []
    for row, (inp, kernel, expanded, out, use_se, activation, stride) in enumerate(table):
        output_in_last_stage = row >= len(table) - 3  # the last three blocks
        if row >= len(table) - 2:  # their input is in the last stage too
            inp, expanded = inp // divider, expanded // divider
        if output_in_last_stage:
            out //= divider
        configs.append(BlockConfig(scale(inp), kernel, scale(expanded), scale(out), use_se, activation, stride,
                                   2 if dilated and output_in_last_stage else 1))
    return configs, scale(LAST_CHANNEL[arch] // divider)


def _adjust(channels, width_mult):
    return make_divisible(channels * width_mult, 8)


class InvertedResidual(nn.Module):
    """[expand 1x1] -> depthwise kxk (dilated, strided) -> [SE] -> project 1x1 (linear), + input if shapes match.

    Children: ``block`` = Sequential(...). ``stride`` is the effective stride (1 when dilated).
    """

    def __init__(self, cnf, norm_layer, se_layer=partial(SqueezeExcitation, scale_activation=nn.Hardsigmoid)):
        super().__init__()
        if not 1 <= cnf.stride <= 2:
            raise ValueError("illegal stride value")
        activation = nn.Hardswish if cnf.activation == "HS" else nn.ReLU
        self.stride = 1 if cnf.dilation > 1 else cnf.stride
        layers = []
        if cnf.expanded_channels != cnf.input_channels:
            layers.append(Conv2dNormActivation(cnf.input_channels, cnf.expanded_channels, 1, norm_layer=norm_layer,
                                               activation_layer=activation))
        layers.append(Conv2dNormActivation(cnf.expanded_channels, cnf.expanded_channels, cnf.kernel, self.stride,
                                           dilation=cnf.dilation, groups=cnf.expanded_channels,
                                           norm_layer=norm_layer, activation_layer=activation))
        if cnf.use_se:
            layers.append(se_layer(cnf.expanded_channels, make_divisible(cnf.expanded_channels // 4, 8)))
        layers.append(Conv2dNormActivation(cnf.expanded_channels, cnf.out_channels, 1, norm_layer=norm_layer,
                                           activation_layer=None))
        self.block = nn.Sequential(*layers)
        self.out_channels = cnf.out_channels
        self.use_res_connect = cnf.stride == 1 and cnf.input_channels == cnf.out_channels
        self._is_cn = cnf.stride > 1  # starts a new stage in the paper's terms (LR-ASPP picks its taps by it)

    def forward(self, input):
        result = self.block(input)
        return result + input if self.use_res_connect else result


class MobileNetV3(Backbone):
    """``features`` (stem, inverted residuals, 1x1 conv to 6x) -> avgpool -> ``classifier`` (2 Linear layers).

    Shapes: (N, 3, H, W) -> (N, num_classes). BatchNorm uses eps 0.001 and momentum 0.01 (torchvision's).
    """

    def __init__(self, inverted_residual_setting, last_channel, num_classes=1000, block=None, norm_layer=None,
                 dropout=0.2):
        super().__init__()
        if not inverted_residual_setting:
            raise ValueError("The inverted_residual_setting should not be empty")
        block = block or InvertedResidual
        norm_layer = norm_layer or partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)
        first, last = inverted_residual_setting[0].input_channels, 6 * inverted_residual_setting[-1].out_channels
        layers = [Conv2dNormActivation(3, first, 3, 2, norm_layer=norm_layer, activation_layer=nn.Hardswish)]
        layers += [block(cnf, norm_layer) for cnf in inverted_residual_setting]
        layers.append(Conv2dNormActivation(inverted_residual_setting[-1].out_channels, last, 1, norm_layer=norm_layer,
                                           activation_layer=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(last, last_channel),
            nn.Hardswish(inplace=True),
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(last_channel, num_classes),
        )
        init_like_torchvision(self, linear_std=0.01)

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))

    def feature_stages(self):
        return stages_of_chain(self.features)


def _mobilenet_v3(arch, weights, num_classes, width_mult=1.0, reduced_tail=False, dilated=False, **kwargs):
    configs, last_channel = block_configs(arch, width_mult, reduced_tail, dilated)
    return load_weights(MobileNetV3(configs, last_channel, num_classes=num_classes, **kwargs), weights)


def mobilenet_v3_large(*, weights=None, num_classes=1000, **kwargs):
    """torchvision's ``mobilenet_v3_large``; ``weights``: None, a file (``mobilenet_v3_large-8738ca79.pth``) or a state_dict.

    kwargs: ``width_mult``, ``reduced_tail``, ``dilated``, ``dropout``, as in torchvision.
    """
    return _mobilenet_v3("mobilenet_v3_large", weights, num_classes, **kwargs)


def mobilenet_v3_small(*, weights=None, num_classes=1000, **kwargs):
    """torchvision's ``mobilenet_v3_small``; ``weights``: None, a file (``mobilenet_v3_small-047dcff4.pth``) or a state_dict."""
    return _mobilenet_v3("mobilenet_v3_small", weights, num_classes, **kwargs)
