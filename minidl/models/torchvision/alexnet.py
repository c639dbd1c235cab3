"""AlexNet (Krizhevsky et al., 2012), in torchvision's version (``alexnet``; after "One weird trick", 2014).

Five convolutions with ReLU and three overlapping 3x3/stride-2 max-pools, then a 6x6 adaptive
average pool (so any input of at least 63x63 works) and three Linear layers with dropout.
Most of its 61M parameters sit in the first Linear (9216 -> 4096).

Stages (224x224 input): there is no stride-2 stage, the first conv already strides by 4:
stride 4 (conv1: 64 ch, 55x55), 8 (pool + conv2: 192, 27x27), 16 (pool + conv3-5: 256, 13x13),
32 (pool: 256, 6x6).
"""
from __future__ import annotations

from ... import nn
from .backbone import Backbone, FeatureStage
from .blocks import load_weights


class AlexNet(Backbone):
    """``features`` -> ``avgpool`` (6x6) -> flatten -> ``classifier``. (N, 3, H, W) -> (N, num_classes)."""

    def __init__(self, num_classes=1000, dropout=0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))

    def feature_stages(self):
        f = self.features  # slices of a Sequential share its layers
        return [FeatureStage(4, 64, f[0:2]), FeatureStage(8, 192, f[2:5]), FeatureStage(16, 256, f[5:12]),
                FeatureStage(32, 256, f[12:13])]


def alexnet(*, weights=None, num_classes=1000, **kwargs):
    """torchvision's ``alexnet``; ``weights``: None, a file (``alexnet-owt-7be5be79.pth``) or a state_dict."""
    return load_weights(AlexNet(num_classes=num_classes, **kwargs), weights)
