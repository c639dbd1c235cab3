"""The segmentation models: shapes for any input size, parameter counts, and that they can learn."""
import numpy as np
import pytest

import minidl
import minidl.nn.functional as F
from minidl import optim
from minidl.data import SyntheticScenes
from minidl.data.transforms import ToTensor
from minidl.models import FCN, SegNet, SegNetBasic, SegNetSmall, UNet, build_model


@pytest.mark.parametrize("name", ["segnet", "segnet_small", "segnet_basic", "fcn", "unet"])
@pytest.mark.parametrize("size", [(16, 16), (17, 23), (19, 30)])
def test_output_has_the_input_size_and_one_channel_per_class(name, size):
    model = build_model(name, 5)
    with minidl.no_grad():
        out = model.eval()(minidl.randn(1, 3, *size))
    assert out.shape == (1, 5, *size)


def test_segnet_small_has_the_stated_parameter_count():
    assert sum(p.numel() for p in SegNetSmall(23).parameters()) == 2_356_791


def test_segnet_basic_is_the_authors_network():
    """4 x (7x7 conv 64 + BN + ReLU + pool with indices), 4 x (unpool + 7x7 conv 64 + BN, no ReLU), 1x1 classifier."""
    model = SegNetBasic(11)
    conv7 = lambda c_in: c_in * 64 * 7 * 7 + 64  # noqa: E731  weights + bias
    batch_norm = 2 * 64                            # weight and bias (running statistics are buffers)
    encoder = conv7(3) + 3 * conv7(64) + 4 * batch_norm
    decoder = 4 * conv7(64) + 4 * batch_norm
    classifier = 64 * 11 + 11
    assert sum(p.numel() for p in model.parameters()) == encoder + decoder + classifier == 1_416_587
    assert all(isinstance(stage[0][2], minidl.nn.ReLU) for stage in model.encoders)
    assert all(len(stage[0]) == 2 for stage in model.decoders)  # conv, BN: no ReLU in the decoder
    assert model.encoders[0][0][0].kernel_size == (7, 7) and model.encoders[0][0][0].padding == (3, 3)
    with minidl.no_grad():
        out = model.eval()(minidl.randn(1, 3, 45, 37))  # odd sizes at every level: unpooling restores them
    assert out.shape == (1, 11, 45, 37)


def test_unet_with_bilinear_upsampling():
    out = UNet(4, widths=(8, 16, 32), upsampling="bilinear")(minidl.randn(2, 3, 13, 18))
    assert out.shape == (2, 4, 13, 18)


def test_bad_model_name_lists_the_choices():
    with pytest.raises(ValueError, match="segnet_small"):
        build_model("resnet", 3)


def _overfit(model, steps, lr):
    scenes = SyntheticScenes(2, size=(32, 32), seed=3)
    images = minidl.tensor(np.stack([scenes[i][0] for i in range(2)]))
    masks = minidl.tensor(np.stack([scenes[i][1] for i in range(2)]))
    optimizer = optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = F.cross_entropy(model(images), masks, ignore_index=-1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with minidl.no_grad():
        predictions = model.eval()(images).argmax(1)
    valid = masks >= 0
    return ((predictions == masks) & valid).sum().item() / valid.sum().item()


def test_a_small_segnet_overfits_two_synthetic_images():
    minidl.manual_seed(0)
    accuracy = _overfit(SegNet(23, widths=(16, 32), convs_per_stage=1), steps=60, lr=0.01)
    assert accuracy >= 0.95


def test_the_tutorials_loss_snippet_runs_with_minidl():
    """The seed's first snippet with `torch` replaced by `minidl` (and a 1x1 conv as dummy model)."""
    train_data = SyntheticScenes(4, size=(24, 24), seed=1, transform=ToTensor())
    dummy_model = minidl.nn.Conv2d(3, 23, 1)
    printed = []
    for (inputs, targets) in train_data[0:4]:
        inputs, targets = inputs, targets
        outputs = dummy_model(inputs.unsqueeze(0))
        loss = minidl.nn.CrossEntropyLoss(ignore_index=-1, reduction='mean')
        losses = loss(outputs, targets.unsqueeze(0))
        printed.append(losses.item())
    assert len(printed) == 4 and all(np.isfinite(printed))
