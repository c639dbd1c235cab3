"""An FCN-style network: strided convolutions down, transposed convolutions up, skips added.

The tutorial's second recipe for "downsample slowly, then upsample slowly":
each encoder stage halves the resolution with a stride-2 convolution (a pooling
that learns), each decoder stage doubles it with a transposed convolution
(an upsampling that learns: kernel 4, stride 2, padding 1 gives exactly
``(in-1)*2 - 2 + 4 = 2*in``), and the encoder's feature map of the same
resolution is *added* to it (the FCN skip connection), which brings back detail.

::

    (N,3,H,W) -> stem -> [stride-2 conv-bn-relu, conv-bn-relu] x stages
              -> [convT x2 + skip, conv-bn-relu] x stages -> conv1x1 -> (N,classes,H,W)
"""
from .. import nn
from ..nn import functional as F
from .blocks import conv_bn_relu


class FCN(nn.Module):
    """Strided-conv encoder, transposed-conv decoder with additive skips.

    Args: num_classes, in_channels, widths (channels per resolution, the first
    at full resolution). H and W are padded internally to a multiple of
    2**(len(widths)-1) and the output is cropped back, so any size works.
    Shapes: (N, in_channels, H, W) -> (N, num_classes, H, W).
    """

    def __init__(self, num_classes=23, in_channels=3, widths=(32, 64, 128, 256)):
        super().__init__()
        self.stem = nn.Sequential(conv_bn_relu(in_channels, widths[0]), conv_bn_relu(widths[0], widths[0]))
        self.down = nn.ModuleList(
            nn.Sequential(conv_bn_relu(w_in, w_out, stride=2), conv_bn_relu(w_out, w_out))
            for w_in, w_out in zip(widths[:-1], widths[1:])
        )
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(w_in, w_out, kernel_size=4, stride=2, padding=1)
            for w_in, w_out in zip(widths[:0:-1], widths[-2::-1])
        )
        self.refine = nn.ModuleList(conv_bn_relu(w, w) for w in widths[-2::-1])
        self.classifier = nn.Conv2d(widths[0], num_classes, kernel_size=1)
        self.multiple = 2 ** (len(widths) - 1)

    def forward(self, x):
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % self.multiple, -width % self.multiple
        if pad_h or pad_w:  # strided convs would round odd sizes; pad so every level halves exactly
            x = F.pad(x, (0, pad_w, 0, pad_h))
        x = self.stem(x)
        skips = []
        for stage in self.down:
            skips.append(x)
            x = stage(x)
        for upsample, refine in zip(self.up, self.refine):
            x = refine(upsample(x) + skips.pop())
        x = self.classifier(x)
        return x[:, :, :height, :width] if pad_h or pad_w else x
