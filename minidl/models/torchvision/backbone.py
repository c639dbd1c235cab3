"""Feature stages: how a decoder taps an encoder at strides 2, 4, 8, 16 and 32.

A classification network shrinks the image in steps; between steps the layers keep
the resolution. A *stage* is the run of layers that ends just before the next step
down, so its output is the last (and most processed) feature map at its stride. A
U-Net-like decoder upsamples from the deepest stage and merges the shallower ones::

    features = model.forward_features(images)      # OrderedDict stride -> (N, C_s, H/s, W/s)
    features[4], features[32]

``model.feature_stages()`` lists ``FeatureStage(stride, channels, module)``; running the
modules one after another reproduces the network's trunk. The modules are the model's own
(shared, not copies), so training through them trains the model.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

from ... import nn


class FeatureStage(NamedTuple):
    """One stage: ``module`` maps the previous stage's output to (N, channels, H/stride, W/stride)."""
    stride: int
    channels: int
    module: nn.Module


class Backbone(nn.Module):
    """A model that can also run as an encoder: subclasses define ``feature_stages()``."""

    def feature_stages(self):
        """The stages in order, as a list of FeatureStage."""
        raise NotImplementedError

    def forward_features(self, x):
        """x (N, 3, H, W) -> OrderedDict stride -> feature map (N, C, ~H/stride, ~W/stride), shallow to deep."""
        features = OrderedDict()
        for stage in self.feature_stages():
            x = stage.module(x)
            features[stage.stride] = x
        return features


def stages_of_chain(layers):
    """Split a chain of layers (each with ``.stride`` and ``.out_channels``) where the stride grows.

    A stage ends before every layer with stride > 1 (and at the end); its stride is the
    product of the strides so far. A dilated layer (stride 1) stays in the previous stage.
    """
    stages, group, stride, channels = [], [], 1, None
    for layer in layers:
        if layer.stride > 1 and group:
            stages.append(FeatureStage(stride, channels, nn.Sequential(*group)))
            group = []
        stride *= layer.stride
        channels = layer.out_channels
        group.append(layer)
    stages.append(FeatureStage(stride, channels, nn.Sequential(*group)))
    return stages
