"""minidl.models' torchvision-compatible models: structure, feature stages, and parity with torchvision.

Parity, for each model: random weights made in PyTorch (BatchNorm statistics and affine
parameters randomised too), written with ``torch.save(model.state_dict())``, read with
``minidl.load`` through the constructor's ``weights=``; then the same eval outputs
(float32, relative error <= 1e-4) and the same loss, gradients, running statistics and
parameters after one SGD step in training mode (dropout off: its random masks differ).
Relative error is max|ours - theirs| / max|theirs| over a tensor.
"""
import math

import numpy as np
import pytest

import minidl
import minidl.nn as nn
import minidl.nn.functional as F
import minidl.models as models
from minidl.models.torchvision.blocks import make_divisible
from tests.helpers import torch
from tests.torchvision_oracle import torchvision  # noqa: F401  (the fixture)

SIZE = 64  # every model takes 64x64 (AlexNet's minimum is 63)
EVAL_TOLERANCE = 1e-4  # float32 outputs
TRAIN_TOLERANCE = 1e-6  # the float64 training step (see test_parity_with_torchvision)

# name -> (minidl constructor, torchvision constructor, kwargs for both)
MODELS = {
    "alexnet": (models.alexnet, lambda tv, **kw: tv.models.alexnet(**kw), {"num_classes": 10}),
    "mobilenet_v2": (models.mobilenet_v2, lambda tv, **kw: tv.models.mobilenet_v2(**kw), {"num_classes": 10}),
    "mobilenet_v3_large": (models.mobilenet_v3_large, lambda tv, **kw: tv.models.mobilenet_v3_large(**kw),
                           {"num_classes": 10}),
    "mobilenet_v3_small": (models.mobilenet_v3_small, lambda tv, **kw: tv.models.mobilenet_v3_small(**kw),
                           {"num_classes": 10}),
    "resnet18": (models.resnet18, lambda tv, **kw: tv.models.resnet18(**kw), {"num_classes": 10}),
    "lraspp_mobilenet_v3_large": (
        models.lraspp_mobilenet_v3_large,
        lambda tv, **kw: tv.models.segmentation.lraspp_mobilenet_v3_large(weights_backbone=None, **kw),
        {"num_classes": 5},
    ),
}

# name -> [(stride, channels)] of forward_features
STAGES = {
    "alexnet": [(4, 64), (8, 192), (16, 256), (32, 256)],
    "mobilenet_v2": [(2, 16), (4, 24), (8, 32), (16, 96), (32, 1280)],
    "mobilenet_v3_large": [(2, 16), (4, 24), (8, 40), (16, 112), (32, 960)],
    "mobilenet_v3_small": [(2, 16), (4, 16), (8, 24), (16, 48), (32, 576)],
    "resnet18": [(2, 64), (4, 64), (8, 128), (16, 256), (32, 512)],
    "lraspp_mobilenet_v3_large": [(2, 16), (4, 24), (8, 40), (16, 960)],
}


def _input(batch=2, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, 3, SIZE, SIZE)).astype(np.float32)


def _logits(output):
    """Classification models return a tensor, LR-ASPP a dict {"out": tensor}."""
    return output["out"] if isinstance(output, dict) else output


def _numpy(tensor):
    return tensor.detach().cpu().numpy()


def _relative_error(ours, theirs):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape
    scale = np.abs(theirs).max() if theirs.size else 0.0
    return float(np.abs(ours - theirs).max() / scale) if scale > 0 else float(np.abs(ours).max())


# =========================================================================== without torch
@pytest.mark.parametrize("name", MODELS)
def test_feature_stages(name):
    """Strides and channels as documented; the stages use the model's own layers and reproduce its trunk."""
    make, _, kwargs = MODELS[name]
    model = make(**kwargs).eval()
    x = minidl.tensor(_input(batch=1))
    with minidl.no_grad():
        features = model.forward_features(x)
    assert [(s, f.shape[1]) for s, f in features.items()] == STAGES[name]
    assert [(s.stride, s.channels) for s in model.feature_stages()] == STAGES[name]
    if name != "alexnet":  # "same" padding everywhere: exactly H / stride
        assert all(f.shape[2:] == (math.ceil(SIZE / s),) * 2 for s, f in features.items())
    own = {id(p) for p in model.parameters()}
    staged = {id(p) for stage in model.feature_stages() for p in stage.module.parameters()}
    assert staged <= own
    if hasattr(model, "features"):  # AlexNet, MobileNets: the stages are exactly `features`
        assert staged == {id(p) for p in model.features.parameters()}
        with minidl.no_grad():
            np.testing.assert_array_equal(_numpy(list(features.values())[-1]), _numpy(model.features(x)))


def test_constructor_loads_weights_from_a_path_or_a_state_dict(tmp_path):
    model = models.mobilenet_v3_small(num_classes=3).eval()
    minidl.save(model.state_dict(), tmp_path / "small.safetensors", format="safetensors")
    x = minidl.tensor(_input(batch=1))
    with minidl.no_grad():
        expected = _numpy(model(x))
        for weights in (tmp_path / "small.safetensors", str(tmp_path / "small.safetensors"), model.state_dict()):
            loaded = models.mobilenet_v3_small(num_classes=3, weights=weights).eval()
            np.testing.assert_array_equal(_numpy(loaded(x)), expected)


def test_files_from_before_batchnorm_counted_batches_load():
    """PyTorch < 0.4.1 saved no num_batches_tracked; such files load with the counts at 0, as in PyTorch."""
    model = models.mobilenet_v3_small(num_classes=3)
    old = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    loaded = models.mobilenet_v3_small(num_classes=3, weights=old)
    assert loaded.features[0][1].num_batches_tracked.item() == 0
    del old["features.0.1.weight"]
    with pytest.raises(RuntimeError, match="features.0.1.weight"):
        models.mobilenet_v3_small(num_classes=3, weights=old)


def test_make_divisible():
    assert [make_divisible(v) for v in (3, 4, 12, 15.9, 16 * 0.75, 91, 1280 * 1.4)] == [8, 8, 16, 16, 16, 88, 1792]
    assert all(make_divisible(v) >= 0.9 * v and make_divisible(v) % 8 == 0 for v in np.linspace(1, 2000, 777))


# =========================================================================== against torchvision
def _torch_and_minidl(torchvision, name, tmp_path, seed=0):
    """torchvision's model with random weights, and minidl's loaded from its torch.save file."""
    make, make_theirs, kwargs = MODELS[name]
    torch.manual_seed(seed)
    theirs = make_theirs(torchvision, **kwargs)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in theirs.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.2, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
                module.num_batches_tracked.fill_(seed + 3)
                module.weight.uniform_(0.5, 1.5, generator=generator)
            if getattr(module, "bias", None) is not None:  # zero after torchvision's init: make them count
                module.bias.normal_(0, 0.1, generator=generator)
    path = tmp_path / f"{name}.pth"
    torch.save(theirs.state_dict(), path)
    return theirs, make(weights=path, **kwargs)


def _module_tree(model):
    return [(name, type(module).__name__) for name, module in model.named_modules()]


def _gradient_errors(ours, theirs):
    """name -> relative error of each parameter's gradient.

    The denominator is at least 1e-6 of the model's largest gradient: some gradients are
    rounding noise around an exact zero (a BatchNorm bias before a conv and a training-mode
    BatchNorm, whose mean subtraction cancels any constant shift), where no relative error
    is meaningful.
    """
    their_grads = {k: p.grad.numpy() for k, p in theirs.named_parameters()}
    floor = 1e-6 * max(np.abs(g).max() for g in their_grads.values())
    return {k: float(np.abs(_numpy(p.grad) - their_grads[k]).max() / max(np.abs(their_grads[k]).max(), floor))
            for k, p in ours.named_parameters()}


def _dropout_off(model, dropout_type):
    for module in model.modules():
        if isinstance(module, dropout_type):
            module.eval()
    return model


@pytest.mark.parametrize("name", MODELS)
def test_parity_with_torchvision(torchvision, name, tmp_path):
    """Module tree, state_dict keys and shapes; eval outputs; one training step (loss, gradients,
    BatchNorm statistics, SGD update)."""
    theirs, ours = _torch_and_minidl(torchvision, name, tmp_path)
    assert _module_tree(ours) == _module_tree(theirs)
    assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == \
           [(k, tuple(v.shape)) for k, v in theirs.state_dict().items()]

    x = _input()
    with torch.no_grad():
        expected = _logits(theirs.eval()(torch.tensor(x))).numpy()
    with minidl.no_grad():
        actual = _numpy(_logits(ours.eval()(minidl.tensor(x))))
    assert np.abs(expected).max() > 1e-3 and np.isfinite(expected).all()  # not a degenerate comparison
    assert _relative_error(actual, expected) <= EVAL_TOLERANCE

    # The training step runs in float64: float32 rounding alone moves gradients of these deep
    # networks by ~1e-4 from the exact ones, in PyTorch as in minidl; float64 shows the math is the
    # same. (To 1e-6, not 1e-12: PyTorch's hardsigmoid backward multiplies by 1/6 rounded to float32,
    # 0.1666666716..., even in float64 -- a 3e-8 relative difference in MobileNetV3's SE gradients.)
    _dropout_off(theirs.train().double(), torch.nn.Dropout)
    _dropout_off(ours.train().double(), nn.Dropout)
    x = _input(seed=1).astype(np.float64)
    classes = MODELS[name][2]["num_classes"]
    target = np.random.default_rng(2).integers(0, classes, (2, SIZE, SIZE) if name.startswith("lraspp") else (2,))
    their_loss = torch.nn.functional.cross_entropy(_logits(theirs(torch.tensor(x))), torch.tensor(target))
    their_loss.backward()
    our_loss = F.cross_entropy(_logits(ours(minidl.tensor(x))), minidl.tensor(target))
    our_loss.backward()
    assert _relative_error(_numpy(our_loss), their_loss.detach().numpy()) <= TRAIN_TOLERANCE
    errors = _gradient_errors(ours, theirs)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= TRAIN_TOLERANCE, f"gradient of {worst}: relative error {errors[worst]:.2e}"
    their_state = theirs.state_dict()
    for key, value in ours.state_dict().items():  # running statistics updated from the batch
        if "running" in key or "num_batches" in key:
            assert _relative_error(_numpy(value), their_state[key].numpy()) <= TRAIN_TOLERANCE, key

    torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9).step()
    minidl.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9).step()
    their_parameters = dict(theirs.named_parameters())
    for key, value in ours.named_parameters():
        assert _relative_error(_numpy(value), their_parameters[key].detach().numpy()) <= TRAIN_TOLERANCE, key


@pytest.mark.parametrize("kwargs", [{"reduced_tail": True}, {"dilated": True}, {"width_mult": 0.75},
                                    {"width_mult": 1.3, "reduced_tail": True, "dropout": 0.1}])
@pytest.mark.parametrize("arch", ["mobilenet_v3_large", "mobilenet_v3_small"])
def test_mobilenet_v3_options_give_torchvision_shapes(torchvision, arch, kwargs):
    ours = getattr(models, arch)(**kwargs)
    theirs = getattr(torchvision.models, arch)(**kwargs)
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == \
           {k: tuple(v.shape) for k, v in theirs.state_dict().items()}


def test_mobilenet_v2_width_mult_gives_torchvision_shapes(torchvision):
    ours, theirs = models.mobilenet_v2(width_mult=0.5), torchvision.models.mobilenet_v2(width_mult=0.5)
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == \
           {k: tuple(v.shape) for k, v in theirs.state_dict().items()}


@pytest.mark.parametrize("layer", ["ReLU6", "Hardsigmoid", "Hardswish"])
def test_hard_activation_modules_match_torch(layer):
    if torch is None:
        pytest.skip("PyTorch is not installed")
    x = np.concatenate([np.linspace(-8, 8, 161), [-3, 0, 3, 6]]).astype(np.float32)  # kinks included
    ours, theirs = minidl.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    our_out, their_out = getattr(nn, layer)(inplace=True)(ours), getattr(torch.nn, layer)()(theirs)
    np.testing.assert_allclose(_numpy(our_out), their_out.detach().numpy(), rtol=1e-6, atol=1e-7)
    (our_out * minidl.tensor(x)).sum().backward()
    (their_out * torch.tensor(x)).sum().backward()
    np.testing.assert_allclose(_numpy(ours.grad), theirs.grad.numpy(), rtol=1e-6, atol=1e-7)


def test_squeeze_excitation_matches_torchvision(torchvision):
    from minidl.models.torchvision.blocks import SqueezeExcitation

    theirs = torchvision.ops.SqueezeExcitation(8, 4, scale_activation=torch.nn.Hardsigmoid)
    ours = SqueezeExcitation(8, 4, scale_activation=nn.Hardsigmoid)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = _input()[:, :, :5, :7].repeat(3, axis=1)[:, :8]
    our_x, their_x = minidl.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    our_out, their_out = ours(our_x), theirs(their_x)
    assert _relative_error(_numpy(our_out), their_out.detach().numpy()) <= 1e-6
    our_out.sum().backward()
    their_out.sum().backward()
    assert _relative_error(_numpy(our_x.grad), their_x.grad.numpy()) <= 1e-5
    assert _relative_error(_numpy(ours.fc1.weight.grad), theirs.fc1.weight.grad.numpy()) <= 1e-5
