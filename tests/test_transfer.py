"""The transfer-learning recipes: old-school nets on pretrained encoders, head replacement (lazy)."""
from collections import OrderedDict

import numpy as np
import pytest

import minidl
import minidl.nn as nn
from minidl.models import (
    OldSchool, SegNetSmall, build_model, freeze_pretrained, head_modules, lraspp_mobilenet_v3_large, old_school,
    replace_head, resnet18, trained_from_scratch,
)


@pytest.mark.parametrize("backbone, size", [("resnet18", (33, 47)), ("mobilenet_v2", (31, 40)),
                                            ("alexnet", (67, 70)), ("segnet_small", (19, 30)),
                                            ("segnet_basic", (21, 17))])
def test_old_school_output_has_the_input_size(backbone, size):
    model = build_model(f"oldschool_{backbone}", 5)
    with minidl.no_grad():
        out = model.eval()(minidl.randn(1, 3, *size))
    assert out.shape == (1, 5, *size)
    assert len(model.decoder) == len(model.encoder) - 1 and model.classifier.out_channels == 5


def test_old_school_encoder_is_the_backbones_trunk():
    backbone = resnet18().eval()
    model = OldSchool(backbone, 4).eval()
    assert model.strides == (2, 4, 8, 16, 32)
    assert model.encoder[0][0] is backbone.conv1  # the same layers, not copies
    x = minidl.randn(1, 3, 40, 36)
    with minidl.no_grad():
        expected = list(backbone.forward_features(x).values())
        for stage, want in zip(model.encoder, expected):
            x = stage(x)
            np.testing.assert_array_equal(x.numpy(), want.numpy())
    assert "fc.weight" not in model.backbone_keys.values()  # the classification head is left out
    assert model.backbone_keys["0.0.weight"] == "conv1.weight"


def test_old_school_loads_the_backbones_weights_whatever_its_head():
    minidl.manual_seed(1)
    pretrained = resnet18(num_classes=7)  # another class count: its fc is ignored
    model = old_school("resnet18", 3, weights=pretrained.state_dict())
    own = model.encoder.state_dict()
    for own_key, their_key in model.backbone_keys.items():
        np.testing.assert_array_equal(own[own_key].numpy(), pretrained.state_dict()[their_key].numpy())
    # files saved before PyTorch 0.4.1 have no num_batches_tracked: the rest still loads
    old_file = OrderedDict((k, v) for k, v in pretrained.state_dict().items() if "num_batches_tracked" not in k)
    old_school("resnet18", 3, weights=old_file)
    incomplete = OrderedDict((k, v) for k, v in old_file.items() if k != "layer2.0.conv1.weight")
    with pytest.raises(ValueError, match=r"lack 1 of the encoder's .*'layer2\.0\.conv1\.weight'"):
        old_school("resnet18", 3, weights=incomplete)
    with pytest.raises(ValueError, match="unknown old-school backbone 'vgg16'"):
        old_school("vgg16", 3)


@pytest.mark.parametrize("make, heads", [
    (lambda: lraspp_mobilenet_v3_large(num_classes=21), ["classifier.low_classifier", "classifier.high_classifier"]),
    (lambda: SegNetSmall(11), ["classifier"]),
])
def test_replace_head_keeps_everything_else(make, heads):
    minidl.manual_seed(0)
    model = make()
    before = model.state_dict()
    new = replace_head(model, 23)
    assert list(new) == heads == list(head_modules(model))
    after = model.state_dict()
    head_keys = {f"{head}.{name}" for head in heads for name in ("weight", "bias")}
    assert set(before) == set(after) and head_keys <= set(after)
    for key in after:
        if key in head_keys:
            assert after[key].shape[0] == 23 and before[key].shape[0] != 23, key
        else:
            assert after[key] is not None and np.array_equal(after[key].numpy(), before[key].numpy()), key
    for head, layer in new.items():
        assert model.get_submodule(head) is layer and layer.out_channels == 23
        assert layer.in_channels == dict(model.named_modules())[head].in_channels
    assert trained_from_scratch(model) == list(new.values())


def test_freeze_pretrained_trains_only_the_new_parts():
    lazy = SegNetSmall(11)
    new = replace_head(lazy, 5)
    freeze_pretrained(lazy).train()
    assert [p for p in lazy.parameters() if p.requires_grad] == list(new["classifier"].parameters())
    assert not any(m.training for m in lazy.modules() if isinstance(m, nn.BatchNorm2d))

    old = freeze_pretrained(build_model("oldschool_segnet", 5)).train()
    assert nn.is_frozen(old.encoder) and not nn.is_frozen(old.decoder) and not nn.is_frozen(old.classifier)
    assert all(m.training for m in old.decoder.modules())


def test_head_of_an_unknown_network_is_an_error():
    with pytest.raises(TypeError, match="don't know the output layers of a Sequential"):
        head_modules(build_model("pixelwise", 3))
