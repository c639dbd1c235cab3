"""Building blocks shared by the segmentation models."""
from .. import nn


def conv_bn_relu(in_channels, out_channels, kernel_size=3, stride=1, relu=True):
    """Conv (same padding for odd kernels) -> BatchNorm2d -> ReLU; the unit all three models repeat.

    (N, in, H, W) -> (N, out, ceil(H/stride), ceil(W/stride)). The conv keeps
    its bias (PyTorch's default, and what SegNetSmall's parameter count assumes),
    although BatchNorm's shift makes it redundant. ``relu=False`` leaves the ReLU
    out (SegNet-Basic's decoder); the state_dict keys (0 = conv, 1 = BN) are the same.
    """
    layers = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2),
        nn.BatchNorm2d(out_channels),
    ]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)
