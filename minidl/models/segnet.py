"""SegNet (Badrinarayanan, Kendall and Cipolla, 2015): an encoder-decoder that remembers where the maxima were.

The encoder halves the resolution at each stage with max pooling and keeps
the pooling *indices* -- for every window, which of its pixels was the max.
The decoder upsamples with ``max_unpool2d``, putting each value back at the
remembered position (zeros elsewhere), and convolutions fill in the rest.
Boundaries come back sharp at almost no memory cost: an index per pooled
pixel instead of the whole encoder feature map (as U-Net keeps).

::

    (N,3,H,W) -> [conv-bn-relu x k, pool] x stages -> [unpool, conv-bn-relu x k] x stages -> conv1x1 -> (N,classes,H,W)
"""
from .. import nn
from .blocks import conv_bn_relu
from .torchvision.backbone import Backbone, FeatureStage


class SegNet(Backbone):
    """SegNet with configurable stage widths.

    Args:
        num_classes: output channels (23 for MSRC-v2).
        in_channels: input channels (3 for RGB).
        widths: channels of each encoder stage, e.g. (64, 128, 256, 512).
        convs_per_stage: conv-bn-relu units per stage (2 in SegNetSmall).
        kernel_size: of every conv but the classifier (3; 7 in SegNet-Basic).
        decoder_relu: whether the decoder's units end in a ReLU (SegNet-Basic's do not).

    Each decoder stage mirrors an encoder stage: unpool with that stage's
    indices and size, ``convs_per_stage - 1`` units at the stage width, then one
    unit down to the next (shallower) stage's width; the shallowest stays at its
    width. Any input size works: unpooling restores odd sizes exactly.
    Shapes: (N, in_channels, H, W) -> (N, num_classes, H, W).
    As a ``Backbone`` its encoder stages feed an old-school decoder (``minidl.models.transfer``).
    """

    def __init__(self, num_classes=23, in_channels=3, widths=(64, 128, 256, 512), convs_per_stage=2, kernel_size=3,
                 decoder_relu=True):
        super().__init__()
        if convs_per_stage < 1 or not widths:
            raise ValueError(f"SegNet needs at least one stage and one conv per stage, got widths={widths}, convs_per_stage={convs_per_stage}")
        self.widths = tuple(widths)
        unit = lambda c_in, c_out, relu=True: conv_bn_relu(c_in, c_out, kernel_size, relu=relu)  # noqa: E731
        self.encoders = nn.ModuleList()
        channels = in_channels
        for width in widths:
            units = [unit(channels, width)] + [unit(width, width) for _ in range(convs_per_stage - 1)]
            self.encoders.append(nn.Sequential(*units))
            channels = width
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, 2)
        self.decoders = nn.ModuleList()
        for i in reversed(range(len(widths))):
            width, next_width = widths[i], widths[max(i - 1, 0)]
            units = [unit(width, width, decoder_relu) for _ in range(convs_per_stage - 1)] + [unit(width, next_width, decoder_relu)]
            self.decoders.append(nn.Sequential(*units))
        self.classifier = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    def forward(self, x):
        remembered = []  # (indices, size before pooling) per stage, deepest last
        for encoder in self.encoders:
            x = encoder(x)
            size = x.shape[-2:]
            x, indices = self.pool(x)
            remembered.append((indices, size))
        for decoder in self.decoders:
            indices, size = remembered.pop()
            x = self.unpool(x, indices, output_size=size)
            x = decoder(x)
        return self.classifier(x)

    def feature_stages(self):
        """The encoder as stages at strides 1, 2, 4, ...: stage i pools (plain max pooling: an
        old-school decoder needs no indices), then runs ``encoders[i]``; the first does not pool."""
        stages = [FeatureStage(1, self.widths[0], self.encoders[0])]
        for i, (width, encoder) in enumerate(zip(self.widths[1:], self.encoders[1:]), start=1):
            stages.append(FeatureStage(2**i, width, nn.Sequential(nn.MaxPool2d(2, 2), encoder)))
        return stages


class SegNetSmall(SegNet):
    """The benchmark network: SegNet with stages of 32, 64, 128 and 256 channels, 2 convs each.

    2,356,791 parameters for 23 classes. ``benchmarks/`` builds the same
    network in PyTorch to compare speed and losses step for step.
    """

    def __init__(self, num_classes=23, in_channels=3):
        super().__init__(num_classes, in_channels, widths=(32, 64, 128, 256), convs_per_stage=2)


class SegNetBasic(SegNet):
    """SegNet-Basic, the smaller network the SegNet authors train on CamVid (their Caffe
    ``segnet_basic_train.prototxt``): 1,416,587 parameters for CamVid's 11 classes.

    Encoder: 4 x [7x7 conv, 64 channels (padding 3) -> BatchNorm -> ReLU -> 2x2 max pool with indices].
    Decoder: 4 x [max unpool with the matching indices and size -> 7x7 conv, 64 channels -> BatchNorm].
    The decoder has no ReLU: the authors' Caffe file puts none after the decoder's BatchNorm
    layers, and we follow it. Then a 1x1 conv classifier. (Their file also starts with a
    local response normalisation of the input; minidl's data pipeline normalises each
    channel instead, so there is no LRN layer here.) Caffe's pooling rounds odd sizes up
    (45 rows -> 23 at 480x360's deepest level); minidl's rounds down, as PyTorch's does by
    default, so one border row or column of an odd-sized map is not pooled; unpooling
    still restores the exact size.
    Shapes: (N, in_channels, H, W) -> (N, num_classes, H, W), any H and W.
    """

    def __init__(self, num_classes=11, in_channels=3):
        super().__init__(num_classes, in_channels, widths=(64, 64, 64, 64), convs_per_stage=1, kernel_size=7,
                         decoder_relu=False)
