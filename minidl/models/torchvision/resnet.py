"""ResNet-18 and ResNet-34 (He et al., 2015), torchvision's ``resnet18``/``resnet34``.

The idea: each block learns a *residual* F(x) and outputs relu(F(x) + x). The identity path
lets gradients reach early layers unchanged, so very deep stacks still train. When a block
halves the resolution or changes the width, ``downsample`` (1x1 conv, stride 2, + BN) brings
x to F(x)'s shape.

Stages (224x224 input): stride 2 (conv1: 64 ch, 112x112), 4 (maxpool + layer1: 64),
8 (layer2: 128), 16 (layer3: 256), 32 (layer4: 512, 7x7).
"""
from __future__ import annotations

from ... import nn
from .backbone import Backbone, FeatureStage
from .blocks import init_like_torchvision, load_weights


class BasicBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), two 3x3 convs.

    (N, inplanes, H, W) -> (N, planes, H/stride, W/stride); ``downsample`` (or None) is the shortcut.
    """

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet(Backbone):
    """conv1 (7x7, stride 2) -> bn1 -> relu -> maxpool -> layer1..layer4 -> avgpool -> fc.

    ``layers``: blocks per stage (ResNet-18: [2, 2, 2, 2]). Shapes: (N, 3, H, W) -> (N, num_classes).
    ``zero_init_residual`` starts every block's last BN at 0, so each block begins as the identity.
    """

    def __init__(self, block, layers, num_classes=1000, zero_init_residual=False):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        init_like_torchvision(self, conv_nonlinearity="relu")
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, BasicBlock):
                    nn.init.zeros_(module.bn2.weight)

    def _make_layer(self, block, planes, blocks, stride=1):
        """A stage: ``blocks`` blocks of width ``planes``; the first one strides and gets the shortcut conv."""
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))

    def feature_stages(self):
        width = self.inplanes // 8  # layer1's width (layer4 has 8x; fc may have been replaced)
        return [
            FeatureStage(2, 64, nn.Sequential(self.conv1, self.bn1, self.relu)),
            FeatureStage(4, width, nn.Sequential(self.maxpool, self.layer1)),
            FeatureStage(8, width * 2, self.layer2),
            FeatureStage(16, width * 4, self.layer3),
            FeatureStage(32, width * 8, self.layer4),
        ]


def resnet18(*, weights=None, num_classes=1000, **kwargs):
    """torchvision's ``resnet18``; ``weights``: None, a file (``resnet18-f37072fd.pth``) or a state_dict."""
    return load_weights(ResNet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes, **kwargs), weights)


def resnet34(*, weights=None, num_classes=1000, **kwargs):
    """torchvision's ``resnet34``; ``weights``: None, a file (``resnet34-b627a593.pth``) or a state_dict."""
    return load_weights(ResNet(BasicBlock, [3, 4, 6, 3], num_classes=num_classes, **kwargs), weights)
