"""Pieces the torchvision models share: ``make_divisible``, ``Conv2dNormActivation``,
``SqueezeExcitation``, torchvision's weight initialisation, and loading ``weights=``.

Class and attribute names are torchvision's (``torchvision.ops.misc``), because they
become the state_dict keys: ``features.3.block.1.0.weight`` is the conv (``0``) of the
second layer (``1``) of a block's ``block`` Sequential.
"""
from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np

from ... import nn
from ...serialization import load


def make_divisible(value, divisor=8):
    """Round a channel count to the nearest multiple of ``divisor``, but never below 90% of it.

    MobileNets scale their widths by ``width_mult``; multiples of 8 suit vectorised kernels.
    (The original TensorFlow rule, which torchvision and its weights use.)
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class Conv2dNormActivation(nn.Sequential):
    """Conv2d -> norm (BatchNorm2d) -> activation, as a Sequential whose children are ``0``, ``1``, ``2``.

    ``padding`` defaults to ``(kernel_size - 1) // 2 * dilation``, which keeps H and W at stride 1
    (and divides them by ``stride`` otherwise, rounding up). The conv has a bias only without a
    norm layer (BatchNorm's shift would make it redundant). ``norm_layer`` or ``activation_layer``
    None leaves that layer out. Shapes: (N, in_channels, H, W) -> (N, out_channels, H', W').
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=None, groups=1,
                 norm_layer=nn.BatchNorm2d, activation_layer=nn.ReLU, dilation=1, inplace=True, bias=None):
        if padding is None:
            padding = (kernel_size - 1) // 2 * dilation
        layers = [nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation=dilation,
                            groups=groups, bias=norm_layer is None if bias is None else bias)]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            layers.append(activation_layer(inplace=inplace))
        super().__init__(*layers)
        self.out_channels, self.stride = out_channels, stride  # read by feature_stages()


class SqueezeExcitation(nn.Module):
    """Reweight channels by a gate computed from the whole image (Hu et al., 2018).

    scale = scale_activation(fc2(activation(fc1(avgpool(x)))))       (N, C, 1, 1)
    out   = scale * x                                                 (N, C, H, W)

    ``fc1``/``fc2`` are 1x1 convolutions (C -> squeeze_channels -> C) acting on the pooled
    (N, C, 1, 1) vector: a tiny MLP whose output, in (0, 1), says how much each channel counts.
    """

    def __init__(self, input_channels, squeeze_channels, activation=nn.ReLU, scale_activation=nn.Sigmoid):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def forward(self, input):
        scale = self.fc2(self.activation(self.fc1(self.avgpool(input))))
        return self.scale_activation(scale) * input


def init_like_torchvision(model, linear_std=None, conv_nonlinearity="leaky_relu"):
    """torchvision's initialisation for MobileNets and ResNets (training from scratch then matches).

    Convs: He-normal with fan_out, biases zero; BatchNorm: weight 1, bias 0; Linear layers:
    N(0, ``linear_std``) weights and zero biases, or PyTorch's default when ``linear_std`` is None.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity=conv_nonlinearity)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear) and linear_std is not None:
            nn.init.normal_(module.weight, 0.0, linear_std)
            nn.init.zeros_(module.bias)


def load_weights(model, weights):
    """``weights``: None (keep the fresh initialisation), a file path, or a state_dict. Returns ``model``.

    A path is read with ``minidl.load`` (torchvision's ``.pth``, safetensors or minidl's .npz);
    ``load_state_dict`` is strict, so a wrong architecture or ``num_classes`` names the keys.
    """
    if weights is None:
        return model
    state_dict = load(weights) if isinstance(weights, (str, os.PathLike)) else weights
    model.load_state_dict(_with_batch_counts(model, state_dict))
    return model


def _with_batch_counts(model, state_dict):
    """Files saved before PyTorch 0.4.1 have no BatchNorm ``num_batches_tracked`` at all; PyTorch
    then starts those counts at 0, and so does this. (One missing among others stays an error.)"""
    if any(key.endswith("num_batches_tracked") for key in state_dict):
        return state_dict
    counts = [key for key in model.state_dict() if key.endswith("num_batches_tracked")]
    return OrderedDict([*state_dict.items(), *((key, np.zeros((), np.int64)) for key in counts)])
