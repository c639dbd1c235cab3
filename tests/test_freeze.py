"""nn.freeze / nn.unfreeze: frozen weights never move, frozen BatchNorm stays in eval mode, and
backward does no work below the frozen boundary."""
import numpy as np
import pytest

import minidl
import minidl.nn as nn
import minidl.nn.functional as F
from minidl import optim
from minidl.models import OldSchool, SegNet
from minidl.nn.functional import conv as conv_ops


def small_old_school(num_classes=3):
    """An OldSchool net on a tiny SegNet encoder: stages of 4, 8, 16 channels, one conv each."""
    minidl.manual_seed(0)
    return OldSchool(SegNet(num_classes, widths=(4, 8, 16), convs_per_stage=1), num_classes)


def batch(num_classes=3):
    rng = np.random.default_rng(0)
    images = minidl.tensor(rng.standard_normal((2, 3, 12, 13)).astype(np.float32))
    return images, minidl.tensor(rng.integers(0, num_classes, (2, 12, 13)))


def train_steps(model, optimizer, steps=3):
    images, masks = batch()
    model.train()
    for _ in range(steps):
        loss = F.cross_entropy(model(images), masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def snapshot(module):
    return {key: value.numpy().copy() for key, value in module.state_dict().items()}


@pytest.mark.parametrize("make_optimizer", [
    lambda params: optim.AdamW(params, lr=0.1, weight_decay=0.1),
    lambda params: optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.1),
], ids=["adamw", "sgd"])
def test_frozen_parameters_stay_bit_identical_and_get_no_gradient(make_optimizer):
    model = small_old_school()
    nn.freeze(model.encoder)
    encoder_before, classifier_before = snapshot(model.encoder), model.classifier.weight.detach().numpy().copy()
    train_steps(model, make_optimizer(model.parameters()))  # the optimizer holds the frozen parameters too
    for name, param in model.encoder.named_parameters():
        assert param.grad is None and not param.requires_grad, name
    for key, value in snapshot(model.encoder).items():  # weights and BatchNorm statistics alike
        np.testing.assert_array_equal(value, encoder_before[key], err_msg=key)
    assert not np.array_equal(model.classifier.weight.detach().numpy(), classifier_before)  # the rest did train
    assert nn.is_frozen(model.encoder) and not nn.is_frozen(model.decoder)
    encoder_size = sum(p.numel() for p in model.encoder.parameters())
    assert nn.trainable_parameter_count(model) == sum(p.numel() for p in model.parameters()) - encoder_size > 0


def test_frozen_batchnorm_stays_in_eval_mode_until_unfrozen():
    model = small_old_school()
    nn.freeze(model.encoder)
    model.train()
    norms = [m for m in model.encoder.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and not any(norm.training for norm in norms)
    assert all(m.training for m in model.decoder.modules()) and model.encoder.training
    before = snapshot(model.encoder)
    images, _ = batch()
    features = model.encoder[0](images)  # a train-mode forward through the frozen part
    for key, value in snapshot(model.encoder).items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)
    # it normalised with the running statistics, exactly as in eval mode
    model.eval()
    np.testing.assert_array_equal(features.detach().numpy(), model.encoder[0](images).detach().numpy())

    nn.unfreeze(model.encoder)  # back to normal: eval now, train mode with the model's next train()
    assert all(p.requires_grad for p in model.encoder.parameters())
    model.train()
    assert all(norm.training for norm in norms)
    model.encoder[0](images)
    assert not np.array_equal(model.encoder[0][0][1].running_mean.numpy(), before["0.0.1.running_mean"])


@pytest.fixture
def conv_backward_calls(monkeypatch):
    """Record (layer name, whether dx was wanted) for every backward of the conv2d Function.

    ``layers`` (filled by the test) names the weights: forward tags its ctx with the layer whose
    weight array it got, so backward can say which layer ran.
    """
    layers, calls = {}, []
    forward, backward = conv_ops.Conv2d.forward, conv_ops.Conv2d.backward

    def tagging_forward(ctx, x, weight, *rest):
        ctx.layer = layers.get(id(weight), "?")
        return forward(ctx, x, weight, *rest)

    def counting_backward(ctx, grad):
        calls.append((ctx.layer, ctx.needs_input_grad[0]))
        return backward(ctx, grad)

    monkeypatch.setattr(conv_ops.Conv2d, "forward", staticmethod(tagging_forward))
    monkeypatch.setattr(conv_ops.Conv2d, "backward", staticmethod(counting_backward))
    return layers, calls


def conv_names(module, prefix):
    return [f"{prefix}.{name}" if name else prefix for name, m in module.named_modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize("frozen", [True, False])
def test_backward_stops_at_the_frozen_boundary(conv_backward_calls, frozen):
    layers, calls = conv_backward_calls
    model = small_old_school()
    layers.update({id(m.weight._array): name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)})
    if frozen:
        nn.freeze(model.encoder)
    images, masks = batch()
    F.cross_entropy(model.train()(images), masks).backward()

    encoder, trainable = conv_names(model.encoder, "encoder"), conv_names(model.decoder, "decoder") + ["classifier"]
    called = [layer for layer, _ in calls]
    assert sorted(called) == sorted(trainable + ([] if frozen else encoder))  # each layer once; frozen ones never
    no_input_gradient = [layer for layer, wanted in calls if not wanted]
    # frozen: the first trainable layer (the deepest decoder step, fed only encoder features) computes
    # its weight gradient but no gradient for its input; unfrozen: only the first conv, fed the image
    assert no_input_gradient == (["decoder.0.0"] if frozen else ["encoder.0.0.0"])


def test_freeze_rejects_what_is_not_a_module():
    with pytest.raises(TypeError, match="freeze expects an nn.Module, got list"):
        nn.freeze([nn.Linear(2, 2)])
