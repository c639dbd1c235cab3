"""minidl's GPU path, end to end: every layer op, every model, saving, metrics and a training epoch on "cuda".

Each test runs on the real GPU where CuPy sees one, and on the strict CuPy stand-in
(tests/strict_device) everywhere else, so CI proves that nothing on these paths needs
host arrays (see tests/conftest.py). Results are compared with the CPU's: on the
stand-in the device path is the reference Function (the fast CPU kernels never see a
device array), so this also holds the references against the kernels.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import minidl
import minidl.nn.functional as F
from minidl import nn
from minidl.metrics import SegmentationMetrics, confusion_matrix
from minidl.models import MODELS, build_model

from .helpers import assert_close

ROOT = Path(__file__).resolve().parent.parent


def _inputs(shapes, seed, device, distinct=False):
    """float64 tensors that require grad; ``distinct`` spreads the values (no ties for max pooling)."""
    rng = np.random.default_rng(seed)
    arrays = []
    for shape in shapes:
        if distinct:
            values = rng.permutation(int(np.prod(shape))).reshape(shape) / 7.0 - 1.0
        else:
            values = rng.uniform(0.1, 2.5, size=shape) * rng.choice([-1.0, 1.0], size=shape)  # away from kinks at 0
        arrays.append(values)
    return [minidl.tensor(a, dtype=minidl.float64, device=device, requires_grad=True) for a in arrays]


def _on(x, values, dtype=None):
    """A constant tensor on x's device (targets, class weights, running statistics)."""
    return minidl.tensor(values, dtype=dtype, device=x.device)


def _batch_norm(training):
    def op(x, w, b):
        mean, var = _on(x, [0.1, -0.2], minidl.float64), _on(x, [1.5, 0.5], minidl.float64)
        return F.batch_norm(x, mean, var, w, b, training=training, momentum=0.3)

    return op


# name: (op on tensors, input shapes, distinct values)
LAYER_OPS = {
    "conv2d": (lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1), [(2, 2, 5, 5), (3, 2, 3, 3), (3,)], False),
    "conv2d_groups_dilation": (lambda x, w: F.conv2d(x, w, padding=2, dilation=2, groups=2),
                               [(1, 4, 5, 5), (4, 2, 3, 3)], False),
    "conv_transpose2d": (lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1),
                         [(1, 2, 3, 3), (2, 3, 3, 3), (3,)], False),
    "max_pool2d": (lambda x: F.max_pool2d(x, 3, 2, padding=1, ceil_mode=True), [(2, 2, 6, 5)], True),
    "max_unpool2d": (lambda x: F.max_unpool2d(*F.max_pool2d(x, 2, return_indices=True), 2, output_size=(5, 5)),
                     [(1, 2, 5, 5)], True),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 3, 2, padding=1), [(1, 2, 6, 6)], False),
    "adaptive_avg_pool2d": (lambda x: F.adaptive_avg_pool2d(x, (3, 2)), [(1, 2, 5, 4)], False),
    "interpolate_nearest": (lambda x: F.interpolate(x, scale_factor=2), [(1, 2, 3, 3)], False),
    "interpolate_bilinear": (lambda x: F.interpolate(x, size=(5, 7), mode="bilinear"), [(1, 2, 3, 4)], False),
    "interpolate_bilinear_corners": (lambda x: F.interpolate(x, size=(4, 2), mode="bilinear", align_corners=True),
                                     [(1, 1, 3, 5)], False),
    "batch_norm_train": (_batch_norm(training=True), [(3, 2, 2, 2), (2,), (2,)], False),
    "batch_norm_eval": (_batch_norm(training=False), [(3, 2, 2, 2), (2,), (2,)], False),
    "cross_entropy": (lambda x: F.cross_entropy(x, _on(x, [[[0, 2], [-1, 1]], [[2, 2], [1, -1]]]), ignore_index=-1,
                                                weight=_on(x, [1.0, 2.0, 0.5], minidl.float64), label_smoothing=0.1),
                      [(2, 3, 2, 2)], False),
    "nll_loss": (lambda x: F.nll_loss(F.log_softmax(x, 1), _on(x, [0, 2, 1, 2]), reduction="sum"), [(4, 3)], False),
    "binary_cross_entropy_with_logits": (
        lambda x: F.binary_cross_entropy_with_logits(x, _on(x, [[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], minidl.float64),
                                                     pos_weight=_on(x, [2.0, 1.0, 0.5], minidl.float64)),
        [(2, 3)], False),
    "mse_loss": (lambda x, y: F.mse_loss(x, y), [(2, 3), (2, 3)], False),
    "softmax": (lambda x: F.softmax(x, 1), [(2, 3, 2)], False),
    "log_softmax": (lambda x: F.log_softmax(x, 0), [(3, 2)], False),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.2), [(2, 3)], False),
    "relu6": (lambda x: F.relu6(x), [(2, 3)], False),
    "hardsigmoid": (lambda x: F.hardsigmoid(x), [(2, 3)], False),
    "hardswish": (lambda x: F.hardswish(x), [(2, 3)], False),
    "elu": (lambda x: F.elu(x, 0.7), [(2, 3)], False),
    "dropout_off": (lambda x: F.dropout2d(F.dropout(x, 0.5, training=False), 0.0), [(2, 3, 2, 2)], False),
}


@pytest.mark.parametrize("name", sorted(LAYER_OPS))
def test_layer_op_forward_backward_and_gradcheck(name, cuda):
    """The layer op on the device: the CPU's values and input gradients, and finite differences agree."""
    op, shapes, distinct = LAYER_OPS[name]
    on_cpu, on_device = _inputs(shapes, 0, "cpu", distinct), _inputs(shapes, 0, cuda, distinct)
    outputs = []
    for inputs in (on_cpu, on_device):
        out = op(*inputs)
        out.backward(minidl.ones_like(out) * 0.5 + _on(out, np.arange(out.numel()).reshape(out.shape) / 10.0))
        outputs.append(out)
    assert outputs[1].device == minidl.device(cuda)
    assert_close(outputs[1].detach().cpu(), outputs[0].detach(), rtol=1e-10, atol=1e-12)
    for cpu_input, device_input in zip(on_cpu, on_device):
        assert device_input.grad.device == minidl.device(cuda)
        assert_close(device_input.grad.cpu(), cpu_input.grad, rtol=1e-9, atol=1e-12)
    assert minidl.gradcheck(op, [t.detach().requires_grad_() for t in on_device])


def test_dropout_on_the_device_keeps_its_mask_for_backward(cuda):
    x = minidl.ones(4, 3, 8, 8, device=cuda, requires_grad=True)
    for y in (F.dropout(x, 0.25), F.dropout2d(x, 0.25)):
        kept = (y.detach() != 0).cpu().numpy()
        assert 0 < kept.mean() < 1 and np.allclose(y.detach().cpu().numpy()[kept], 1 / 0.75)
        y.sum().backward()
        np.testing.assert_allclose(x.grad.cpu().numpy(), kept / 0.75)
        x.grad = None


# --------------------------------------------------------------------------- tensors
def test_creation_on_the_device(cuda):
    device = minidl.device(cuda)
    made = [minidl.zeros(2, 3, device=cuda), minidl.ones((2, 3), device=cuda), minidl.empty(2, device=cuda),
            minidl.full((2,), 7.0, device=cuda), minidl.arange(0, 5, 2, device=cuda), minidl.eye(3, device=cuda),
            minidl.rand(4, device=cuda), minidl.randn(4, device=cuda), minidl.randint(0, 3, (5,), device=cuda),
            minidl.randperm(6, device=cuda), minidl.tensor([[1.5, 2.0]], device=cuda)]
    source = minidl.randn(2, 2, device=cuda)
    made += [minidl.zeros_like(source), minidl.ones_like(source), minidl.full_like(source, 3.0),
             minidl.tensor(source), minidl.tensor(source._array), minidl.as_tensor(source._array),
             source.new_zeros((3,)), source.new_ones((3,)), source.new_tensor([1, 2]), source.clone()]
    assert all(t.device == device for t in made)
    assert sorted(minidl.randperm(6, device=cuda).tolist()) == list(range(6))
    assert minidl.tensor(source, device="cpu").device == minidl.device("cpu")


def test_tensor_methods_on_the_device_match_cpu(cuda):
    """Indexing, in-place updates, comparisons and conversions: the same on both devices."""
    values = np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5

    def run(device):
        x = minidl.tensor(values, device=device)
        mask = x > 0
        out = [x[1], x[:, ::2], x[minidl.tensor([2, 0], device=device)], x[mask], x.masked_fill(mask, 0.0),
               (x % 3), (x // 2), (~mask) | (x < -3), mask & (x < 3), x.softmax(1), x.log_softmax(0),
               x.clip(-1, 1), x.t(), x.argmax(1), x.max(0)[0], x.min(), minidl.where(mask, x, x * 2),
               minidl.cat([x, x], 0), minidl.stack([x, x]), x.all(), mask.any()]
        y = minidl.zeros(3, 4, device=device)
        y.copy_(x)
        y.add_(1.0).sub_(x, alpha=0.5).mul_(2).div_(minidl.full((4,), 4.0, device=device)).clamp_(-1.0, 2.0)
        z = minidl.zeros(3, 4, device=device)
        z.copy_(values)  # from the host
        z.fill_(2.0).zero_()
        out += [y, z]
        return out

    for on_device, on_cpu in zip(run(cuda), run("cpu")):
        assert on_device.device == minidl.device(cuda)
        np.testing.assert_allclose(on_device.cpu().numpy(), on_cpu.numpy(), rtol=1e-6)
    x = minidl.tensor(values, device=cuda)
    assert float(x[0, 0]) == -5.5 and int(x[2, 3]) == 5 and bool(x[1, 1] < 0) is True and x.sum().item() == 0.0
    assert x.tolist() == values.tolist() and "device='cuda:0'" in repr(x)
    np.testing.assert_array_equal(np.asarray(x), values)  # an explicit copy back, as Tensor.__array__ makes it
    with pytest.raises(TypeError, match="cuda:0.*cpu"):
        x.numpy()


def test_init_and_moving_a_model_between_devices(cuda):
    layer = nn.Conv2d(3, 8, 3).to(cuda)
    for init in (nn.init.kaiming_normal_, nn.init.kaiming_uniform_, nn.init.xavier_uniform_, nn.init.xavier_normal_,
                 nn.init.zeros_, nn.init.ones_, lambda w: nn.init.normal_(w, 0.0, 0.1),
                 lambda w: nn.init.uniform_(w, -0.1, 0.1), lambda w: nn.init.constant_(w, 0.3)):
        init(layer.weight)
        assert layer.weight.device == minidl.device(cuda)
    with minidl.no_grad():
        layer.weight.normal_().uniform_()
    back = layer.cpu()
    assert back.weight.device == minidl.device("cpu") and back.to(cuda).bias.device == minidl.device(cuda)


# --------------------------------------------------------------------------- models
# The segmentation models, and one torchvision classifier for the classifier heads: the other backbones run
# as the oldschool_* encoders (AlexNet's and ResNet's 4096- and 512-wide heads are Linear layers, and AlexNet
# alone would take 20 s here). Image sizes: AlexNet's windows need 64 pixels; a BatchNorm over two 1x1 maps
# (MobileNetV2 at 32) has rounding noise for gradients, so its last maps are made 2x2.
CLASSIFIERS = {"mobilenet_v3_small": minidl.models.mobilenet_v3_small}
SIZES = {"oldschool_alexnet": 64, "oldschool_mobilenet_v2": 64}


def _model(name):
    model = CLASSIFIERS[name](num_classes=5) if name in CLASSIFIERS else build_model(name, 5)
    return model, SIZES.get(name, 32)


@pytest.mark.parametrize("name", sorted(MODELS) + sorted(CLASSIFIERS))
def test_model_forward_backward_on_the_device_matches_cpu(name, cuda):
    """One training-mode forward and backward of every model (dropout off): the CPU's loss and gradients.

    In float64: in float32 a max-pooling window with a near tie may pick another winner when sums are
    taken in another order, and send its gradient elsewhere.
    """
    minidl.manual_seed(0)
    reference, size = _model(name)
    model, _ = _model(name)
    model.load_state_dict(reference.state_dict())
    model.double().to(cuda)
    images = minidl.randn(2, 3, size, size, dtype=minidl.float64)
    results = []
    for net, dev in ((reference.double(), "cpu"), (model, cuda)):
        net.train().apply(lambda m: m.eval() if isinstance(m, (nn.Dropout, nn.Dropout2d)) else None)  # no coin
        out = net(images.to(dev))
        out = out["out"] if isinstance(out, dict) else out
        loss = (out * out).mean()
        loss.backward()
        results.append((loss.item(), {k: p.grad for k, p in net.named_parameters()}))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-10)
    for key, grad in results[0][1].items():
        device_grad = results[1][1][key]
        assert device_grad.device == minidl.device(cuda), key
        assert_close(device_grad.cpu(), grad, rtol=1e-7, atol=1e-12)


def test_the_device_path_never_runs_a_fast_cpu_kernel(cuda, monkeypatch):
    """Issue 21, point 3: threads, scratch buffers and malloc policy stay on the CPU; a GPU runs the references."""
    def refuse(ctx, *args, **kwargs):
        raise AssertionError("a fast CPU kernel ran on device arrays")

    for fast in minidl.kernels.fast_kernels().values():
        monkeypatch.setattr(fast, "forward", staticmethod(refuse))
        monkeypatch.setattr(fast, "backward", staticmethod(refuse))
    model = build_model("segnet_small", 3).to(cuda)
    loss = F.cross_entropy(F.interpolate(model(minidl.randn(2, 3, 32, 32, device=cuda)), scale_factor=0.5),
                           minidl.randint(0, 3, (2, 16, 16), device=cuda))
    loss.backward()
    assert all(p.grad.device == minidl.device(cuda) for p in model.parameters())


# --------------------------------------------------------------------------- saving, metrics, a training epoch
@pytest.mark.parametrize("file_format", ["npz", "safetensors"])
def test_save_from_the_device_and_load_back(tmp_path, cuda, file_format):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).to(cuda)
    optimizer = minidl.optim.Adam(model.parameters(), lr=0.1)
    model(minidl.randn(2, 3, 5, 5, device=cuda)).sum().backward()
    optimizer.step()
    path = tmp_path / f"model.{file_format}"
    minidl.save(model.state_dict(), path, format=file_format)
    for location in ("cpu", cuda):
        loaded = minidl.load(path, map_location=location)
        assert set(loaded) == set(model.state_dict())
        for key, value in model.state_dict().items():
            assert loaded[key].device == minidl.device(location), key
            np.testing.assert_array_equal(loaded[key].cpu().numpy(), value.cpu().numpy())
    checkpoint = tmp_path / "optimizer.npz"
    minidl.save({"optimizer": optimizer.state_dict(), "epoch": 3}, checkpoint)
    restored = minidl.load(checkpoint, map_location=cuda)["optimizer"]
    assert all(v.device == minidl.device(cuda) for state in restored["state"].values() for v in state.values()
               if isinstance(v, minidl.Tensor))


def test_metrics_count_device_predictions_on_the_device(cuda):
    rng = np.random.default_rng(0)
    logits, target = rng.standard_normal((2, 4, 5, 6)).astype(np.float32), rng.integers(-1, 4, (2, 5, 6))
    expected = SegmentationMetrics(4)
    expected.update(minidl.tensor(logits), minidl.tensor(target))
    metrics = SegmentationMetrics(4)
    metrics.update(minidl.tensor(logits, device=cuda), minidl.tensor(target, device=cuda))
    np.testing.assert_array_equal(metrics.confusion, expected.confusion)
    assert metrics.as_dict() == expected.as_dict()
    device_confusion = confusion_matrix(minidl.tensor(logits.argmax(1), device=cuda), minidl.tensor(target, device=cuda), 4)
    np.testing.assert_array_equal(device_confusion, expected.confusion)


def test_one_epoch_of_train_segnet_on_the_device(tmp_path, cuda):
    """examples/train_segnet.py --device cuda on the synthetic scenes with median class weights: the CPU's
    figures; then --eval-only of its checkpoint on the device."""
    sys.path.insert(0, str(ROOT / "examples"))
    import train_segnet

    tiny = ["--size", "32", "--train-images", "8", "--val-images", "2", "--batch-size", "4", "--epochs", "1",
            "--quiet", "--class-weights", "median"]
    runs = {dev: tmp_path / dev for dev in ("cpu", cuda)}
    finals = {dev: train_segnet.main(tiny + ["--device", dev, "--out", str(out)]) for dev, out in runs.items()}
    histories = {dev: json.loads((out / "metrics.json").read_text())["history"] for dev, out in runs.items()}
    assert histories[cuda][0]["train_loss"] == pytest.approx(histories["cpu"][0]["train_loss"], rel=1e-4)
    assert finals[cuda]["loss"] == pytest.approx(finals["cpu"]["loss"], rel=1e-3)
    evaluated = train_segnet.main(tiny + ["--device", cuda, "--out", str(tmp_path / "eval"), "--eval-only",
                                          "--checkpoint", str(runs[cuda] / "checkpoint_last.npz")])
    assert evaluated["pixel_accuracy"] == finals[cuda]["pixel_accuracy"]
