"""U-Net (Ronneberger, Fischer and Brox, 2015): skips that concatenate.

Like SegNet it goes down with pooling and back up, but instead of pooling
indices it keeps each encoder stage's whole feature map and *concatenates*
it to the decoder's upsampled map of the same size, so the decoder sees
both the coarse "what" and the fine "where". It costs more memory than SegNet.

::

    (N,3,H,W) -> [conv-bn-relu x2, maxpool] x (stages-1) -> bottom
              -> [upsample, cat skip, conv-bn-relu x2] x (stages-1) -> conv1x1 -> (N,classes,H,W)
"""
from .. import nn
from ..nn import functional as F
from ..ops.shape import cat
from .blocks import conv_bn_relu


class UNet(nn.Module):
    """U-Net with configurable widths and upsampling.

    Args:
        num_classes, in_channels, widths: channels per level (first = full resolution).
        upsampling: "transposed" (learned ConvTranspose2d k2 s2) or "bilinear"
            (F.interpolate, then the convs learn the rest).
    Odd sizes work: each upsampled map is resized to its skip's exact size.
    Shapes: (N, in_channels, H, W) -> (N, num_classes, H, W).
    """

    def __init__(self, num_classes=23, in_channels=3, widths=(32, 64, 128, 256), upsampling="transposed"):
        super().__init__()
        if upsampling not in ("transposed", "bilinear"):
            raise ValueError(f"UNet upsampling must be 'transposed' or 'bilinear', got {upsampling!r}")
        self.upsampling = upsampling
        double = lambda c_in, c_out: nn.Sequential(conv_bn_relu(c_in, c_out), conv_bn_relu(c_out, c_out))  # noqa: E731
        self.down = nn.ModuleList()
        channels = in_channels
        for width in widths:
            self.down.append(double(channels, width))
            channels = width
        self.pool = nn.MaxPool2d(2, 2)
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for deep, shallow in zip(widths[:0:-1], widths[-2::-1]):
            if upsampling == "transposed":
                self.up.append(nn.ConvTranspose2d(deep, shallow, kernel_size=2, stride=2))
                self.merge.append(double(2 * shallow, shallow))
            else:
                self.up.append(nn.Identity())
                self.merge.append(double(deep + shallow, shallow))
        self.classifier = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    def forward(self, x):
        skips = []
        for i, stage in enumerate(self.down):
            if i:
                x = self.pool(x)
            x = stage(x)
            skips.append(x)
        skips.pop()  # the bottom level is x itself
        for up, merge in zip(self.up, self.merge):
            skip = skips.pop()
            x = up(x) if self.upsampling == "transposed" else F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            if x.shape[-2:] != skip.shape[-2:]:  # odd sizes: pooling floored, so pad back to the skip's size
                x = F.pad(x, (0, skip.shape[-1] - x.shape[-1], 0, skip.shape[-2] - x.shape[-2]))
            x = merge(cat([skip, x], dim=1))
        return self.classifier(x)
